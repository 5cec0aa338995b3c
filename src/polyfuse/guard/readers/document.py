"""Reading PDFs for the firewall: pages rendered to pixels with their text layer mapped
to pixel boxes, and the free-text metadata.

`read_page` renders one page at `DocumentScanner.scale` (2 = 144 dpi; lower for pages that
would exceed ``max_pixels``, see `page_scale`) and builds its `PageText`: the characters of
the text layer with a pixel box ``(x0, y0, x1, y1)`` (origin top-left) each, and whether
each is drawn invisibly. `pdf_metadata` reads Title, Subject, Keywords, Author, Creator and
Producer. PDFs are opened by the one PDF reader of `polyfuse.modalities.readers.pdf`, and
every call into pdfium holds its lock (pdfium is not thread-safe).

What is found in them is decided elsewhere: `polyfuse.guard.scanners.document` runs the
text detectors and OCR on the pages, `polyfuse.guard.detectors.hidden_runs` finds text-layer
text a reader of the rendered page does not see, `polyfuse.guard.redact.document` paints
findings out.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from polyfuse.core.errors import InvalidInputError
from polyfuse.guard.geometry import Box, clip_box
from polyfuse.guard.readers.ocr import DEFAULT_MAX_PIXELS, RGBArray
from polyfuse.modalities.readers.pdf import pdfium as _pdfium

if TYPE_CHECKING:
    pass

#: Version of this scanner's rules (hidden-text rules, span and box mapping).
DOCUMENT_VERSION = "1"
#: Default render scale: 2 = 144 dpi, enough for OCR of 8 pt text.
DEFAULT_SCALE = 2.0
#: Default cap on pages; longer documents are refused, not truncated.
DEFAULT_MAX_PAGES = 50  # = polyfuse.modalities.readers.pdf.DEFAULT_MAX_PAGES
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

_INVISIBLE_MODES = (3, 7)  # FPDF_TEXTRENDERMODE_INVISIBLE, FPDF_TEXTRENDERMODE_CLIP

HiddenKind = Literal["invisible render mode", "outside the page", "tiny text", "not visible"]


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


# --------------------------------------------------------------------------- scanner


# --------------------------------------------------------------------------- redaction
