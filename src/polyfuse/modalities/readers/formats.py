"""The one sniffer of polyfuse: what a file is, decided by its content (magic bytes), never
by the extension alone, so a WAV renamed to ``.png`` is reported as what it is. The model's
contracts, the firewall and serving all ask `sniff` / `detect`."""

from __future__ import annotations

from dataclasses import dataclass

from polyfuse.core.errors import InvalidInputError
from polyfuse.modalities.readers.text import decode_text

#: (magic prefix, offset, type name). Checked in order.
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"BM", 0, "bmp"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
    (b"fLaC", 0, "flac"),
    (b"OggS", 0, "ogg"),
    (b"\x93NUMPY", 0, "npy"),
    (b"%PDF-", 0, "pdf"),
    (b"PK\x03\x04", 0, "zip"),
    (b"\x1f\x8b", 0, "gzip"),
    (b"ID3", 0, "mp3"),
    (b"\xff\xfb", 0, "mp3"),  # an MPEG-1 layer III frame without ID3 tag
    (b"\xff\xf3", 0, "mp3"),  # an MPEG-2 layer III frame
    (b"\x7fELF", 0, "elf"),
)

#: Short printable magics that also begin ordinary text ("BMW", "ID3 tags", "OggS..."): they
#: count only when the head is not text. Real BMP, ID3, Ogg and FLAC headers hold NUL bytes.
_WEAK = frozenset({b"BM", b"ID3", b"OggS", b"fLaC"})

#: The modality each readable format belongs to; formats not listed are never decoded.
FORMAT_MODALITY: dict[str, str] = {
    **dict.fromkeys(("png", "jpeg", "gif", "bmp", "tiff", "webp"), "image"),
    **dict.fromkeys(("wav", "flac", "ogg", "mp3"), "audio"),
    **dict.fromkeys(("mp4", "mov", "webm", "mkv", "avi"), "video"),
    "pdf": "document",
    "npy": "series",
    "text": "text",
}

_DESCRIPTIONS = {
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "gif": "a GIF image",
    "bmp": "a BMP image",
    "tiff": "a TIFF image",
    "webp": "a WebP image",
    "wav": "WAV audio",
    "flac": "FLAC audio",
    "ogg": "Ogg audio",
    "mp3": "MP3 audio",
    "mp4": "an MP4 video",
    "mov": "a QuickTime (MOV) video",
    "webm": "a WebM video",
    "mkv": "a Matroska (MKV) video",
    "avi": "an AVI video",
    "heif": "a HEIF/AVIF image",
    "npy": "a NumPy .npy array",
    "pdf": "a PDF document",
    "zip": "a ZIP archive",
    "gzip": "gzip data",
    "elf": "an executable",
    "text": "text",
}


def sniff(head: bytes) -> str | None:
    """Detect a file type from its first bytes; ``None`` when unknown.

    Returns one of ``png jpeg gif bmp tiff webp wav flac ogg mp3 mp4 mov webm mkv avi heif
    npy pdf zip gzip elf text``.
    """
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    video = _sniff_video(head)
    if video is not None:
        return video
    textual = _is_text(head)
    for magic, offset, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic and not (magic in _WEAK and textual):
            return name
    return "text" if textual else None


#: ISO base media brands of still images (HEIF, AVIF): an ``ftyp`` box that is not a video.
_IMAGE_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"})


def _sniff_video(head: bytes) -> str | None:
    """MP4/MOV (an ISO base media ``ftyp`` box first), WebM/MKV (an EBML header), or None."""
    if head[4:8] == b"ftyp" and len(head) >= 12:
        brand = head[8:12]
        if brand in _IMAGE_BRANDS:
            return "heif"
        return "mov" if brand == b"qt  " else "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: the DocType says WebM or Matroska
        return "webm" if b"webm" in head[:64] else "mkv"
    return None


def _is_text(head: bytes) -> bool:
    """Whether ``head`` can be the start of UTF-8 text (no NUL, a cut character allowed)."""
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.reason == "unexpected end of data"  # a character cut at the end is fine
    return True


@dataclass(frozen=True)
class Detected:
    """What `detect` found: the modality and the format of some content."""

    modality: str
    format: str


def detect(data: bytes, *, name: str = "input") -> Detected:
    """``(modality, format)`` of the whole of ``data``; text is ``("text", "utf-8")``.

    Unlike `sniff`, text is checked over all of ``data`` (strict UTF-8, no NUL).

    Raises:
        InvalidInputError: empty content, or content of no readable format.
    """
    if not data:
        raise InvalidInputError(name, "empty input", hint="pass a non-empty file or string")
    fmt = sniff(data[:64])
    if fmt is not None and fmt != "text":
        if fmt not in FORMAT_MODALITY:
            raise InvalidInputError(
                name,
                f"content is {describe(fmt)}: unknown binary content "
                "(not a supported image, audio, video, PDF or UTF-8 text)",
                hint=SUPPORTED_HINT,
            )
        return Detected(FORMAT_MODALITY[fmt], fmt)
    try:
        decode_text(data, name=name)
    except InvalidInputError as exc:
        if "NUL" in exc.reason:
            raise
        raise InvalidInputError(
            name,
            "unknown binary content (not a supported image, audio, video, PDF or UTF-8 text: "
            f"{exc.reason})",
            hint=SUPPORTED_HINT,
        ) from None
    return Detected("text", "utf-8")


SUPPORTED_HINT = (
    "supported: PNG, JPEG, GIF, BMP, TIFF, WebP, WAV, FLAC, OGG, MP3, MP4, MOV, WebM, MKV, AVI, "
    "PDF, .npy, text"
)


def describe(kind: str | None) -> str:
    """Human wording for a sniffed type."""
    return "data of unknown type" if kind is None else _DESCRIPTIONS.get(kind, kind)
