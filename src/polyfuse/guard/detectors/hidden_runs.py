"""Hidden text in a PDF's text layer: runs a reader of the layer sees but a person looking at
the rendered page does not (invisible render modes, tiny or low-contrast text, text the
OCR of the page does not find), measured on the rendered pixels."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from polyfuse.guard.geometry import Box
from polyfuse.guard.readers.ocr import RGBArray

if TYPE_CHECKING:
    pass
from polyfuse.guard.readers.document import (
    LOW_CONTRAST,
    LOW_DELTA_E,
    MIN_ALNUM,
    OCR_LAYER_MATCH,
    TINY_PT,
    HiddenKind,
    Page,
    PageText,
)


@dataclass(frozen=True)
class HiddenRun:
    """A run of text-layer characters a reader does not see.

    Attributes:
        span: ``(start, end)`` into `PageText.text`.
        text: the characters.
        box: pixel box (``None`` when wholly outside the page).
        kind: the rule that fired.
        reason: the rule with its measurement, for `Finding.explanation`.
        score: confidence that the text is hidden.
    """

    span: tuple[int, int]
    text: str
    box: Box | None
    kind: HiddenKind
    reason: str
    score: float


def _runs(text: PageText) -> Iterator[tuple[int, int]]:
    """Spans of the text layer's lines, split where the render mode changes, stripped."""
    for m in re.finditer(r"[^\r\n]+", text.text):
        start = m.start()
        for i in range(m.start() + 1, m.end() + 1):
            if i == m.end() or text.invisible[i] != text.invisible[start]:
                s, e = start, i
                while s < e and text.text[s].isspace():
                    s += 1
                while e > s and text.text[e - 1].isspace():
                    e -= 1
                if e > s:
                    yield s, e
                start = i


def _similarity(a: str, b: str) -> float:
    na = re.sub(r"\W+", "", a.lower())
    nb = re.sub(r"\W+", "", b.lower())
    if not na or not nb:
        return 0.0
    return difflib.SequenceMatcher(None, na, nb, autojunk=False).ratio()


def _judge(
    page: Page, span: tuple[int, int], bg: RGBArray, ocr_box: Any
) -> tuple[HiddenKind, str, float] | None:
    from polyfuse.guard.detectors.hidden import measure_region

    text = page.text
    raws = [b for b in text.raw_boxes[span[0] : span[1]] if b is not None]
    if not raws:
        return None
    h, w = page.rgb.shape[:2]
    outside = sum(1 for b in raws if (b[0] + b[2]) / 2 < 0 or (b[0] + b[2]) / 2 > w
                  or (b[1] + b[3]) / 2 < 0 or (b[1] + b[3]) / 2 > h)  # fmt: skip
    if outside > len(raws) / 2:
        return "outside the page", f"outside the page ({outside} of {len(raws)} characters)", 0.95
    box = text.box_of(span)
    visible = False
    m = None
    if box is not None and (box[2] - box[0]) * (box[3] - box[1]) >= 4:
        m = measure_region(page.rgb, box, bg)
        visible = not (m.contrast < LOW_CONTRAST and m.delta_e < LOW_DELTA_E)
    if any(text.invisible[span[0] : span[1]]):
        if visible and box is not None:
            seen = _similarity(text.text[span[0] : span[1]], ocr_box(page.rgb, box))
            if seen >= OCR_LAYER_MATCH:
                return None  # the OCR layer of a scanned page: its image shows the words
        return "invisible render mode", "invisible text render mode (3 or 7)", 0.95
    if m is not None and not visible:
        reason = (
            f"not visible in the rendered page; contrast {m.contrast:.2f}:1, ΔE {m.delta_e:.1f}"
        )
        return "not visible", reason, 0.9
    heights = sorted(x for x in text.heights[span[0] : span[1]] if x > 0)
    if heights and heights[len(heights) // 2] < TINY_PT:
        return "tiny text", f"tiny text {heights[len(heights) // 2]:.1f} pt", 0.7
    if box is None:
        return "outside the page", "outside the page", 0.95
    return None


def find_hidden_runs(
    page: Page, *, engine: str = "rapidocr", bg: RGBArray | None = None
) -> list[HiddenRun]:
    """Runs of ``page``'s text layer that a reader of its rendering does not see.

    OCR (``engine``) runs only on the box of invisible-mode text that has ink under it,
    to tell a scanned page's OCR layer from an invisible text over an unrelated image.
    ``bg`` is the rendering's `polyfuse.guard.detectors.hidden.background` (computed if ``None``).
    """
    from polyfuse.guard.detectors.hidden import background

    if not page.text.text.strip():
        return []
    if bg is None:
        bg = background(page.rgb)

    def ocr_box(rgb: RGBArray, box: Box) -> str:
        from polyfuse.guard.readers.ocr import ocr_rgb

        crop = np.ascontiguousarray(rgb[box[1] : box[3], box[0] : box[2]])
        pad = np.pad(crop, ((8, 8), (8, 8), (0, 0)), mode="edge")
        return " ".join(wd.text for wd in ocr_rgb(pad, engine))

    out = []
    for span in _runs(page.text):
        run_text = page.text.text[span[0] : span[1]]
        if sum(c.isalnum() for c in run_text) < MIN_ALNUM:
            continue
        verdict = _judge(page, span, bg, ocr_box)
        if verdict is not None:
            kind, reason, score = verdict
            out.append(HiddenRun(span, run_text, page.text.box_of(span), kind, reason, score))
    return out
