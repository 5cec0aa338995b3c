"""multipart/form-data bodies parsed in memory.

A request body is read whole anyway (its size is capped by ``max_request_bytes``), so the
parts are cut out of it with ``bytes.find`` between delimiters. Starlette's
``Request.form()`` spools every file part through a temporary-file object with awaited
writes and reads, and python-multipart's streaming parser calls back into Python for
every header fragment; on the event loop of a loaded server the two cost most of the
multipart time (profiled at saturation, docs/benchmarks.md). The rules are
Starlette's: a part without a filename is a text field decoded with the body's charset
(latin-1 when that fails), a part needs a ``name``, and the limits on files, fields and
text field size answer with the same messages.
"""

from __future__ import annotations

import codecs
import functools

from python_multipart.multipart import parse_options_header

from polyfuse.serve.types import ServeError

#: (field name, bytes for a file part or str for a text field), in body order.
Parts = list[tuple[str, bytes | str]]


def _invalid(why: str = "Invalid multipart data.") -> ServeError:
    return ServeError("invalid_input", f"multipart body: {why}")


class _Reader:
    """Walks a whole body with ``bytes.find``: from one delimiter to the next, a part's
    header lines up to the blank line, then its content. Framing as python-multipart
    reads it: CR/LF before the first delimiter are skipped, a delimiter is followed by
    CRLF (another part) or ``--`` (the end; an epilogue is ignored), header names are
    HTTP tokens, and a part's content ends at CRLF + the next delimiter."""

    def __init__(self, body: bytes, delimiter: bytes, charset: str):
        self.body, self.delimiter, self.charset = body, delimiter, charset

    def parts(self, max_files: int, max_fields: int, max_part_size: int) -> Parts:
        body, delimiter = self.body, self.delimiter
        pos = 0
        while body[pos : pos + 1] in (b"\r", b"\n"):  # no copy of the body, unlike lstrip
            pos += 1
        if not body.startswith(delimiter, pos):
            raise _invalid()
        pos += len(delimiter)
        parts: Parts = []
        files = fields = 0
        closing = b"\r\n" + delimiter
        while not body.startswith(b"--", pos):
            if not body.startswith(b"\r\n", pos):
                raise _invalid()
            name, is_file, pos = self._headers(pos + 2)
            end = body.find(closing, pos)
            if end < 0:
                raise _invalid()
            if is_file:
                files += 1
                if files > max_files:
                    raise ServeError(
                        "too_large",
                        f"multipart body: Too many files. Maximum number of files is {max_files}.",
                    )
                parts.append((name, body[pos:end]))
            else:
                fields += 1
                if fields > max_fields:
                    raise ServeError(
                        "too_large",
                        f"multipart body: Too many fields. Maximum number of fields is "
                        f"{max_fields}.",
                    )
                # text fields only, as Starlette: a file's size is checked by the app,
                # which names the input in its answer
                if end - pos > max_part_size:
                    raise ServeError(
                        "too_large",
                        f"multipart body: Part exceeded maximum size of "
                        f"{int(max_part_size / 1024)}KB.",
                    )
                parts.append((name, _decode(body[pos:end], self.charset)))
            pos = end + len(closing)
        return parts

    def _headers(self, pos: int) -> tuple[str, bool, int]:
        """The part's field name and whether it is a file, from its header lines at
        ``pos``; and where its content starts."""
        body = self.body
        disposition = b""
        while not body.startswith(b"\r\n", pos):
            end = body.find(b"\r\n", pos)
            if end < 0:
                raise _invalid()
            field, colon, value = body[pos:end].partition(b":")
            if not colon or not field or field.translate(None, _TOKEN):
                raise _invalid()
            if field.lower() == b"content-disposition":
                disposition = value.lstrip(b" ")
            pos = end + 2
        options = _options(disposition)
        if b"name" not in options:
            raise _invalid('the Content-Disposition header field "name" must be provided.')
        return _decode(options[b"name"], self.charset), b"filename" in options, pos + 2


#: HTTP token characters (RFC 9110): what a header name may hold.
_TOKEN = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@functools.lru_cache(maxsize=256)
def _parsed_options(value: bytes) -> dict[bytes, bytes]:
    return parse_options_header(value)[1]


def _options(value: bytes) -> dict[bytes, bytes]:
    """The options of a header value such as ``form-data; name="image"`` (python-multipart's
    parser). Clients repeat the same few values, so short ones are remembered."""
    if len(value) > 200:
        return parse_options_header(value)[1]
    return _parsed_options(value)


@functools.lru_cache(maxsize=64)
def _codec(charset: str) -> str:
    return codecs.lookup(charset).name


def _decode(value: bytes | bytearray, charset: str) -> str:
    try:
        return value.decode(charset)
    except (ValueError, LookupError):  # UnicodeError is a ValueError; "undefined" raises it
        return value.decode("latin-1")


def parse_multipart(
    content_type: str,
    body: bytes,
    *,
    max_files: int = 1000,
    max_fields: int = 1000,
    max_part_size: int = 1024 * 1024,
) -> Parts:
    """The parts of a multipart/form-data ``body`` sent with ``content_type``.

    Raises:
        ServeError: ``invalid_input`` for a body that is not multipart/form-data as the
            header says (no boundary, a part without a name, broken framing);
            ``too_large`` past ``max_files`` file parts, ``max_fields`` text fields, or
            ``max_part_size`` bytes in one text field.
    """
    params = _options(content_type.encode("latin-1", "replace"))
    boundary = params.get(b"boundary")
    if not boundary:
        raise ServeError("invalid_input", "multipart body: Missing boundary in multipart.")
    raw_charset = params.get(b"charset", b"utf-8")
    try:
        charset = _codec(raw_charset.decode("latin-1"))
    except LookupError:
        charset = "latin-1"
    return _Reader(body, b"--" + boundary, charset).parts(max_files, max_fields, max_part_size)


__all__ = ["Parts", "parse_multipart"]
