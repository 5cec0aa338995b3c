"""The open-loop client of the serving benchmarks (`benchmarks/serve_common.py`) against a
real HTTP/1.1 server on loopback: requests leave on schedule whatever the answers, latency
counts from the scheduled time, a late answer is a timeout."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from serve_common import arrival_times, open_loop


async def _serve(delay_s: float) -> tuple[asyncio.Server, str]:
    """A keep-alive server that answers every request (``Content-Length`` bodies) with 200
    after ``delay_s``, each request on its own task so a slow answer holds up no other
    connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                await asyncio.sleep(delay_s)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


def _request(i: int) -> tuple[str, dict[str, object]]:
    return "/v1/predict", {"json": {"inputs": {"text": f"request {i}"}}}


def test_fixed_arrivals_are_evenly_spaced_and_poisson_ones_reproducible() -> None:
    assert arrival_times(10, 0.5, "fixed", seed=0) == pytest.approx([0.1, 0.2, 0.3, 0.4])
    poisson = arrival_times(200, 1.0, "poisson", seed=3)
    assert poisson == arrival_times(200, 1.0, "poisson", seed=3)
    assert poisson != arrival_times(200, 1.0, "poisson", seed=4)
    assert 140 < len(poisson) < 260 and poisson == sorted(poisson)


def test_when_answers_are_slower_than_arrivals_then_requests_still_leave_on_time() -> None:
    async def go() -> object:
        server, url = await _serve(delay_s=0.2)
        async with server:
            return await open_loop(url, _request, 50, 0.5, arrivals="fixed", timeout=5)

    r = asyncio.run(go())
    assert r.scheduled == 24 and r.statuses["2xx"] == 24
    # a closed loop on one connection would have sent 3; here each went on its own schedule
    assert r.max_in_flight >= 9
    assert min(r.latencies_ms) >= 200
    assert r.max_lag_ms < 100


def test_when_an_answer_comes_after_the_timeout_then_it_counts_as_a_timeout() -> None:
    async def go() -> object:
        server, url = await _serve(delay_s=0.5)
        async with server:
            return await open_loop(url, _request, 20, 0.2, arrivals="fixed", timeout=0.1)

    r = asyncio.run(go())
    assert r.statuses["timeout"] == r.scheduled == 3
    assert r.achieved_rps == 0
    assert all(100 <= ms < 300 for ms in r.latencies_ms)
