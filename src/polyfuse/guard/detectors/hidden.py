"""Hidden text: text a person would not see but a model would read.

OCR reads a lot that people cannot: near-white text on white, text a few grey levels
from its background, faint colour on colour, 4-px lines. So OCR success alone says
nothing about visibility. `find_hidden_text` therefore

1. measures every OCR line of the plain image: the WCAG contrast ratio (relative
   luminance) and the CIELAB colour difference ΔE between the line's text pixels (the
   pixels far from the box's median colour, split by Otsu's threshold) and its
   background pixels, and the ink height in pixels;
2. finds text regions once more on an enhanced image: the per-pixel colour deviation
   from a smooth local background estimate (max over the RGB channels, so faint colour
   shows as well as faint grey, polarity-free so white-on-black needs no inverted pass),
   compressed so that a deviation of a few grey levels becomes dark. Only OCR's
   detection half runs on the whole enhanced image (at native size); each region the
   plain pass did not read is measured first, and recognised (2x enlarged on small
   images) only when its measurement could make it hidden (`could_be_hidden`): text
   that is plainly visible but was missed by the plain pass costs no recognition. Small
   unread ink clusters (`unread_ink`) are read 3x enlarged. An image with no visible
   text at all is searched the same way, so faint text alone is always looked for; an
   image where nothing outside the read lines differs from its background is not.

A line is hidden when a person would not perceive it:

* ``low contrast``: contrast ratio < `LOW_CONTRAST` (1.5:1; WCAG asks 3:1 for large
  text and 4.5:1 for body text) *and* ΔE < `LOW_DELTA_E` (a strong hue difference such
  as red on green keeps text readable at a low luminance ratio);
* ``only visible after enhancement``: found by the enhanced pass only and not clearly
  perceptible (contrast < 3:1 and ΔE < `ENHANCED_DELTA_E`);
* ``tiny text``: ink height < `TINY_PX` (6 px) at the image's native size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray

from polyfuse.guard.geometry import box_iou, inside
from polyfuse.guard.models import ModelCache
from polyfuse.guard.readers.ocr import (
    OcrEngine,
    OcrWord,
    load_image,
    ocr_region,
    ocr_rgb,
    text_regions,
)

if TYPE_CHECKING:
    from polyfuse.guard.readers.ocr import ImageInput

#: Version of the hidden-text rules and thresholds.
HIDDEN_VERSION = "1"

#: Contrast ratio below which text is invisible in practice (WCAG minimum is 3:1).
LOW_CONTRAST = 1.5
#: CIELAB ΔE below which a low-luminance-contrast colour pair is not told apart as text.
LOW_DELTA_E = 15.0
#: An enhancement-only line is clearly perceptible (so merely missed by OCR) above this.
ENHANCED_CONTRAST = 3.0
ENHANCED_DELTA_E = 30.0
#: Ink height in pixels below which text is unreadable at native size.
TINY_PX = 6
#: Enhancement-only lines need this OCR confidence and this many letters or digits.
MIN_ENHANCED_SCORE = 0.6
MIN_ENHANCED_ALNUM = 3
#: A candidate region (found on the enhanced image only) is recognised when its
#: measurement is within this factor of a hidden-text threshold: the region box of the
#: detector is a little larger than the box of the words read in it, which shifts the
#: measurement slightly.
GATE_MARGIN = 1.25
#: Enhanced-pass regions of images up to this longer side are read 2x enlarged.
UPSCALE_MAX_SIDE = 1200
#: `unread_ink`: enhanced-image grey below which a pixel is ink (a deviation of half the
#: enhancement's noise-scaled range), tallest cluster (pixels) and fewest ink pixels that
#: count, most clusters read, and their enlargement.
INK_LEVEL = 128
MAX_INK_HEIGHT = 3 * TINY_PX
MIN_INK_PIXELS = 12
MAX_INK_REGIONS = 8
TINY_ZOOM = 3.0
#: Enhanced-image grey below which a pixel differs from its background (detection on the
#: enhanced image is skipped when fewer than `MIN_INK_PIXELS` outside the read lines do).
UNREAD_LEVEL = 160

Box = tuple[int, int, int, int]
Reason = Literal["low contrast", "only visible after enhancement", "tiny text"]


@dataclass(frozen=True)
class HiddenRegion:
    """One line of text a person would not see.

    Attributes:
        text: what OCR read there.
        box: ``(x0, y0, x1, y1)`` pixel box at the image's native size.
        contrast: WCAG contrast ratio of text vs background pixels (1.0 = none, 21 = max).
        delta_e: CIELAB ΔE (1976) between the text and background colours.
        height: ink height in pixels.
        reason: why it counts as hidden, with the measurement ("low contrast 1.02:1").
        kind: the rule that fired.
        source: ``plain`` (read by OCR of the image as is) or ``enhanced``.
        score: confidence that the text is hidden, in [0, 1].
    """

    text: str
    box: Box
    contrast: float
    delta_e: float
    height: int
    reason: str
    kind: Reason
    source: Literal["plain", "enhanced"]
    score: float

    @property
    def explanation(self) -> str:
        """Human-readable measurement for `Finding.explanation`."""
        return (
            f"{self.reason}; contrast {self.contrast:.2f}:1, ΔE {self.delta_e:.1f}, "
            f"text {self.height} px, read by {self.source} OCR"
        )


@dataclass(frozen=True)
class Measurement:
    """Text-vs-background measurement of one box (see `measure_region`)."""

    contrast: float
    delta_e: float
    height: int
    text_fraction: float


# --------------------------------------------------------------------------- colour


def _linear(c: NDArray[np.float64]) -> NDArray[np.float64]:
    c = c / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def relative_luminance(rgb: Sequence[float] | NDArray[Any]) -> float:
    """WCAG 2 relative luminance of an sRGB colour (0-255 channels)."""
    lin = _linear(np.asarray(rgb, dtype=np.float64))
    return float(0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2])


def contrast_ratio(a: Sequence[float] | NDArray[Any], b: Sequence[float] | NDArray[Any]) -> float:
    """WCAG contrast ratio ``(L1 + 0.05) / (L2 + 0.05)`` of two sRGB colours, >= 1."""
    la, lb = relative_luminance(a), relative_luminance(b)
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def _lab(rgb: Sequence[float] | NDArray[Any]) -> NDArray[np.float64]:
    lin = _linear(np.asarray(rgb, dtype=np.float64))
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = m @ lin / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def delta_e(a: Sequence[float] | NDArray[Any], b: Sequence[float] | NDArray[Any]) -> float:
    """CIE 1976 colour difference of two sRGB colours (2.3 is a just-noticeable one)."""
    return float(np.linalg.norm(_lab(a) - _lab(b)))


# --------------------------------------------------------------------------- measuring


def _otsu(values: NDArray[np.float64]) -> float:
    hist, edges = np.histogram(values, bins=256, range=(0.0, float(values.max()) + 1e-6))
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centers[int(np.argmax(between[:-1]))]) if len(between) > 1 else 0.0


def background(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Smooth local background estimate: the median of a copy downscaled to 256 px on
    its longer side over a window of ~16 % of its shorter side, scaled back. Text strokes
    are a minority of every window, so they drop out."""
    import cv2

    h, w = rgb.shape[:2]
    s = min(1.0, 256.0 / max(h, w))
    small = cv2.resize(
        rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
    )
    k = max(3, round(min(small.shape[:2]) * 0.16)) | 1
    bg_small = cv2.medianBlur(small, min(k, 255))
    out = cv2.resize(bg_small, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(out, dtype=np.uint8)


def measure_region(
    rgb: NDArray[np.uint8], box: Box, bg: NDArray[np.uint8] | None = None
) -> Measurement:
    """Contrast of the text inside ``box`` against its local background.

    Each pixel's colour distance to the local background estimate (`background`) is
    split by Otsu's threshold; the far side are the text pixels. The text colour is the
    mean of the farther half of them (anti-aliased edges excluded), the background colour
    the mean background estimate under them, so text on a varying background is compared
    with what is right behind it.
    """
    if bg is None:
        bg = background(rgb)
    x0, y0, x1, y1 = box
    patch = rgb[y0:y1, x0:x1].reshape(-1, 3).astype(np.float64)
    behind = bg[y0:y1, x0:x1].reshape(-1, 3).astype(np.float64)
    if patch.shape[0] < 4:
        return Measurement(1.0, 0.0, 0, 0.0)
    dist = np.linalg.norm(patch - behind, axis=1)
    if float(dist.max()) < 0.5:
        return Measurement(1.0, 0.0, 0, 0.0)
    thr = _otsu(dist)
    text = dist > thr
    if not text.any():
        return Measurement(1.0, 0.0, 0, 0.0)
    core = text & (dist >= np.median(dist[text]))
    text_colour = patch[core].mean(axis=0)
    bg_colour = behind[core].mean(axis=0)
    # Ink height: rows holding faint (anti-aliased) ink too, so ascenders and descenders
    # of small text count; rows with a stray noise pixel do not.
    rows = (dist > 0.5 * thr).reshape(y1 - y0, x1 - x0).sum(axis=1)
    ink = np.flatnonzero(rows >= max(1.0, 0.02 * float(rows.max())))
    height = int(ink[-1] - ink[0] + 1) if ink.size else 0
    return Measurement(
        contrast=contrast_ratio(text_colour, bg_colour),
        delta_e=delta_e(text_colour, bg_colour),
        height=height,
        text_fraction=float(text.mean()),
    )


# --------------------------------------------------------------------------- enhancing


def enhance(
    rgb: NDArray[np.uint8],
    bg: NDArray[np.uint8] | None = None,
    *,
    upscale_max_side: int = UPSCALE_MAX_SIDE,
) -> tuple[NDArray[np.uint8], float]:
    """Local-contrast-normalised image for the second OCR pass, and its scale factor.

    Each pixel's deviation from the local background (`background`; max over the RGB
    channels) is divided by ``T = max(6, 4 * noise)`` (noise: robust spread of the
    deviation), compressed by a square root and drawn dark on white, so a 2-grey-level
    difference becomes clearly visible, on any background polarity. Images whose longer
    side is at most ``upscale_max_side`` are upscaled 2x for small text.
    """
    import cv2

    if bg is None:
        bg = background(rgb)
    h, w = rgb.shape[:2]
    dev = np.abs(rgb.astype(np.int16) - bg.astype(np.int16)).max(axis=2).astype(np.float32)
    noise = float(np.median(dev)) * 1.4826
    t = max(6.0, 4.0 * noise)
    level = np.sqrt(np.clip(dev / t, 0.0, 1.0))
    gray = (255.0 * (1.0 - level)).astype(np.uint8)
    scale = 1.0
    if max(h, w) <= upscale_max_side:
        scale = 2.0
        gray = cv2.resize(gray, (w * 2, h * 2), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2)), scale


# --------------------------------------------------------------------------- lines


@dataclass(frozen=True)
class _Line:
    text: str
    box: Box
    score: float


def _lines(
    words: Sequence[OcrWord], scale: float = 1.0, size: tuple[int, int] = (0, 0)
) -> list[_Line]:
    groups: dict[int, list[OcrWord]] = {}
    for word in words:
        groups.setdefault(word.line, []).append(word)
    out = []
    w, h = size
    for group in groups.values():
        x0 = min(x.box[0] for x in group) / scale
        y0 = min(x.box[1] for x in group) / scale
        x1 = max(x.box[2] for x in group) / scale
        y1 = max(x.box[3] for x in group) / scale
        box = (math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1))
        if w and h:
            box = (max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3]))
        out.append(_Line(" ".join(x.text for x in group), box, min(x.score for x in group)))
    return out


def _judge(
    line: _Line, m: Measurement, source: Literal["plain", "enhanced"]
) -> HiddenRegion | None:
    kind: Reason | None = None
    if m.contrast < LOW_CONTRAST and m.delta_e < LOW_DELTA_E:
        kind, reason = "low contrast", f"low contrast {m.contrast:.2f}:1"
        score = 0.95 if m.contrast < 1.2 else 0.85
    elif source == "enhanced" and m.contrast < ENHANCED_CONTRAST and m.delta_e < ENHANCED_DELTA_E:
        kind, reason, score = (
            "only visible after enhancement",
            "only visible after enhancement",
            0.8,
        )
    elif 0 < m.height < TINY_PX:
        kind, reason, score = "tiny text", f"tiny text {m.height} px", 0.7
    if kind is None:
        return None
    return HiddenRegion(
        text=line.text,
        box=line.box,
        contrast=round(m.contrast, 3),
        delta_e=round(m.delta_e, 2),
        height=m.height,
        reason=reason,
        kind=kind,
        source=source,
        score=score,
    )


def could_be_hidden(m: Measurement) -> bool:
    """Whether a region the plain pass did not read is worth recognising on the enhanced
    image: its measurement is within `GATE_MARGIN` of a rule of `_judge` for the enhanced
    source (low contrast, only visible after enhancement, tiny text). A clearly visible
    region of normal size would be judged visible whatever it says."""
    faint = m.contrast < ENHANCED_CONTRAST * GATE_MARGIN and m.delta_e < (
        ENHANCED_DELTA_E * GATE_MARGIN
    )
    return faint or 0 < m.height < TINY_PX * GATE_MARGIN


def _overlaps_any(box: Box, boxes: Sequence[Box]) -> bool:
    return any(box_iou(box, b) > 0.3 or inside(box, b, 0.5) or inside(b, box, 0.5) for b in boxes)


def _unread_pixels(enh: NDArray[np.uint8], read: Sequence[Box]) -> int:
    """Pixels of the enhanced image outside every ``read`` box (grown by 3 px) that
    deviate from their background by a grey level or more (a level of 1 draws 151)."""
    mark = enh[:, :, 0] < UNREAD_LEVEL
    for b in read:
        mark[max(0, b[1] - 3) : b[3] + 3, max(0, b[0] - 3) : b[2] + 3] = False
    return int(mark.sum())


def unread_ink(enh: NDArray[np.uint8], read: Sequence[Box]) -> list[Box]:
    """Line-shaped clusters of ink in the enhanced image ``enh`` (native size) outside
    every box in ``read``, at most `MAX_INK_HEIGHT` pixels tall: text too small for OCR's
    detection at native size (the 5-px line under a heading). Grain does not pass: its
    specks merge into clusters far taller than a line of tiny text.

    Returns:
        Up to `MAX_INK_REGIONS` boxes, the largest first.
    """
    import cv2

    ink = (enh[:, :, 0] < INK_LEVEL).astype(np.uint8)
    for b in read:
        ink[max(0, b[1] - 3) : b[3] + 3, max(0, b[0] - 3) : b[2] + 3] = 0
    if int(ink.sum()) < MIN_INK_PIXELS:
        return []
    merged = cv2.dilate(ink, np.ones((3, 7), np.uint8))
    _n, _labels, stats, _centroids = cv2.connectedComponentsWithStats(merged, connectivity=8)
    out: list[Box] = []
    for x, y, bw, bh, _area in stats[1:].tolist():
        if bh > MAX_INK_HEIGHT + 2 or bw < max(12, 3 * bh):
            continue
        count = int(ink[y : y + bh, x : x + bw].sum())
        if MIN_INK_PIXELS <= count <= 0.6 * bw * bh:
            out.append((x, y, x + bw, y + bh))
    out.sort(key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
    return out[:MAX_INK_REGIONS]


class Candidate(NamedTuple):
    """A region `find_hidden_text` recognises: its box (native pixels), the enlargement
    to read it at, and whether it is `unread_ink` (read from the pixels as they are
    first: the enhanced image's compression thins strokes a few pixels tall)."""

    box: Box
    zoom: float
    tiny: bool


def candidate_regions(
    rgb: NDArray[np.uint8],
    enh: NDArray[np.uint8],
    plain: Sequence[Box],
    bg: NDArray[np.uint8],
    *,
    engine: OcrEngine = "rapidocr",
    models: ModelCache | None = None,
    threads: int | None = None,
) -> list[Candidate]:
    """Where the enhanced image ``enh`` (native size) may hold hidden text, with the zoom
    to read each region at: text regions that OCR's detection finds on ``enh``, that
    overlap none of the ``plain`` line boxes and whose measurement `could_be_hidden`
    (zoom 2 on images up to `UPSCALE_MAX_SIDE`), and `unread_ink` (zoom `TINY_ZOOM`).
    When nothing outside the ``plain`` lines differs from its background, detection does
    not run at all."""
    h, w = rgb.shape[:2]
    if _unread_pixels(enh, plain) < MIN_INK_PIXELS:
        return []  # nothing outside the read lines differs from its background
    zoom = 2.0 if max(h, w) <= UPSCALE_MAX_SIDE else 1.0
    found = text_regions(enh, engine, models, threads=threads)
    out = [
        Candidate(box, zoom, tiny=False)
        for box in found
        if not _overlaps_any(box, plain) and could_be_hidden(measure_region(rgb, box, bg))
    ]
    out += [Candidate(box, TINY_ZOOM, tiny=True) for box in unread_ink(enh, [*plain, *found])]
    return out


def find_hidden_text(
    image: ImageInput,
    words_plain: Sequence[OcrWord] | None = None,
    *,
    engine: OcrEngine = "rapidocr",
    enhanced: bool = True,
    models: ModelCache | None = None,
    threads: int | None = None,
) -> list[HiddenRegion]:
    """Text lines in ``image`` that a person would not see but OCR (so a model) reads.

    Args:
        image: a path, bytes, `PIL.Image.Image` or ``HxWx3`` uint8 RGB array.
        words_plain: OCR words of the image as is (`polyfuse.guard.readers.ocr.ocr_words`);
            computed when ``None``.
        engine: OCR engine for the passes that run here.
        enhanced: also look for text on the enhanced image (`enhance`, detection on the
            whole image, recognition on `candidate_regions`); without it only text the
            plain pass read is judged.
        models: where the OCR engine and its result cache are kept.
        threads: onnxruntime intra-op threads of the OCR session (default
            `polyfuse.guard.readers.ocr.default_ocr_threads`).

    Returns:
        One `HiddenRegion` per hidden line, plain-pass lines first.

    Raises:
        InvalidInputError: the image cannot be read.
    """
    rgb, _ = load_image(image)
    h, w = rgb.shape[:2]
    if words_plain is None:
        words_plain = ocr_rgb(rgb, engine, models, threads=threads)
    plain = _lines(words_plain, 1.0, (w, h))
    bg = background(rgb)
    out: list[HiddenRegion] = []
    for line in plain:
        region = _judge(line, measure_region(rgb, line.box, bg), "plain")
        if region is not None:
            out.append(region)
    if not enhanced:
        return out
    enh, _ = enhance(rgb, bg, upscale_max_side=0)
    read = [line.box for line in plain]
    found = candidate_regions(rgb, enh, read, bg, engine=engine, models=models, threads=threads)
    for cand in found:
        for line in _read_candidate(rgb, enh, cand, engine, models, threads):
            if _overlaps_any(line.box, read):
                continue
            region = _judge(line, measure_region(rgb, line.box, bg), "enhanced")
            if region is not None and not any(box_iou(region.box, r.box) > 0.3 for r in out):
                out.append(region)
    return out


def _read_candidate(
    rgb: NDArray[np.uint8],
    enh: NDArray[np.uint8],
    cand: Candidate,
    engine: OcrEngine,
    models: ModelCache | None,
    threads: int | None,
) -> list[_Line]:
    """The lines read in a candidate region that pass the enhanced-pass filters (OCR
    confidence, letters or digits); tiny candidates from the pixels first, then from the
    enhanced image if those give none."""
    h, w = rgb.shape[:2]
    sources = (rgb, enh) if cand.tiny else (enh,)
    for image in sources:
        words = ocr_region(image, cand.box, engine, models, zoom=cand.zoom, threads=threads)
        lines = [
            line
            for line in _lines(words, 1.0, (w, h))
            if line.score >= MIN_ENHANCED_SCORE
            and sum(c.isalnum() for c in line.text) >= MIN_ENHANCED_ALNUM
            and line.box[2] > line.box[0]
            and line.box[3] > line.box[1]
        ]
        if lines:
            return lines
    return []
