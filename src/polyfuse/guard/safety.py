"""Input safety: what a file really is, whether it is small enough, and a time budget.

The type comes from the content (magic bytes, `polyfuse.modalities.io.detect`: the same
sniffer the model uses), not the file name: a ``.txt`` that is
a PNG is scanned as an image, and an unknown binary is refused instead of being fed to
a decoder. Size limits are checked before decoding; pixel and duration limits are
enforced by the image and audio scanners from headers; every scan runs under a time
budget so one malformed or adversarial item cannot hang a batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from polyfuse.core.errors import InvalidInputError, PolyfuseError
from polyfuse.modalities.io import SUPPORTED_HINT, describe, detect

T = TypeVar("T")

#: The modalities the firewall scans; other readable content (``.npy`` series) is refused.
SCANNED_MODALITIES = frozenset({"image", "audio", "video", "document", "text"})


class ScanTimeoutError(PolyfuseError):
    """A scan ran past its time budget."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one scanned item.

    Attributes:
        max_bytes: largest accepted input.
        max_pixels: largest image (width x height), checked from the header.
        max_seconds: longest audio, checked from the header.
        max_chars: longest text.
        max_pages: most pages of a document; longer documents are refused (not truncated).
        time_budget: seconds one item may take (0 disables).
    """

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_seconds: float = 600.0
    max_chars: int = 1_000_000
    max_pages: int = 50
    time_budget: float = 60.0


def sniff(data: bytes) -> tuple[str, str]:
    """``(modality, format)`` of raw content from its magic bytes; UTF-8 text is
    ``("text", "utf-8")``.

    Raises:
        InvalidInputError: empty content, or binary content of no supported type.
    """
    found = detect(data)
    if found.modality not in SCANNED_MODALITIES:
        raise InvalidInputError(
            "input",
            f"content is {describe(found.format)}: "
            "not a supported image, audio, video, PDF or UTF-8 text",
            hint=SUPPORTED_HINT,
        )
    return found.modality, found.format


def check_size(data: bytes, limits: Limits) -> None:
    """Refuse content over ``limits.max_bytes`` before anything decodes it."""
    if len(data) > limits.max_bytes:
        raise InvalidInputError(
            "input",
            f"{len(data)} bytes is over the limit of {limits.max_bytes}",
            hint="raise Limits.max_bytes if such inputs are expected",
        )


def within_budget(fn: Callable[[], T], seconds: float, what: str = "scan") -> T:
    """Run ``fn`` and return its result, or raise `ScanTimeoutError` after ``seconds``.

    The work runs in a daemon worker thread; on timeout the caller gets the error at
    once and the thread's result is discarded when it ends (Python cannot kill a thread
    stuck inside a C decoder, but it no longer blocks the batch).
    """
    if seconds <= 0:
        return fn()
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # handed to the caller below
            error.append(exc)

    worker = threading.Thread(target=run, name="guard-scan", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise ScanTimeoutError(
            f"{what} took longer than its budget of {seconds:g} s",
            hint="raise Limits.time_budget or check the input",
        )
    if error:
        raise error[0]
    return result[0]
