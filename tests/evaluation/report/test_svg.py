"""Inline SVG charts are well-formed XML, escape their text and survive edge cases."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from polyfuse.evaluation.report import media, svg

NS = "{http://www.w3.org/2000/svg}"


def _parse(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == f"{NS}svg" and float(root.get("width", 0)) > 0
    return root


def test_charts_are_valid_svg() -> None:
    charts = [
        svg.bar_chart({"a": 0.5, "b <&> c": -0.25}, "bars & more", errors={"a": 0.1}),
        svg.bar_chart({}, "empty"),
        svg.grouped_bars({"0": {"x": 1.0, "y": 2.0}, "1": {"x": 0.5}}, "grouped"),
        svg.line_chart({"m": ([0, 1, 2], [0.9, 0.8, 0.5])}, "lines", x_label="sev"),
        svg.line_chart({"flat": ([1], [1.0])}, "one point"),
        svg.heatmap([[3, 0], [1, 5]], ["a", "b"], ["a", "b"], "cm"),
        svg.reliability_diagram(
            [{"lo": 0.0, "hi": 0.5, "n": 2, "confidence": 0.4, "accuracy": 0.5}], "rel"
        ),
    ]
    for chart in charts:
        _parse(chart)
    assert "b &lt;&amp;&gt; c" in charts[0]
    bars = _parse(charts[0]).findall(f"{NS}rect")
    assert len(bars) == 2 and all(float(b.get("width", 0)) > 0 for b in bars)


def test_media_tags_embed_data() -> None:
    img = (np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28, 1)
    tag = media.image_tag(img, overlay=np.ones((28, 28)))
    assert tag.startswith('<img src="data:image/png;base64,')
    audio = media.audio_tag(np.zeros(800, dtype=np.float32) + 2.0, 8000)
    assert 'src="data:audio/wav;base64,' in audio
    assert media.text_tag("<b>" * 200, limit=10).count("&lt;") <= 4
    _parse(media.series_tag(np.random.default_rng(0).standard_normal((20, 6))))
