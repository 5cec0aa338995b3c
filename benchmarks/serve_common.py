"""Shared pieces of the HTTP serving benchmarks (`serve_load.py`, `serve_soak.py`).

- runtime variants (naive / batched / cached) with the options of `serve_batching.py`;
- a server in its own process (``uvicorn`` + `create_app` + `ModelRuntime`) on a free
  loopback port: run this file with ``--port`` to start one, `Server` does it for you;
- request inputs: the test manifest of an artifact, or `serve_batching.make_inputs`;
- a closed-loop HTTP/1.1 client (``concurrency`` keep-alive connections until a deadline)
  and an open-loop one (requests sent on a fixed or Poisson schedule whatever the answers,
  latency counted from each request's scheduled time);
- percentiles, the resident memory and idle CPU of a process tree, and pausing a server's
  process tree while another one is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
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

    ready_path = "/readyz"  # answers 200 once the model is loaded

    def __init__(self, target: str, options: dict[str, Any], *, ready_timeout: float = 300):
        self.target, self.options, self.ready_timeout = target, options, ready_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The child process's command line."""
        cmd = [sys.executable, str(HERE / "serve_common.py"), "--target", self.target]
        return [*cmd, "--port", str(self.port), "--options", json.dumps(self.options)]

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(self.command())
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with status {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as r:
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
        self.resume()  # a stopped process would hold SIGTERM until continued
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

    def pause(self) -> None:
        """Stop (SIGSTOP) the server's whole process tree: a server idling between its
        turns takes no CPU from the one being measured, whatever its idle loop does."""
        for proc in _tree(self.pid):
            with contextlib.suppress(Exception):
                proc.suspend()

    def resume(self) -> None:
        """Continue (SIGCONT) the process tree `pause` stopped."""
        for proc in _tree(self.pid):
            with contextlib.suppress(Exception):
                proc.resume()

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


@dataclass
class OpenResult(Result):
    """Requests of one open-loop run: ``rate`` req/s offered on a schedule set in advance.

    ``latencies_ms`` count from each request's scheduled send time, so time spent queued in
    the client (no free connection) or the server shows; a request not answered within the
    timeout counts its timeout (status ``timeout``). ``wall_s`` runs from the first
    scheduled send to the last answer, so a server slower than the offered rate shows an
    achieved rate below it."""

    rate: float = 0.0
    arrivals: str = "poisson"
    scheduled: int = 0
    max_lag_ms: float = 0.0  # latest a send started after its time (the client keeping up)
    max_in_flight: int = 0

    @property
    def achieved_rps(self) -> float:
        """Requests answered 2xx per second."""
        return self.statuses["2xx"] / self.wall_s if self.wall_s else 0.0

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        del out["concurrency"]
        return {
            "offered_rps": self.rate,
            "arrivals": self.arrivals,
            "scheduled": self.scheduled,
            "achieved_rps": round(self.achieved_rps, 2),
            **out,
            "max_lag_ms": round(self.max_lag_ms, 2),
            "max_in_flight": self.max_in_flight,
        }


def arrival_times(rate: float, seconds: float, arrivals: str, seed: int) -> list[float]:
    """Send times (s after the start) of an open-loop run: ``poisson`` (exponential gaps
    of mean 1/rate, from ``seed``) or ``fixed`` (every 1/rate s)."""
    if arrivals == "fixed":
        return [k / rate for k in range(1, int(seconds * rate) + 1) if k / rate < seconds]
    rng = random.Random(seed)
    out, t = [], 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= seconds:
            return out
        out.append(t)


async def open_loop(
    url: str,
    next_request: Callable[[int], Request],
    rate: float,
    seconds: float,
    *,
    arrivals: str = "poisson",
    seed: int = 0,
    timeout: float = 30.0,
    max_connections: int = 1024,
) -> OpenResult:
    """Send request ``i`` at its scheduled time (`arrival_times`) whether or not earlier
    ones were answered, each on an idle keep-alive connection or a new one (at most
    ``max_connections`` open; past that a request waits, and its wait counts in its
    latency). Waits for every answer (or its ``timeout``, counted from the scheduled time)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    times = arrival_times(rate, seconds, arrivals, seed)
    result = OpenResult(0, 0.0, rate=rate, arrivals=arrivals, scheduled=len(times))
    pool = _Pool(host, port, max_connections)
    in_flight = 0

    async def one(i: int, at: float) -> None:
        nonlocal in_flight
        path, kwargs = next_request(i)
        raw = _raw_request(f"{host}:{port}", path, kwargs)
        in_flight += 1
        result.max_in_flight = max(result.max_in_flight, in_flight)
        try:
            async with asyncio.timeout_at(at + timeout):
                code = await pool.send(raw)
            status = f"{code // 100}xx"
        except TimeoutError:
            status = "timeout"
        except OSError:
            status = "conn_error"
        in_flight -= 1
        result.latencies_ms.append(1000 * (loop.time() - at))
        result.statuses[status] += 1

    start, cpu = loop.time(), time.process_time()
    tasks = []
    for i, offset in enumerate(times):
        at = start + offset
        if at > loop.time():
            await asyncio.sleep(at - loop.time())
        result.max_lag_ms = max(result.max_lag_ms, 1000 * (loop.time() - at))
        tasks.append(asyncio.create_task(one(i, at)))
    await asyncio.gather(*tasks)
    result.wall_s = max(loop.time() - start, seconds)
    result.cpu_s = time.process_time() - cpu
    pool.close()
    return result


class _Pool:
    """Keep-alive connections of the open-loop client: a request takes an idle one or opens
    one (at most ``size`` open; past that it waits for a free one) and gives it back once
    answered; a connection whose request failed or was cancelled (timed out) is closed."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port = host, port
        self.idle: list[_Http1] = []
        self.slots = asyncio.Semaphore(size)

    async def send(self, raw: bytes) -> int:
        """Send one request's bytes; the answer's status code."""
        async with self.slots:
            conn = None
            while self.idle and conn is None:
                conn = self.idle.pop()
                conn = None if conn.closed else conn
            if conn is None:
                loop = asyncio.get_running_loop()
                _, conn = await loop.create_connection(_Http1, self.host, self.port)
            try:
                code, _ = await conn.send(raw)
            except BaseException:
                if conn.transport is not None:
                    conn.transport.close()
                raise
            self.idle.append(conn)
            return code

    def close(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()


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


def _tree(pid: int) -> list[Any]:
    """``psutil`` processes of ``pid`` and all its descendants (none once it has exited)."""
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def idle_cpu_cores(pids: dict[str, int], seconds: float = 5.0) -> dict[str, float]:
    """CPU cores each process tree (name -> root pid) used over one ``seconds`` window in
    which nobody sends it requests: what an idle server takes from its neighbours."""

    def cpu(procs: list[Any]) -> float:
        total = 0.0
        for proc in procs:
            with contextlib.suppress(Exception):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    trees = {name: _tree(pid) for name, pid in pids.items()}
    before = {name: cpu(procs) for name, procs in trees.items()}
    time.sleep(seconds)
    # a process that exited in the window counts 0 for its share
    return {name: max(0.0, cpu(p) - before[name]) / seconds for name, p in trees.items()}


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
