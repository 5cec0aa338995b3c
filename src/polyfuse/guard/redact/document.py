"""PDF redaction: every page rendered, the boxes of findings filled or blurred on their page;
the result has no text layer and no metadata, so nothing redacted can be copied out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from polyfuse.guard.findings import Finding
from polyfuse.guard.readers.ocr import DEFAULT_MAX_PIXELS
from polyfuse.modalities.readers.pdf import close_pdf as _close
from polyfuse.modalities.readers.pdf import open_pdf
from polyfuse.modalities.readers.pdf import pdfium as _pdfium

if TYPE_CHECKING:
    from PIL import Image as PILImage
from polyfuse.guard.readers.document import DEFAULT_MAX_PAGES, DEFAULT_SCALE, read_page


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
