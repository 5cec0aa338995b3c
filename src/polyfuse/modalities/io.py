"""Reading raw file sources safely: a path or bytes with size limits, typed by content.

The sniffer itself (`sniff`, `detect`, `describe`) lives in `polyfuse.modalities.readers.formats`
and is re-exported here, where most callers look for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from polyfuse.core.errors import InvalidInputError
from polyfuse.modalities.readers.formats import (
    FORMAT_MODALITY,
    SUPPORTED_HINT,
    Detected,
    describe,
    detect,
    sniff,
)


@dataclass(frozen=True)
class Source:
    """Raw bytes of one input and where they came from."""

    data: bytes
    path: Path | None

    @property
    def kind(self) -> str | None:
        """Sniffed file type."""
        return sniff(self.data[:64])


def resolve_path(value: str | os.PathLike[str], base_dir: Path | None) -> Path:
    """A manifest path: relative paths are taken from the manifest's folder."""
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def read_source(
    value: object,
    *,
    modality: str,
    field: str | None,
    base_dir: Path | None,
    max_bytes: int,
) -> Source:
    """Read a file path or raw bytes, enforcing ``max_bytes``.

    Raises:
        InvalidInputError: missing file, a directory, too large, or unreadable.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        if len(data) > max_bytes:
            raise InvalidInputError(
                modality, f"{len(data)} bytes exceeds the limit of {max_bytes}", field=field
            )
        return Source(data, None)
    if not isinstance(value, str | os.PathLike):
        raise InvalidInputError(
            modality,
            f"expected a file path or bytes, got {type(value).__name__}",
            field=field,
        )
    path = resolve_path(value, base_dir)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InvalidInputError(
            modality,
            "file not found (cannot read file: no such file)",
            field=field,
            path=path,
            hint="paths in a manifest are relative to the manifest's folder",
        ) from None
    except OSError as exc:
        raise InvalidInputError(
            modality, f"cannot stat file: {exc}", field=field, path=path
        ) from exc
    if path.is_dir():
        raise InvalidInputError(modality, "is a directory, not a file", field=field, path=path)
    if size > max_bytes:
        raise InvalidInputError(
            modality,
            f"file is {size} bytes, above the limit of {max_bytes}",
            field=field,
            path=path,
            hint="raise max_bytes in the modality contract if this is intended",
        )
    if size == 0:
        raise InvalidInputError(modality, "file is empty (0 bytes)", field=field, path=path)
    try:
        return Source(path.read_bytes(), path)
    except OSError as exc:
        raise InvalidInputError(
            modality, f"cannot read file: {exc}", field=field, path=path
        ) from exc


__all__ = [
    "FORMAT_MODALITY",
    "SUPPORTED_HINT",
    "Detected",
    "Source",
    "describe",
    "detect",
    "read_source",
    "resolve_path",
    "sniff",
]
