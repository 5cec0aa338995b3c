"""Running the app: the port check and uvicorn with the corked transport (one send per
answer), against a real uvicorn on loopback."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import pytest

from polyfuse.core.errors import ConfigError
from polyfuse.serve.http.server import CorkedTransport, check_port, http_protocol


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b'{"label": "7"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Recorder:
    """A transport that records each write (what reaches the socket)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_corked_transport_joins_one_steps_writes() -> None:
    async def body() -> _Recorder:
        raw = _Recorder()
        corked = CorkedTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        corked.write(b"HTTP/1.1 200 OK\r\n\r\n")
        corked.write(b"body")
        assert raw.writes == [] and corked.get_write_buffer_size() == 23
        await asyncio.sleep(0)  # the step ends: one write
        corked.write(b"next")
        corked.close()  # closing writes what is held first
        assert corked.get_extra_info("peername") == "info:peername"  # the rest passes through
        return raw

    raw = asyncio.run(body())
    assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"next"] and raw.closed


def test_uvicorn_sends_a_whole_answer_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    flushed: list[int] = []  # bytes of each write that reached the socket
    original = CorkedTransport.flush

    def flush(self: CorkedTransport) -> None:
        held = sum(map(len, self._held))
        if held:
            flushed.append(held)
        original(self)

    monkeypatch.setattr(CorkedTransport, "flush", flush)
    protocol = http_protocol()
    assert not isinstance(protocol, str), "httptools is installed with uvicorn[standard]"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_app, log_level="warning", http=protocol))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            for _ in range(3):  # keep-alive: every answer on the connection
                client.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                first = client.recv(65536)  # one send: headers and body arrive together
                assert first.startswith(b"HTTP/1.1 200 OK\r\n")
                assert first.endswith(b'\r\n\r\n{"label": "7"}')
        assert len(flushed) == 3 and all(n == len(first) for n in flushed), flushed
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_check_port_names_the_flag_when_busy() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ConfigError) as info:
            check_port("127.0.0.1", busy.getsockname()[1])
    assert "--port" in str(info.value)
