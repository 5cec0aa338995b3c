"""The firewall's sniffer is the one sniffer of `polyfuse.modalities.io`, limited to the
modalities the firewall scans."""

from __future__ import annotations

import pytest

from polyfuse.core.errors import InvalidInputError
from polyfuse.guard.safety import sniff


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (b"%PDF-1.7", ("document", "pdf")),
        (b"\xff\xfb\x90\x00", ("audio", "mp3")),
        (b"GIF89a\x01\x00", ("image", "gif")),
        (b"BMW", ("text", "utf-8")),  # text that starts like a BMP header is text
    ],
)
def test_sniff_finds_what_the_model_finds(data: bytes, found: tuple[str, str]) -> None:
    assert sniff(data) == found


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x93NUMPY\x01\x00", r"NumPy \.npy array: not a supported image"),
        (b"\x7fELF\x02", "executable: unknown binary content"),
        (b"", "empty input"),
    ],
)
def test_sniff_refuses_what_the_firewall_cannot_scan(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidInputError, match=reason):
        sniff(data)
