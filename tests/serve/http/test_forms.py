"""The in-memory multipart parser gives what Starlette's ``Request.form()`` gives."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from polyfuse.serve.http.forms import parse_multipart
from polyfuse.serve.types import ServeError

BOUNDARY = "b0undary"
CT = f"multipart/form-data; boundary={BOUNDARY}"


def body(*parts: tuple[str, str | None, bytes], boundary: str = BOUNDARY) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += (
            (
                f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()


def starlette_parts(content_type: str, raw: bytes, **limits: int) -> list[tuple[str, object]]:
    """What Starlette's form parser makes of the same body (files read back to bytes)."""

    async def go() -> list[tuple[str, object]]:
        sent = False

        async def receive() -> dict[str, object]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}

        scope = {
            "type": "http",
            "method": "POST",
            "headers": [(b"content-type", content_type.encode())],
        }
        form = await Request(scope, receive).form(**limits)
        out: list[tuple[str, object]] = []
        for name, value in form.multi_items():
            out.append((name, await value.read() if isinstance(value, UploadFile) else value))
        await form.close()
        return out

    return asyncio.run(go())


CASES = {
    "file and text": (CT, body(("image", "x.png", b"\x89PNG\x00\r\n--x"), ("text", None, b"hi"))),
    "utf-8 text": (CT, body(("text", None, "café ünï".encode()))),
    "latin-1 charset": (CT + "; charset=latin-1", body(("text", None, "café".encode("latin-1")))),
    "bad utf-8 falls back": (CT, body(("text", None, b"\xff\xfe ok"))),
    "empty parts": (CT, body(("audio", "a.wav", b""), ("text", None, b""))),
    "binary with CRLFs": (CT, body(("audio", "a.wav", bytes(range(256)) * 40))),
    "repeated name": (CT, body(("text", None, b"a"), ("text", None, b"b"))),
}


@pytest.mark.parametrize("case", list(CASES))
def test_parts_equal_starlettes(case: str) -> None:
    content_type, raw = CASES[case]
    assert parse_multipart(content_type, raw) == starlette_parts(content_type, raw)


@pytest.mark.parametrize(
    ("content_type", "raw", "code", "message"),
    [
        ("multipart/form-data", body(("text", None, b"x")), "invalid_input", "boundary"),
        (CT, body(("text", None, b"x")).replace(b' name="text"', b""), "invalid_input", "name"),
        (CT, b"--b0undary\r\nno headers end", "invalid_input", ""),
        (CT, b"garbage that is not multipart at all", "invalid_input", "Invalid multipart"),
        (CT, body(*[(f"f{i}", "x.bin", b"1") for i in range(3)]), "too_large", "files"),
        (CT, body(*[(f"t{i}", None, b"1") for i in range(3)]), "too_large", "fields"),
        (CT, body(("text", None, b"0" * 3000)), "too_large", "Part exceeded"),
    ],
)
def test_bad_bodies_are_typed_errors_where_starlette_refuses_them(
    content_type: str, raw: bytes, code: str, message: str
) -> None:
    limits = {"max_files": 2, "max_fields": 2, "max_part_size": 2048}
    with pytest.raises(ServeError) as info:
        parse_multipart(content_type, raw, **limits)
    assert info.value.code == code and message in info.value.message
    with pytest.raises(MultiPartException):  # what Starlette answers with a 400
        starlette_parts(content_type, raw, **limits)


def test_a_big_file_part_is_left_to_the_apps_item_limit() -> None:
    raw = body(("image", "x.png", b"0" * 3000))
    assert parse_multipart(CT, raw, max_part_size=2048) == [("image", b"0" * 3000)]
    assert starlette_parts(CT, raw, max_part_size=2048) == [("image", b"0" * 3000)]


EDGE_CASES = {
    "CRLFs before the first delimiter": (CT, b"\r\n\r\n" + body(("text", None, b"x"))),
    "an epilogue after the last delimiter": (CT, body(("text", None, b"x")) + b"epilogue\r\n"),
    "header names in any case, several headers": (
        CT,
        b"--b0undary\r\nCONTENT-TYPE: text/plain\r\ncontent-disposition:   form-data; "
        b'name="a"; filename="f.txt"\r\nX-Other: 1\r\n\r\nabc\r\n--b0undary--\r\n',
    ),
    "delimiter-like bytes inside content": (
        CT,
        body(("audio", "a.wav", b"--b0undary\r\n\r\n--b0undar\r\n-b0undary--")),
    ),
    "quoted name with a semicolon": (
        CT,
        b'--b0undary\r\nContent-Disposition: form-data; name="a;b"\r\n\r\nv\r\n--b0undary--',
    ),
    "no headers but a name-less part": (CT, b"--b0undary\r\n\r\nx\r\n--b0undary--\r\n"),
}


@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_edge_cases_read_as_starlette_reads_them(case: str) -> None:
    content_type, raw = EDGE_CASES[case]
    try:
        expected: object = starlette_parts(content_type, raw)
    except MultiPartException:
        expected = ServeError
    if expected is ServeError:
        with pytest.raises(ServeError):
            parse_multipart(content_type, raw)
    else:
        assert parse_multipart(content_type, raw) == expected


_names = st.text(
    st.characters(codec="utf-8", exclude_characters='"\\\r\n%'), min_size=1, max_size=12
)
_content = st.binary(max_size=300).filter(lambda b: b"--" + BOUNDARY.encode() not in b)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(_names, st.booleans(), _content),
        min_size=1,
        max_size=5,
    )
)
def test_random_bodies_read_as_starlette_reads_them(
    spec: list[tuple[str, bool, bytes]],
) -> None:
    raw = body(*[(name, "f.bin" if is_file else None, data) for name, is_file, data in spec])
    assert parse_multipart(CT, raw) == starlette_parts(CT, raw)
