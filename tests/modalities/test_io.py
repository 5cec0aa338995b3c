"""Type detection by content."""

import pytest

from polyfuse.core.errors import InvalidInputError
from polyfuse.modalities.io import detect, sniff


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x89PNG\r\n\x1a\nxxxx", "png"),
        (b"\xff\xd8\xff\xe0", "jpeg"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "wav"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"fLaC\x00", "flac"),
        (b"OggS\x00", "ogg"),
        (b"\x93NUMPY\x01\x00", "npy"),
        (b"1.0,2.0\n3.0,4.0\n", "text"),
        (b"\x00\x01\x02\xff\xfe", None),
    ],
)
def test_sniff(head: bytes, kind: str | None) -> None:
    assert sniff(head) == kind


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"BM6$\x00\x00\x00\x00\x00\x006\x00", "bmp"),
        (b"BMW is a car maker", "text"),  # a short printable magic counts only in binary
        (b"ID3\x04\x00\x00\x7f", "mp3"),
        (b"ID3 tags are metadata", "text"),
        (b"\xff\xfb\x90\x00", "mp3"),
        (b"OggS are fish", "text"),
        (b"fLaC\x80\x00\x00\x22", "flac"),
        (b"%PDF-1.4\n", "pdf"),  # a strong magic wins even when the file is ASCII
        (b"caf\xc3", "text"),  # a character cut at the end of the head
    ],
)
def test_weak_and_strong_magics(head: bytes, kind: str) -> None:
    assert sniff(head) == kind


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (b"\x89PNG\r\n\x1a\n", ("image", "png")),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", ("audio", "wav")),
        (b"%PDF-1.7", ("document", "pdf")),
        (b"\x93NUMPY\x01\x00", ("series", "npy")),
        ("h\u00e9llo".encode() * 40, ("text", "utf-8")),
        (b"", "empty input"),
        (b"x" * 70 + b"\xff", "unknown binary content"),  # the whole text is checked
        (b"text\x00", "NUL bytes"),
        (b"PK\x03\x04rest", "ZIP archive: unknown binary content"),
    ],
)
def test_detect(data: bytes, found: tuple[str, str] | str) -> None:
    if isinstance(found, tuple):
        assert (detect(data).modality, detect(data).format) == found
        return
    with pytest.raises(InvalidInputError, match=found):
        detect(data)
