"""Running the app: the port checked before anything loads, then uvicorn.

`polyfuse serve` calls `check_port` right after its settings are checked, so a busy port
fails in a second instead of after the model has loaded and tuned, and `run` to serve.

uvicorn writes an answer's status line and headers, then its body, as two writes to the
socket (two system calls and, on a connection with Nagle off, two packets the client
reads separately). `http_protocol` gives uvicorn's httptools protocol a transport that
holds what is written until the event loop's current step ends, so a whole answer goes
out in one send.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from polyfuse.core.errors import ConfigError


def check_port(host: str, port: int) -> None:
    """Raise `ConfigError` naming --port when ``host:port`` cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                "--port",
                f"cannot listen on {host}:{port} ({exc.strerror})",
                hint="another process holds it: stop it or pass a free --port",
            ) from None


def run(app: Any, host: str, port: int, *, log_level: str) -> None:
    """Serve ``app`` with uvicorn until interrupted (access log off: see --request-log)."""
    import uvicorn

    uvicorn.run(
        app, host=host, port=port, log_level=log_level, access_log=False, http=http_protocol()
    )


class CorkedTransport:
    """A transport that joins the writes of one event-loop step into one (see the module
    docstring); everything else goes to the socket's transport as it is."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Write what is held, in one write."""
        if self._held:
            data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
            self._held.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def http_protocol() -> Any:
    """uvicorn's httptools protocol over a `CorkedTransport`, or ``"auto"`` when httptools
    is not installed (uvicorn without its ``standard`` extra)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "auto"

    class CorkedHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: Any) -> None:
            corked: Any = CorkedTransport(transport, asyncio.get_running_loop())
            super().connection_made(corked)

    return CorkedHttpToolsProtocol
