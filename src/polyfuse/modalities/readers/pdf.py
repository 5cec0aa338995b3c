"""PDF: pypdfium2, opened lazily behind the one lock that serialises every call into pdfium."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from polyfuse.core.errors import DependencyError, InvalidInputError

#: pdfium is not thread-safe: every call into it, from any module, holds this lock.
PDFIUM_LOCK = threading.RLock()
#: Default cap on pages; longer documents are refused, not truncated.
DEFAULT_MAX_PAGES = 50


@contextmanager
def pdfium() -> Iterator[Any]:
    """The pypdfium2 module, with `PDFIUM_LOCK` held."""
    try:
        import pypdfium2
    except ImportError as exc:  # pragma: no cover - pypdfium2 is a guard dependency
        raise DependencyError("pypdfium2", "PDF reading", "guard") from exc
    with PDFIUM_LOCK:
        yield pypdfium2


def open_pdf(data: bytes, *, max_pages: int = DEFAULT_MAX_PAGES, name: str = "document") -> Any:
    """Open ``data`` as a `pypdfium2.PdfDocument` of at most ``max_pages`` pages.

    Raises:
        InvalidInputError: not a readable PDF, encrypted with a password, no pages or
            more than ``max_pages`` pages.
    """
    with pdfium() as module:
        try:
            pdf = module.PdfDocument(bytes(data))
            pages = len(pdf)
        except Exception as exc:  # PdfiumError, and anything odd input makes the binding raise
            if "password" in str(exc).lower():
                raise InvalidInputError(
                    name,
                    "the PDF is encrypted with a password",
                    hint="decrypt it first (qpdf --decrypt); encrypted content cannot be read",
                ) from None
            raise InvalidInputError(
                name, f"cannot open PDF ({exc})", hint="the file is truncated, corrupt or not a PDF"
            ) from None
    if pages <= 0:
        close_pdf(pdf)
        raise InvalidInputError(name, "the PDF has no pages")
    if pages > max_pages:
        close_pdf(pdf)
        raise InvalidInputError(
            name,
            f"the PDF has {pages} pages, more than max_pages={max_pages}",
            hint="split the document or raise Limits.max_pages",
        )
    return pdf


def close_pdf(pdf: Any) -> None:
    """Close a document opened by `open_pdf`."""
    with pdfium():
        pdf.close()
