"""Document scanner of the multimodal firewall: PDF text layer, rendered pages, hidden
text and metadata.

`DocumentScanner.scan` opens a PDF with pdfium (pypdfium2) and, page by page,

1. runs the text detectors on the page's **text layer** and maps each character span to
   a box from pdfium's character boxes (``source="pdf:text"``);
2. **renders** the page and scans the rendering with an `ImageScanner` (OCR PII, faces,
   hidden text in the pixels; ``source="pdf:ocr"``, ``pdf:ocr:hidden``, ``pdf:pixels``);
3. reports **hidden text**: text-layer text a reader of the rendered page does not see
   (``HIDDEN_TEXT``, ``source="pdf:hidden"``), and runs the text detectors on it:

   * ``invisible render mode``: text render mode 3 (neither filled nor stroked) or 7
     (clip only), unless the rendering shows the same words at that place (the OCR
     layer of a scanned page is invisible text over its image: not hidden);
   * ``outside the page``: characters outside the visible page box;
   * ``tiny text``: glyph line height under `TINY_PT` points (fonts under ~3.5 pt);
   * ``not visible``: no ink in the rendering where the text is (WCAG contrast below
     1.5:1 and CIELAB ΔE below 15 against the local background, as for images): white
     or background-coloured text, text under a shape or image, clipped text;
4. runs the text detectors on the free-text **metadata** (Title, Subject, Keywords,
   Author, Creator, Producer; ``source="metadata:<key>"``).

Boxes are pixel boxes ``(x0, y0, x1, y1)`` (origin top-left) of the page rendered at
`DocumentScanner.scale` (2 = 144 dpi; lower for pages that would exceed ``max_pixels``,
see `page_scale`), the same rendering `redact_document` fills. Spans of ``pdf:text`` and
``pdf:hidden`` findings index the page's text layer as `read_page` builds it.

pdfium is not thread-safe, so every call into it holds one module lock; OCR runs outside
the lock. pypdfium2, rapidocr and OpenCV are imported inside the functions.
"""

from __future__ import annotations

import ctypes
import difflib
import math
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from polyfuse.core.errors import ConfigError, DependencyError, InvalidInputError
from polyfuse.guard.findings import Finding, Location, TextDetector, mask
from polyfuse.guard.geometry import Box, box_iou, clip_box, inside
from polyfuse.guard.readers.ocr import DEFAULT_MAX_PIXELS, RGBArray

if TYPE_CHECKING:
    from PIL import Image as PILImage

#: Version of this scanner's rules (hidden-text rules, span and box mapping).
DOCUMENT_VERSION = "1"
#: Default render scale: 2 = 144 dpi, enough for OCR of 8 pt text.
DEFAULT_SCALE = 2.0
#: Default cap on pages; longer documents are refused, not truncated.
DEFAULT_MAX_PAGES = 50
#: Line height of the glyphs (pdfium's loose character box, about 1.15 x the font size)
#: in points below which text is unreadable on paper or screen (fonts under ~3.5 pt).
TINY_PT = 4.0
#: Ink measured in the rendering below both of these is not visible (as `hidden`).
LOW_CONTRAST = 1.5
LOW_DELTA_E = 15.0
#: Invisible-mode text is an OCR layer when OCR of its box reads it this similarly.
OCR_LAYER_MATCH = 0.6
#: A rendering with the text layer painted out is left unscanned unless at least
#: `MIN_INK_PIXELS` pixels differ from the background by `INK_LEVELS` grey levels.
INK_LEVELS = 2
MIN_INK_PIXELS = 50
#: A hidden run needs this many letters or digits to be reported.
MIN_ALNUM = 3
#: Free-text metadata keys that are scanned.
METADATA_KEYS = ("Title", "Subject", "Keywords", "Author", "Creator", "Producer")

_PDFIUM_LOCK = threading.RLock()
_INVISIBLE_MODES = (3, 7)  # FPDF_TEXTRENDERMODE_INVISIBLE, FPDF_TEXTRENDERMODE_CLIP

HiddenKind = Literal["invisible render mode", "outside the page", "tiny text", "not visible"]


@contextmanager
def _pdfium() -> Iterator[Any]:
    """The pypdfium2 module, with the lock that serialises every call into pdfium."""
    try:
        import pypdfium2
    except ImportError as exc:  # pragma: no cover - pypdfium2 is a guard dependency
        raise DependencyError("pypdfium2", "PDF scanning", "guard") from exc
    with _PDFIUM_LOCK:
        yield pypdfium2


# --------------------------------------------------------------------------- loading


def open_pdf(data: bytes, *, max_pages: int = DEFAULT_MAX_PAGES) -> Any:
    """Open ``data`` as a `pypdfium2.PdfDocument` of at most ``max_pages`` pages.

    Raises:
        InvalidInputError: not a readable PDF, encrypted with a password, no pages or
            more than ``max_pages`` pages.
    """
    with _pdfium() as pdfium:
        try:
            pdf = pdfium.PdfDocument(bytes(data))
            pages = len(pdf)
        except Exception as exc:  # PdfiumError, and anything odd input makes the binding raise
            if "password" in str(exc).lower():
                raise InvalidInputError(
                    "document",
                    "the PDF is encrypted with a password",
                    hint="decrypt it first (qpdf --decrypt); encrypted content cannot be scanned",
                ) from None
            raise InvalidInputError(
                "document",
                f"cannot open PDF ({exc})",
                hint="the file is truncated, corrupt or not a PDF",
            ) from None
    if pages <= 0:
        _close(pdf)
        raise InvalidInputError("document", "the PDF has no pages")
    if pages > max_pages:
        _close(pdf)
        raise InvalidInputError(
            "document",
            f"the PDF has {pages} pages, more than max_pages={max_pages}",
            hint="split the document or raise Limits.max_pages",
        )
    return pdf


def _close(pdf: Any) -> None:
    with _pdfium():
        pdf.close()


def pdf_metadata(pdf: Any) -> dict[str, str]:
    """The non-empty free-text metadata fields of ``pdf`` (`METADATA_KEYS`)."""
    with _pdfium():
        try:
            meta = pdf.get_metadata_dict(skip_empty=True)
        except Exception as exc:  # undecodable strings
            raise InvalidInputError("document", f"cannot read the PDF metadata ({exc})") from None
    return {k: str(meta[k]).strip() for k in METADATA_KEYS if str(meta.get(k, "")).strip()}


def page_scale(width_pt: float, height_pt: float, scale: float, max_pixels: int) -> float:
    """``scale``, lowered so that the rendered page has at most ``max_pixels`` pixels.

    Raises:
        InvalidInputError: the page has no area.
    """
    if not (width_pt > 0 and height_pt > 0):
        raise InvalidInputError("document", f"page has no area ({width_pt}x{height_pt} pt)")
    area = math.ceil(width_pt * scale) * math.ceil(height_pt * scale)
    if area <= max_pixels:
        return scale
    # floor to 1/1000 so the ceil-ed rendering stays within the limit
    return math.floor(1000 * scale * math.sqrt(max_pixels / area) * 0.999) / 1000


@dataclass
class PageText:
    """The text layer of one page, one character per pdfium character index.

    Attributes:
        text: the characters (pdfium's generated spaces and line breaks included).
        boxes: per character, its pixel box in the rendering (``None`` for generated
            characters and whitespace).
        raw_boxes: per character, the unclipped box (may lie outside the page).
        heights: per character, its glyph box height in points (0 when unknown).
        invisible: per character, whether its text render mode draws nothing.
    """

    text: str
    boxes: list[Box | None]
    raw_boxes: list[tuple[float, float, float, float] | None]
    heights: list[float]
    invisible: list[bool]

    def box_of(self, span: tuple[int, int]) -> Box | None:
        """Union of the character boxes in ``span``; ``None`` when none is on the page."""
        boxes = [b for b in self.boxes[span[0] : span[1]] if b is not None and b[2] > b[0]]
        if not boxes:
            return None
        return (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )


@dataclass
class Page:
    """One page: 1-based ``number``, its rendering (``HxWx3`` RGB), the render scale and
    the text layer."""

    number: int
    rgb: RGBArray
    scale: float
    text: PageText


def _affine(page: Any, width: int, height: int, raw: Any) -> np.ndarray:
    """2x3 matrix from page coordinates (points) to pixels of the rendering."""
    left, bottom, right, top = page.get_bbox()
    pts = [(left, bottom), (right, bottom), (left, top)]
    out = []
    dx, dy = ctypes.c_int(), ctypes.c_int()
    for x, y in pts:
        raw.FPDF_PageToDevice(page, 0, 0, width, height, 0, x, y, dx, dy)
        out.append((dx.value, dy.value))
    src = np.array([[x, y, 1.0] for x, y in pts])
    return np.linalg.solve(src, np.array(out, dtype=np.float64)).T  # (2, 3)


def _char(raw: Any, textpage: Any, i: int) -> str:
    cp = int(raw.FPDFText_GetUnicode(textpage, i))
    if cp <= 0 or 0xD800 <= cp <= 0xDFFF or cp > 0x10FFFF:
        return "\ufffd"
    return chr(cp)


def _text_layer(page: Any, textpage: Any, m: np.ndarray, size: tuple[int, int]) -> PageText:
    from pypdfium2 import raw

    n = textpage.count_chars()
    chars: list[str] = []
    boxes: list[Box | None] = []
    raw_boxes: list[tuple[float, float, float, float] | None] = []
    heights: list[float] = []
    invisible: list[bool] = []
    modes: dict[int, int] = {}
    for i in range(max(0, n)):
        ch = _char(raw, textpage, i)
        chars.append(ch)
        obj = raw.FPDFText_GetTextObject(textpage, i)
        key = ctypes.cast(obj, ctypes.c_void_p).value or 0
        if key and key not in modes:
            modes[key] = int(raw.FPDFTextObj_GetTextRenderMode(obj))
        invisible.append(modes.get(key, 0) in _INVISIBLE_MODES)
        if ch.isspace() or raw.FPDFText_IsGenerated(textpage, i) == 1:
            boxes.append(None)
            raw_boxes.append(None)
            heights.append(0.0)
            continue
        left, bottom, right, top = textpage.get_charbox(i, loose=True)
        corners = m @ np.array([[left, right, left, right], [bottom, bottom, top, top], [1] * 4])
        xs, ys = corners
        rb = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
        raw_boxes.append(rb)
        boxes.append(clip_box(rb, *size))
        heights.append(abs(top - bottom))
    return PageText("".join(chars), boxes, raw_boxes, heights, invisible)


def read_page(
    pdf: Any, index: int, *, scale: float = DEFAULT_SCALE, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Page:
    """Render page ``index`` (0-based) of ``pdf`` and read its text layer.

    Raises:
        InvalidInputError: the page cannot be loaded or rendered.
    """
    with _pdfium():
        from pypdfium2 import raw

        try:
            page = pdf[index]
            try:
                width, height = page.get_size()
                s = page_scale(float(width), float(height), scale, max_pixels)
                rgb = np.ascontiguousarray(page.render(scale=s, rev_byteorder=True).to_numpy())
                rgb = rgb[:, :, :3]
                h, w = rgb.shape[:2]
                textpage = page.get_textpage()
                try:
                    text = _text_layer(page, textpage, _affine(page, w, h, raw), (w, h))
                finally:
                    textpage.close()
            finally:
                page.close()
        except InvalidInputError:
            raise
        except Exception as exc:  # pdfium errors, ctypes/numpy errors on odd pages, MemoryError
            raise InvalidInputError(
                "document",
                f"cannot read page {index + 1} ({type(exc).__name__}: {exc})",
                hint="the PDF is corrupt",
            ) from None
    return Page(index + 1, rgb, s, text)


# --------------------------------------------------------------------------- hidden text


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


# --------------------------------------------------------------------------- scanner


def without_text_layer(page: Page, *, pad: int = 2) -> RGBArray | None:
    """The rendering with the drawn text-layer characters painted over by the colour
    around each (the median of a 1-px ring outside its box), so OCR reads only what the
    text layer does not hold: scanned pages, text in images, text drawn as vector
    outlines. Invisible-mode text is kept (its pixels, if any, belong to an image under
    it). ``None`` when nothing is left: fewer than `MIN_INK_PIXELS` pixels differ from
    the painted page's local background by `INK_LEVELS` or more.
    """
    from polyfuse.guard.detectors.hidden import background

    out = page.rgb.copy()
    h, w = out.shape[:2]
    for box, invisible in zip(page.text.boxes, page.text.invisible, strict=True):
        if box is None or invisible:
            continue
        x0, y0 = max(0, box[0] - pad), max(0, box[1] - pad)
        x1, y1 = min(w, box[2] + pad), min(h, box[3] + pad)
        if x1 <= x0 or y1 <= y0:
            continue
        out[y0:y1, x0:x1] = _ring_colour(out, x0, y0, x1, y1)
    deviation = np.abs(out.astype(np.int16) - background(out).astype(np.int16)).max(axis=2)
    if int(np.count_nonzero(deviation >= INK_LEVELS)) < MIN_INK_PIXELS:
        return None
    return out


def _ring_colour(rgb: RGBArray, x0: int, y0: int, x1: int, y1: int) -> RGBArray:
    h, w = rgb.shape[:2]
    xa, xb = max(0, x0 - 1), min(w, x1 + 1)
    parts = [rgb[y, xa:xb] for y in (y0 - 1, y1) if 0 <= y < h]
    parts += [rgb[y0:y1, x] for x in (x0 - 1, x1) if 0 <= x < w]
    ring = np.concatenate(parts) if parts else rgb[y0:y1, x0:x1].reshape(-1, 3)
    colour: RGBArray = np.median(ring, axis=0).astype(np.uint8)
    return colour


class DocumentScanner:
    """Scan a PDF for PII, injections, faces and hidden text, page by page.

    Args:
        text_detectors: text detectors run on each page's text layer, each hidden run
            and each metadata field.
        image_scanner: scanner of the rendered pages (anything with
            ``scan(rgb_array) -> list[Finding]``); default `ImageScanner` with the same
            text detectors. ``None`` with ``render=False`` skips it.
        render: scan the renderings with ``image_scanner`` (OCR, faces, hidden pixels).
        ocr_text_layer: OCR the whole rendering. By default the text layer's characters
            are painted out first (`without_text_layer`) and pages with nothing else are
            not OCRed: the text layer is read exactly and about 5x faster than OCR of a
            text page. Set it to catch fonts whose text layer disagrees with the glyphs
            they draw (a remapped ``ToUnicode``).
        hidden: report hidden text-layer text (`find_hidden_runs`).
        metadata: scan the document's free-text metadata.
        scale: render scale (2 = 144 dpi).
        max_pages: refuse documents with more pages.
        max_pixels: largest rendering of one page (the scale is lowered to fit).
        engine: OCR engine of the default image scanner and the OCR-layer check.
        time_budget: seconds a whole document may take (0: no limit); checked between
            pages, so a scan abandoned by `polyfuse.guard.safety.within_budget` stops
            at the next page instead of running on in its thread.
    """

    def __init__(
        self,
        text_detectors: Sequence[TextDetector] = (),
        *,
        image_scanner: Any = None,
        render: bool = True,
        ocr_text_layer: bool = False,
        hidden: bool = True,
        metadata: bool = True,
        scale: float = DEFAULT_SCALE,
        max_pages: int = DEFAULT_MAX_PAGES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        engine: Literal["rapidocr", "tesseract"] = "rapidocr",
        time_budget: float = 0.0,
    ) -> None:
        if not scale > 0:
            raise ConfigError("scale", f"must be positive, got {scale}")
        if max_pages <= 0:
            raise ConfigError("max_pages", f"must be positive, got {max_pages}")
        if max_pixels <= 0:
            raise ConfigError("max_pixels", f"must be positive, got {max_pixels}")
        self.text_detectors = list(text_detectors)
        self._image = image_scanner
        self.render = render
        self.ocr_text_layer = ocr_text_layer
        self.hidden = hidden
        self.metadata = metadata
        self.scale = float(scale)
        self.max_pages = max_pages
        self.max_pixels = max_pixels
        self.engine = engine
        self.time_budget = float(time_budget)

    @property
    def image_scanner(self) -> Any:
        """The scanner of rendered pages (default `ImageScanner`, built on first use)."""
        if self._image is None:
            from polyfuse.guard.scanners.image import ImageScanner

            self._image = ImageScanner(
                self.text_detectors, metadata=False, max_pixels=self.max_pixels, engine=self.engine
            )
        return self._image

    def scan(self, data: bytes) -> list[Finding]:
        """All findings in the PDF ``data`` (``modality="document"``, ``location.page``
        set except for metadata findings).

        Raises:
            InvalidInputError: not a readable PDF, encrypted, or over ``max_pages``.
            ScanTimeoutError: the pages took longer than ``time_budget``.
        """
        start = time.monotonic()
        pdf = open_pdf(data, max_pages=self.max_pages)
        try:
            findings: list[Finding] = []
            if self.metadata:
                for key, text in pdf_metadata(pdf).items():
                    findings.extend(self._detect(text, f"metadata:{key}", None, None))
            with _pdfium():
                pages = len(pdf)
            for index in range(pages):
                self._check_time(start, index, pages)
                page = read_page(pdf, index, scale=self.scale, max_pixels=self.max_pixels)
                findings.extend(self.scan_page(page))
            return findings
        finally:
            _close(pdf)

    def _check_time(self, start: float, index: int, pages: int) -> None:
        from polyfuse.guard.safety import ScanTimeoutError

        if self.time_budget > 0 and time.monotonic() - start > self.time_budget:
            raise ScanTimeoutError(
                f"PDF scan stopped after {index} of {pages} pages: over the time budget of "
                f"{self.time_budget:g} s",
                hint="raise Limits.time_budget for long documents, or split them",
            )

    def scan_page(self, page: Page) -> list[Finding]:
        """Findings of one page: text layer, hidden runs, then the rendering's."""
        from polyfuse.guard.detectors.hidden import background

        text = page.text
        layer = self._detect(text.text, "pdf:text", page, 0) if text.text.strip() else []
        bg = background(page.rgb)
        if self.hidden:
            for run in find_hidden_runs(page, engine=self.engine, bg=bg):
                layer = self._hidden(run, page, layer)
        if not self.render:
            return layer
        rgb = page.rgb if self.ocr_text_layer else without_text_layer(page)
        if rgb is None:
            return layer
        rendered = [_as_page_finding(f, page.number) for f in self.image_scanner.scan(rgb)]
        return layer + [f for f in rendered if not _covered(f, layer)]

    def _detect(
        self, text: str, source: str, page: Page | None, offset: int | None
    ) -> list[Finding]:
        out = []
        for det in self.text_detectors:
            for f in det.detect(text, source=source):
                span = f.location.span
                box = None
                if span is not None and page is not None and offset is not None:
                    span = (span[0] + offset, span[1] + offset)
                    box = page.text.box_of(span)
                loc = Location(
                    span=span, box=box, page=page.number if page else None, source=source
                )
                detector = f"pdfium+{f.detector}" if page is not None else f.detector
                out.append(_document_finding(f, loc, detector))
        return out

    def _hidden(self, run: HiddenRun, page: Page, layer: list[Finding]) -> list[Finding]:
        hidden = Finding(
            type="HIDDEN_TEXT",
            score=run.score,
            modality="document",
            location=Location(span=run.span, box=run.box, page=page.number, source="pdf:hidden"),
            detector="polyfuse.document",
            detector_version=DOCUMENT_VERSION,
            snippet=mask(run.text),
            explanation=run.reason,
            text=run.text,
        )
        inner = self._detect(run.text, "pdf:hidden", page, run.span[0])
        # What the page-text pass found inside the run is now reported as hidden.
        kinds = {f.type for f in inner}
        kept = [
            f
            for f in layer
            if not (
                f.type in kinds
                and f.location.span is not None
                and f.location.span[0] < run.span[1]
                and f.location.span[1] > run.span[0]
            )
        ]
        return [*kept, hidden, *inner]


def _document_finding(f: Finding, location: Location, detector: str) -> Finding:
    return replace(f, modality="document", location=location, detector=detector)


def _as_page_finding(f: Finding, number: int) -> Finding:
    loc = replace(f.location, page=number, source=f"pdf:{f.location.source}")
    return replace(f, modality="document", location=loc)


def _covered(f: Finding, layer: Sequence[Finding]) -> bool:
    """Whether a rendering finding repeats a text-layer finding of the same type there."""
    box = f.location.box
    if box is None:
        return False
    for g in layer:
        other = g.location.box
        if g.type != f.type or other is None:
            continue
        if box_iou(box, other) > 0.3 or inside(box, other) or inside(other, box):
            return True
    return False


# --------------------------------------------------------------------------- redaction


@dataclass
class RedactedDocument:
    """Redacted page images of a document (`redact_document`), saved as a PDF by `save`."""

    pages: list[PILImage.Image] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)

    def save(self, path: Any) -> None:
        """Write the pages as an image-only PDF (no text layer, no metadata)."""
        first, *rest = self.pages
        first.save(
            path,
            format="PDF",
            save_all=True,
            append_images=rest,
            resolution=72.0 * self.scales[0],
            title="",  # Pillow would write the file name as the title
        )


def redact_document(
    data: bytes,
    findings: Sequence[Finding],
    mode: Literal["fill", "blur"] = "fill",
    *,
    scale: float = DEFAULT_SCALE,
    max_pages: int = DEFAULT_MAX_PAGES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> RedactedDocument:
    """Render every page of ``data`` and fill (or blur) the boxes of ``findings`` on
    their page. The result has no text layer and no metadata, so hidden text and
    metadata findings are removed too; ``scale`` must be the scanner's.

    Raises:
        InvalidInputError: the PDF cannot be read.
    """
    from polyfuse.guard.redact.image import redact_image

    pdf = open_pdf(data, max_pages=max_pages)
    out = RedactedDocument()
    try:
        with _pdfium():
            pages = len(pdf)
        for index in range(pages):
            page = read_page(pdf, index, scale=scale, max_pixels=max_pixels)
            on_page = [f for f in findings if f.location.page == page.number]
            out.pages.append(redact_image(page.rgb, on_page, mode, max_pixels=max_pixels))
            out.scales.append(page.scale)
    finally:
        _close(pdf)
    return out
