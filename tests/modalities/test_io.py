"""Type detection by content."""

import pytest

from polyfuse.modalities.io import sniff


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
