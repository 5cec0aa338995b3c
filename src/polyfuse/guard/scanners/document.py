"""Document scanner of the firewall: a PDF's text layer, its rendered pages (OCR), hidden
text and metadata, page by page, with every finding located on its page."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from polyfuse.core.errors import ConfigError
from polyfuse.guard.findings import Finding, Location, TextDetector, mask
from polyfuse.guard.geometry import box_iou, inside
from polyfuse.guard.readers.ocr import DEFAULT_MAX_PIXELS
from polyfuse.modalities.readers.pdf import close_pdf as _close
from polyfuse.modalities.readers.pdf import open_pdf
from polyfuse.modalities.readers.pdf import pdfium as _pdfium

if TYPE_CHECKING:
    pass
import numpy as np

from polyfuse.guard.detectors.hidden_runs import HiddenRun, find_hidden_runs
from polyfuse.guard.readers.document import (
    DEFAULT_MAX_PAGES,
    DEFAULT_SCALE,
    DOCUMENT_VERSION,
    INK_LEVELS,
    MIN_INK_PIXELS,
    Page,
    pdf_metadata,
    read_page,
)
from polyfuse.guard.readers.ocr import RGBArray


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
