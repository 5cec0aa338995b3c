"""Shared pieces of the HTTP serving benchmarks (`serve_load.py`, `serve_soak.py`).

- runtime variants (naive / batched / cached) with the options of `serve_batching.py`;
- a server in its own process (``uvicorn`` + `create_app` + `ModelRuntime`) on a free
  loopback port: run this file with ``--port`` to start one, `Server` does it for you;
- request inputs: the test manifest of an artifact, or `serve_batching.make_inputs`;
- a closed-loop HTTP/1.1 client (``concurrency`` keep-alive connections until a deadline);
- percentiles and the resident memory of a process tree.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from serve_batching import build_artifact, make_inputs  # noqa: E402

Inputs = dict[str, bytes | str]
MODELS = ("av-digits", "minilm", "effnet")  # built by serve_batching (random weights)
_MIME = {"image": ("x.png", "image/png"), "audio": ("x.wav", "audio/wav")}


def variant_options(variant: str, **extra: Any) -> dict[str, Any]:
    """`RuntimeConfig` options of a variant, as JSON-able values (``batching`` a dict).

    ``naive``: nothing batched (one encoder forward, one fusion forward and one
    preprocessing pool call per request), no cache; ``batched``: batch sizes measured at
    start-up and tuned online, no cache; ``cached``: batched + memory cache. Torch
    threads as ``polyfuse serve`` sets them (``auto``).
    """
    batching: dict[str, Any] = (
        {"max_batch": 1, "max_wait_ms": 0}
        if variant == "naive"
        else {"max_batch": "auto", "max_wait_ms": 0, "max_auto": 64}
    )
    options = {
        "batching": batching,
        "cache": "memory" if variant == "cached" else "none",
        "queue_size": 1024,
        "preprocess": "auto",  # as `polyfuse serve` runs: a thread for cheap inputs
        "preprocess_batch": 1 if variant == "naive" else 16,
        "workers": 2,
        "autotune_budget_s": 6.0,
        "torch_threads": "auto",  # as `polyfuse serve` runs
    }
    options.update(extra)
    return options


def make_runtime(target: str, options: dict[str, Any]) -> Any:
    """A started `ModelRuntime`: ``target`` is an artifact folder or a name of `MODELS`."""
    from polyfuse.serve.runtime.model import ModelRuntime
    from polyfuse.serve.runtime.settings import BatchSettings, RuntimeConfig

    options = dict(options)
    batching = BatchSettings(**options.pop("batching", {}))
    per = {m: BatchSettings(**b) for m, b in options.pop("per_modality", {}).items()}
    config = RuntimeConfig.from_options(batching=batching, per_modality=per, **options)
    if target in MODELS:
        artifact = build_artifact(target)
    else:
        from polyfuse.artifacts.classifier import load_artifact
        from polyfuse.core.device import resolve_device

        artifact = load_artifact(target, resolve_device(config.device))
    runtime = ModelRuntime(artifact, config)
    runtime.setup()
    return runtime


def load_inputs(target: str, n: int, seed: int = 1) -> list[Inputs]:
    """``n`` requests' inputs: rows of ``<artifact>/../data/test.jsonl`` for an artifact
    (the demo layout), generated ones (`serve_batching.make_inputs`) for a model name."""
    if target in MODELS:
        return make_inputs(target, n, seed=seed)
    manifest = Path(target).resolve().parent / "data" / "test.jsonl"
    if not manifest.is_file():
        raise SystemExit(f"no test manifest at {manifest}; pass --manifest")
    return manifest_inputs(manifest, n)


def manifest_inputs(manifest: Path, n: int) -> list[Inputs]:
    """The first ``n`` rows of a JSONL manifest as request inputs (files read as bytes)."""
    out: list[Inputs] = []
    for line in manifest.read_text(encoding="utf-8").splitlines()[:n]:
        row = json.loads(line)
        item: Inputs = {}
        for key in ("image", "audio"):
            if key in row:
                item[key] = (manifest.parent / row[key]).read_bytes()
        if "text" in row:
            item["text"] = str(row["text"])
        out.append(item)
    return out


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`create_app` over a runtime, served by uvicorn in a child process (a context
    manager: starts, waits for ``/readyz``, stops)."""

    def __init__(self, target: str, options: dict[str, Any], *, ready_timeout: float = 300):
        self.target, self.options, self.ready_timeout = target, options, ready_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        cmd = [sys.executable, str(HERE / "serve_common.py"), "--target", self.target]
        cmd += ["--port", str(self.port), "--options", json.dumps(self.options)]
        self.proc = subprocess.Popen(cmd)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with status {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"server not ready after {self.ready_timeout:.0f} s")

    def __exit__(self, *exc: object) -> None:
        import psutil  # type: ignore[import-untyped]

        if self.proc is None or self.proc.poll() is not None:
            return
        children = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # the preprocessing pool's spawned workers can outlive a terminated server
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.terminate()
        psutil.wait_procs(children, timeout=10)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def metrics(self) -> dict[str, float]:
        """``/metrics`` gauges without labels, name -> value."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and not line.startswith("#") and "{" not in parts[0]:
                with contextlib.suppress(ValueError):
                    out[parts[0]] = float(parts[1])
        return out

    def batch_sizes(self, modalities: Sequence[str]) -> dict[str, int]:
        """The batch size each encoder may run now: the online tuner's cap, else the
        fixed (or start-up measured) ``max_batch``."""
        gauges = self.metrics()
        out = {}
        for m in modalities:
            name = f"polyfuse_runtime_batchers_{m}"
            out[m] = int(gauges.get(f"{name}_online_cap", gauges.get(f"{name}_max_batch", 0)))
        return out


@dataclass
class Result:
    """Requests of one load level."""

    concurrency: int
    wall_s: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    cpu_s: float = 0.0  # CPU time of the driving process (client, or client + runtime)

    @property
    def cpu_cores(self) -> float:
        """Cores the driving process kept busy on average."""
        return self.cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.wall_s if self.wall_s else 0.0

    def pct(self, q: int) -> float:
        """Latency percentile ``q`` (1..99) in ms; nan without requests."""
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else float("nan")
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]

    def summary(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "requests": len(self.latencies_ms),
            "rps": round(self.rps, 2),
            "p50_ms": round(self.pct(50), 2),
            "p95_ms": round(self.pct(95), 2),
            "p99_ms": round(self.pct(99), 2),
            "statuses": dict(self.statuses),
            "driver_cpu_cores": round(self.cpu_cores, 2),
        }


BOUNDARY = "polyfuse-benchmark-boundary"


def form(inputs: Inputs) -> dict[str, Any]:
    """The body and headers of a multipart request: one file part per file
    modality, a text field for text. The body is encoded here, once, so a load loop can
    reuse it: building aiohttp's FormData for every request took about 0.5 ms of the
    client's CPU, which at concurrency 1 is part of every request's latency."""
    parts = []
    for name, value in inputs.items():
        if isinstance(value, bytes):
            filename, mime = _MIME.get(name, ("x.bin", "application/octet-stream"))
            head = (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: {mime}\r\n\r\n'
            )
            parts.append(head.encode() + value + b"\r\n")
        else:
            head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            parts.append(head.encode() + value.encode("utf-8") + b"\r\n")
    body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
    return {
        "data": body,
        "headers": {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    }


Request = tuple[str, dict[str, Any]]  # path, {data, headers} or {json}


class _Http1(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of the load client: writes a request's bytes,
    reads the answer's status line, headers and ``Content-Length`` body. Small on
    purpose: the client shares the machine's cores with the server it measures, and
    this costs about half of aiohttp's client CPU per request (docs/benchmarks.md)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:  # chunked or unframed: the benchmark servers never answer so
            self.waiter.set_exception(ConnectionError("answer without Content-Length"))
            return
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop >= 0 else None])
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        self.waiter.set_result((int(head[9:12]), body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection closed: {exc!r}"))

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


def _raw_request(host: str, path: str, kwargs: dict[str, Any]) -> bytes:
    """The bytes of ``POST path`` with ``kwargs``: ``data`` (bytes) and ``headers``, or
    ``json`` (an object sent as ``application/json``)."""
    headers = dict(kwargs.get("headers", {}))
    if "json" in kwargs:
        body = json.dumps(kwargs["json"]).encode()
        headers["Content-Type"] = "application/json"
    else:
        body = kwargs["data"]
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode("latin-1") + b"\r\n" + body


async def closed_loop(
    url: str,
    next_request: Callable[[int], Request],
    concurrency: int,
    seconds: float,
    *,
    on_status: Callable[[int, int, str], None] | None = None,
) -> Result:
    """``concurrency`` workers, each on its own keep-alive connection, sending its next
    request as soon as the last one is answered, until ``seconds`` have passed.
    ``next_request(i)`` builds request ``i``; ``on_status(i, status, body)`` sees each
    answer (status 0: no answer)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    result = Result(concurrency, 0.0)
    counter = 0

    async def connect() -> _Http1:
        _, conn = await loop.create_connection(_Http1, host, port)
        return conn

    async def worker(end: float) -> None:
        nonlocal counter
        conn = await connect()
        while time.perf_counter() < end:
            i = counter
            counter += 1
            path, kwargs = next_request(i)
            raw = _raw_request(f"{host}:{port}", path, kwargs)
            t = time.perf_counter()
            try:
                if conn.closed:
                    conn = await connect()
                async with asyncio.timeout(120):
                    status, body = await conn.send(raw)
            except (OSError, TimeoutError) as exc:
                status, body = 0, repr(exc).encode()
                if conn.transport is not None:
                    conn.transport.close()
                conn.closed = True
            result.latencies_ms.append(1000 * (time.perf_counter() - t))
            result.statuses[f"{status // 100}xx" if status else "conn_error"] += 1
            if on_status is not None:
                on_status(i, status, body[:300].decode("utf-8", "replace"))
        if conn.transport is not None:
            conn.transport.close()

    return await _drive(result, worker, concurrency, seconds)


async def _drive(
    result: Result, worker: Callable[[float], Awaitable[None]], concurrency: int, seconds: float
) -> Result:
    """Run ``concurrency`` copies of ``worker(end)`` until ``seconds`` have passed; fill in
    the wall and CPU time of ``result``."""
    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(start + seconds) for _ in range(concurrency)))
    result.wall_s = time.perf_counter() - start
    result.cpu_s = time.process_time() - cpu
    return result


async def in_process_loop(
    runtime: Any, inputs: Sequence[Inputs], concurrency: int, seconds: float
) -> Result:
    """`closed_loop` without HTTP: ``runtime.predict`` called in this process."""
    from polyfuse.serve.types import ServeRequest

    result = Result(concurrency, 0.0)
    counter = 0

    async def worker(end: float) -> None:
        nonlocal counter
        while time.perf_counter() < end:
            i = counter
            counter += 1
            t = time.perf_counter()
            await runtime.predict(ServeRequest(inputs[i % len(inputs)], f"r{i}"))
            result.latencies_ms.append(1000 * (time.perf_counter() - t))
            result.statuses["2xx"] += 1

    return await _drive(result, worker, concurrency, seconds)


def tree_rss_mb(pid: int) -> tuple[float, float]:
    """Resident memory (MB) of process ``pid`` alone and with its children."""
    import psutil

    proc = psutil.Process(pid)
    own = proc.memory_info().rss
    total = own
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return own / 2**20, total / 2**20


def _serve_main() -> None:
    """Child process: serve ``--target`` with ``--options`` on 127.0.0.1:``--port``."""
    parser = argparse.ArgumentParser(description="serve one runtime variant (benchmarks)")
    parser.add_argument("--target", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--options", default="{}", help="RuntimeConfig options as JSON")
    args = parser.parse_args()
    from polyfuse.serve.config import ServeConfig
    from polyfuse.serve.http.app import create_app
    from polyfuse.serve.http.server import run

    runtime = make_runtime(args.target, json.loads(args.options))
    app = create_app(runtime, ServeConfig(port=args.port))
    run(app, "127.0.0.1", args.port, log_level="warning")  # as `polyfuse serve` runs it


if __name__ == "__main__":
    _serve_main()
