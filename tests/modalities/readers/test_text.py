"""The one text decoder and the PDF opener."""

from __future__ import annotations

import pytest

from polyfuse.core.errors import InvalidInputError
from polyfuse.guard.redact import document as redaction
from polyfuse.guard.scanners import document
from polyfuse.modalities import TextContract
from polyfuse.modalities.readers import pdf
from polyfuse.modalities.readers.text import decode_text


@pytest.mark.parametrize(
    ("data", "result"),
    [
        (b"plain", "plain"),
        ("caf\u00e9 \u2603".encode(), "caf\u00e9 \u2603"),
        (b"\xef\xbb\xbfwith BOM", "\ufeffwith BOM"),
        (b"bad \xff byte", "not valid UTF-8 \\(byte 4"),
        (b"\xff\xfeu\x00t\x00f\x001\x006\x00", "not valid UTF-8 \\(byte 0"),
        (b"nul\x00inside", "NUL bytes"),
    ],
)
def test_decode_text(data: bytes, result: str) -> None:
    if "UTF-8" in result or "NUL" in result:
        with pytest.raises(InvalidInputError, match=result):
            decode_text(data, name="caption")
    else:
        assert decode_text(data, name="caption") == result


def test_text_contract_refuses_bytes_of_another_format_as_the_firewall_does() -> None:
    contract = TextContract.create("caption", {})
    with pytest.raises(InvalidInputError, match="content is a PDF document, not text"):
        contract.load(b"%PDF-1.4\n1 0 obj << >> endobj\n")
    assert contract.load(b"BMW and OggS are words") == "BMW and OggS are words"


def test_the_guard_opens_pdfs_through_the_one_reader() -> None:
    assert document.open_pdf is pdf.open_pdf
    assert redaction.open_pdf is pdf.open_pdf
    with pytest.raises(InvalidInputError, match="cannot open PDF") as err:
        pdf.open_pdf(b"%PDF-1.4 truncated")
    assert err.value.modality == "document"
