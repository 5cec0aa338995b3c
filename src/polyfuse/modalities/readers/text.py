"""Text: strict UTF-8 without NUL bytes."""

from __future__ import annotations

from pathlib import Path

from polyfuse.core.errors import InvalidInputError


def decode_text(
    data: bytes, *, name: str = "text", field: str | None = None, path: Path | None = None
) -> str:
    """Decode ``data`` as UTF-8 text.

    Raises:
        InvalidInputError: not valid UTF-8, or NUL bytes (binary content posing as text).
    """
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            name,
            f"not valid UTF-8 (byte {exc.start}: {exc.reason})",
            field=field,
            path=path,
            hint="re-encode the text as UTF-8",
        ) from None
    if "\x00" in text:
        raise InvalidInputError(
            name,
            "text contains NUL bytes: binary content of unknown type",
            field=field,
            path=path,
        )
    return text
