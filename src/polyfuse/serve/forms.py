"""multipart/form-data bodies parsed in memory.

A request body is read whole anyway (its size is capped by ``max_request_bytes``), so the
parts are collected as bytes straight from python-multipart's callbacks. Starlette's
``Request.form()`` spools every file part through a temporary-file object with awaited
writes and reads; on the event loop of a loaded server that machinery cost about half of
the multipart parsing time (profiled at saturation, docs/benchmarks.md). The rules are
Starlette's: a part without a filename is a text field decoded with the body's charset
(latin-1 when that fails), a part needs a ``name``, and the limits on files, fields and
text field size answer with the same messages.
"""

from __future__ import annotations

import codecs

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from polyfuse.serve.types import ServeError

#: (field name, bytes for a file part or str for a text field), in body order.
Parts = list[tuple[str, bytes | str]]


class _Collector:
    """python-multipart callbacks that keep every part in memory."""

    def __init__(self, charset: str, max_files: int, max_fields: int, max_part_size: int):
        self.charset = charset
        self.max_files, self.max_fields, self.max_part_size = max_files, max_fields, max_part_size
        self.parts: Parts = []
        self.files = self.fields = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._data = bytearray()
        self._name = ""
        self._is_file = False

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._data = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if bytes(self._header_name).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name = bytearray()
        self._header_value = bytearray()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise ServeError(
                "invalid_input",
                'multipart body: the Content-Disposition header field "name" must be provided.',
            )
        self._name = _decode(options[b"name"], self.charset)
        self._is_file = b"filename" in options
        if self._is_file:
            self.files += 1
            if self.files > self.max_files:
                raise ServeError(
                    "too_large",
                    f"multipart body: Too many files. Maximum number of files is {self.max_files}.",
                )
        else:
            self.fields += 1
            if self.fields > self.max_fields:
                raise ServeError(
                    "too_large",
                    f"multipart body: Too many fields. Maximum number of fields is "
                    f"{self.max_fields}.",
                )

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        # text fields only, as Starlette: a file's size is checked by the app, which
        # names the input in its answer
        if not self._is_file and len(self._data) + (end - start) > self.max_part_size:
            raise ServeError(
                "too_large",
                f"multipart body: Part exceeded maximum size of "
                f"{int(self.max_part_size / 1024)}KB.",
            )
        self._data += data[start:end]

    def on_part_end(self) -> None:
        value = bytes(self._data) if self._is_file else _decode(self._data, self.charset)
        self.parts.append((self._name, value))


def _decode(value: bytes | bytearray, charset: str) -> str:
    try:
        return value.decode(charset)
    except (UnicodeDecodeError, LookupError):
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
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ServeError("invalid_input", "multipart body: Missing boundary in multipart.")
    raw_charset = params.get(b"charset", b"utf-8")
    try:
        charset = codecs.lookup(raw_charset.decode("latin-1")).name
    except LookupError:
        charset = "latin-1"
    sink = _Collector(charset, max_files, max_fields, max_part_size)
    callbacks = {
        "on_part_begin": sink.on_part_begin,
        "on_part_data": sink.on_part_data,
        "on_part_end": sink.on_part_end,
        "on_header_field": sink.on_header_field,
        "on_header_value": sink.on_header_value,
        "on_header_end": sink.on_header_end,
        "on_headers_finished": sink.on_headers_finished,
    }
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except FormParserError:  # broken framing (what the parser says is not for clients)
        raise ServeError("invalid_input", "multipart body: Invalid multipart data.") from None
    return sink.parts


__all__ = ["Parts", "parse_multipart"]
