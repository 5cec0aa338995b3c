"""Every modality end to end on real data: manifest -> train -> artifact -> predict/evaluate.

image + audio: AV-digits (MNIST + FSDD); time series: BasicMotions; text (+ image):
Flickr8k concepts with the frozen pretrained encoders and the feature cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyfuse.cli import main
from polyfuse.datasets import av_digits, basicmotions, flickr8k

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _subset(src: Path, dst: Path, n: int, step: int = 1) -> Path:
    lines = src.read_text().splitlines()[::step][:n]
    rows = [json.loads(x) for x in lines]
    for r in rows:  # keep relative paths valid from the new folder
        for key in ("image", "audio", "motion"):
            if isinstance(r.get(key), str) and not Path(r[key]).is_absolute():
                r[key] = str((src.parent / r[key]).resolve())
    dst.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dst


def _evaluate(art: Path, data: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    capsys.readouterr()
    assert main(["evaluate", str(art), "--data", str(data), "--json", "-q", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _check_card(art: Path, encoders: dict[str, str]) -> None:
    """The model card training wrote from real results: every section filled, the encoders'
    licences stated, and the page rendered offline by headless Chromium with text in every
    section (tests/release/test_card.py covers the parts on synthetic data)."""
    from polyfuse.release.card import CARD_HTML, SECTIONS, load_card
    from tests.browser import open_page

    card = load_card(art)
    assert card.empty_sections() == []
    assert {m: e["licence"] for m, e in card.encoders.items()} == encoders
    with open_page(art / CARD_HTML) as page:
        assert page.errors == [], page.errors
        texts = page.evaluate(
            "Array.from(document.querySelectorAll('section')).map(s => [s.id, "
            "s.innerText.replace(s.querySelector('h2').innerText, '').trim().length])"
        )
    assert [t[0] for t in texts] == list(SECTIONS) and all(n > 20 for _, n in texts), texts


def test_image_and_audio_av_digits(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = av_digits.build(
        shared_data, tmp_path / "avd", av_digits.AVDigitsSpec("clean"), progress=False
    )
    train = _subset(paths["train"], tmp_path / "train.jsonl", 500, step=3)
    val = _subset(paths["val"], tmp_path / "val.jsonl", 100)
    test = _subset(paths["test"], tmp_path / "test.jsonl", 200, step=2)
    art = tmp_path / "art"
    assert (
        main(
            [
                "train",
                str(EXAMPLES / "av_digits" / "fused.yaml"),
                "--train",
                str(train),
                "--val",
                str(val),
                "--out",
                str(art),
                "--set",
                "train.epochs=5",
                "--set",
                "train.batch_size=32",
                "--set",
                "modalities.image.encoder.widths=[16,32]",
                "--set",
                "modalities.audio.encoder.widths=[16,32]",
                "--set",  # the subsets live apart from the build's non-signal list
                f"modalities.audio.substitute.source={paths['train'].parent / av_digits.NONSIGNAL}",
                "-q",
            ]
        )
        == 0
    )
    both = _evaluate(art, test, capsys)
    image = _evaluate(art, test, capsys, "--modalities", "image")
    audio = _evaluate(art, test, capsys, "--modalities", "audio")
    assert both["n"] == image["n"] == audio["n"] == 200
    assert both["accuracy"] > 0.75 and image["accuracy"] > 0.6, (both, image)
    assert audio["accuracy"] > 0.2, "unseen speaker, 4 epochs on 500 rows: above chance"
    assert (
        main(["predict", str(art), "--data", str(test), "--out", str(tmp_path / "p.jsonl"), "-q"])
        == 0
    )
    preds = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(preds) == 200 and set(preds[0]["fusion_weights"]) == {"audio", "image"}
    own = "the model's own (no third-party weights)"
    _check_card(art, {"audio": own, "image": own})


def test_time_series_basicmotions(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = basicmotions.build(shared_data, tmp_path / "bm")
    art = tmp_path / "art"
    assert (
        main(
            [
                "train",
                str(EXAMPLES / "basicmotions" / "config.yaml"),
                "--train",
                str(paths["train"]),
                "--val",
                str(paths["val"]),
                "--out",
                str(art),
                "-q",
            ]
        )
        == 0
    )
    result = _evaluate(art, paths["test"], capsys)
    assert result["n"] == 40 and result["accuracy"] >= 0.75, result


def test_text_and_image_flickr_concepts_with_cached_pretrained_features(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = flickr8k.build_concepts(shared_data, tmp_path / "fk")
    train = _subset(paths["train"], tmp_path / "train.jsonl", 240)
    val = _subset(paths["val"], tmp_path / "val.jsonl", 60)
    test = _subset(paths["test"], tmp_path / "test.jsonl", 120)
    config = EXAMPLES / "flickr8k" / "concepts.yaml"
    art = tmp_path / "art"
    assert (
        main(
            [
                "train",
                str(config),
                "--train",
                str(train),
                "--val",
                str(val),
                "--out",
                str(art),
                "--set",
                "train.epochs=6",
                "-q",
            ]
        )
        == 0
    )
    both = _evaluate(art, test, capsys)
    text = _evaluate(art, test, capsys, "--modalities", "caption")
    assert both["n"] == 120 and both["micro_f1"] > 0.5, both
    assert text["micro_f1"] > 0.3, text
    info = json.loads((art / "artifact.json").read_text())
    assert info["encoders"]["caption"]["frozen"] and info["encoders"]["image"]["frozen"]
    size = (art / "model.safetensors").stat().st_size
    assert size < 5_000_000, "frozen pretrained weights are not copied into the artifact"
    _check_card(art, {"caption": "Apache-2.0", "image": "Apache-2.0"})
