"""HTTP serving load test: naive vs dynamic batching vs batching + cache, the same model on
Ray Serve and LitServe, over loopback from a second process, in closed and open loop, and the
HTTP overhead against the same runtime in process.

Three real servers (uvicorn + `create_app` + `ModelRuntime`, see `serve_common.py`), one
per variant, start side by side in their own processes on free loopback ports; this
process drives them with ``concurrency`` closed-loop keep-alive clients (multipart uploads
to ``/v1/predict``), ``--seconds`` per run:

- ``naive``: one encoder forward and one fusion forward per request (max_batch 1), no
  cache, distinct inputs;
- ``batched``: batch sizes measured at start-up and tuned online (``auto``), fusion
  batched, no cache, distinct inputs;
- ``cached``: ``auto`` + memory cache, requests cycling over 8 distinct inputs;
- ``polyfuse-onnx``: ``batched`` serving an ONNX export of the artifact (ONNX Runtime runs
  the encoders, the fusion and the heads): ``--onnx-artifact``, default ``onnx/`` beside
  the artifact, exported (fp32) on first use;
- ``ray-serve`` and ``litserve``: the same artifact through polyfuse's `Predictor` in a Ray
  Serve deployment (``@serve.batch``, behind Serve's HTTP proxy) and in a LitServe `LitAPI`
  (its batching), each configured as its documentation recommends for CPU
  (``benchmarks/peers/serving*.py``; install with ``bash benchmarks/peers/setup.sh serving``;
  a peer that is not installed is skipped with a message).

``--variants`` picks some of them (default: all). All servers start first; each answers the
same ``--check`` inputs before any timing, and a label that differs from ``batched``'s
(polyfuse's) is reported as a MISMATCH. Each server's idle CPU is measured over
``--idle-seconds`` and printed; then every server but the one being driven is paused
(SIGSTOP of its process tree, ``--no-pause-idle`` to keep them running), so an idle loop
cannot take CPU from the measured one.

Closed loop: each concurrency level runs ``--repeats`` rounds; a round drives every variant in
turn (the order rotates between rounds), so slow drift of a noisy machine hits every variant
alike. Throughput is the median over rounds, latency percentiles pool the rounds' requests;
ratios are to ``batched`` (polyfuse). Open loop (``--open-loop RATE[,RATE...]``): requests
sent at ``RATE`` req/s on a Poisson (``--arrivals poisson``) or fixed schedule whatever the
answers, the same schedule for every variant of a round, latency counted from each
request's scheduled time so queueing shows in p99; prints the achieved rate (answered 2xx per
second), p50/p99, errors and timeouts (``--open-timeout``).

Overhead: the ``batched`` server's best median throughput (saturation) against the same
runtime (same options) called in this process with ``runtime.predict`` at the same
concurrencies, also in ``--repeats`` rounds, after the servers are stopped.

Default target: the demo AV-digits artifact (``--artifact demo-output/model``, inputs from
``demo-output/data/test.jsonl``); ``--model minilm`` serves a random-weight MiniLM text
model built like `serve_batching.py` (the peers serve artifact folders only). Run:
``.venv/bin/python benchmarks/serve_load.py`` (about 10 minutes on 2 CPU cores);
``--json`` prints the results as JSON at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from serve_common import (  # noqa: E402
    MODELS,
    Inputs,
    OpenResult,
    Request,
    Result,
    Server,
    closed_loop,
    form,
    idle_cpu_cores,
    in_process_loop,
    load_inputs,
    make_runtime,
    manifest_inputs,
    open_loop,
    variant_options,
)

sys.path.insert(0, str(HERE / "peers"))
from serving import missing  # noqa: E402

VARIANTS = ("naive", "batched", "cached")  # polyfuse's own, the first table
PEERS = ("ray-serve", "litserve")
#: ``naive-pool``: the naive server as issue 18 measured it (2026-12-01): nothing batched and
#: every input preprocessed by its own process-pool call (the default before ``preprocess``
#: became ``auto``), beside ``naive`` (nothing batched, preprocessing where ``auto`` puts it)
ALL_VARIANTS = (*VARIANTS, "naive-pool", "polyfuse-onnx", *PEERS)
REFERENCE = "batched"  # "polyfuse" of the ratios


class PeerServer(Server):
    """A serving peer (``benchmarks/peers/serving.py``) in its own process tree."""

    def __init__(self, peer: str, artifact: str, settings: dict[str, Any]):
        super().__init__(artifact, {})
        self.peer, self.settings = peer, settings
        # LitServe's health route answers once its workers are set up; the Ray Serve peer
        # answers GET on its route once the deployment runs
        self.ready_path = "/health" if peer == "litserve" else "/v1/predict"

    def command(self) -> list[str]:
        cmd = [sys.executable, str(HERE / "peers" / "serving.py"), "--peer", self.peer]
        cmd += ["--artifact", self.target, "--port", str(self.port)]
        for key, value in self.settings.items():
            cmd += [f"--{key.replace('_', '-')}", str(value)]
        return cmd


def onnx_folder(args: argparse.Namespace) -> str | None:
    """The exported folder ``polyfuse-onnx`` serves: ``--onnx-artifact``, else an ONNX
    export of the artifact made now (``polyfuse export``, fp32) next to it, reused when
    it is there; None for ``--model`` (random-weight models have no folder)."""
    if args.onnx_artifact:
        return str(args.onnx_artifact)
    if args.model:
        return None
    out = Path(args.artifact).resolve().parent / "onnx"
    if not (out / "artifact.json").is_file():
        from polyfuse.export import export_onnx

        export_onnx(args.artifact, out)
    return str(out)


def start_server(
    stack: contextlib.ExitStack, variant: str, args: argparse.Namespace
) -> Server | None:
    """Start ``variant``'s server (waiting until it is ready), or say why it is skipped."""
    target = args.model or args.artifact
    if variant in VARIANTS:
        return stack.enter_context(Server(target, variant_options(variant)))
    if variant == "naive-pool":
        options = variant_options("naive", preprocess="process")
        return stack.enter_context(Server(target, options))
    if variant == "polyfuse-onnx":
        folder = onnx_folder(args)
        if folder is None:
            print("polyfuse-onnx: skipped: --model has no artifact folder to export")
            return None
        # an exported folder is served by ONNX Runtime (`polyfuse serve --engine auto`)
        return stack.enter_context(Server(folder, variant_options("batched")))
    reason = missing(variant)
    if reason is None and args.model:
        reason = f"{variant}: skipped: the peers serve an artifact folder, not --model"
    if reason:
        print(reason)
        return None
    settings = {"max_batch": args.peer_max_batch, "wait_ms": args.peer_wait_ms}
    return stack.enter_context(
        PeerServer(variant, target, settings | {"workers": args.peer_workers})
    )


@contextlib.contextmanager
def running(server: Server, pause: bool) -> Iterator[Server]:
    """``server`` continued for the block and paused again after it (when ``pause``). A
    continued server gets half a second to catch up on timers that fell due while it was
    stopped (Ray's control loops) before it is driven."""
    if pause:
        server.resume()
        time.sleep(0.5)
    try:
        yield server
    finally:
        if pause:
            server.pause()


def rotated(names: list[str], k: int) -> list[str]:
    """``names`` rotated by ``k`` (round ``k``'s order)."""
    k %= len(names)
    return names[k:] + names[:k]


def _line(label: str, runs: list[Result]) -> str:
    r = pooled(runs)
    bad = sum(v for k, v in r.statuses.items() if k != "2xx")
    rates = "/".join(f"{x.rps:.0f}" for x in runs)
    return (
        f"{label:<14}c={r.concurrency:<4}{median_rps(runs):8.1f} req/s (runs {rates})  "
        f"p50 {r.pct(50):7.1f}  p95 {r.pct(95):7.1f}  p99 {r.pct(99):7.1f} ms  "
        f"({len(r.latencies_ms)} requests, this process {r.cpu_cores:.2f} cores"
        + (f", {bad} not 2xx: {dict(r.statuses)})" if bad else ")")
    )


def _open_line(label: str, runs: list[OpenResult]) -> str:
    r = pooled_open(runs)
    return (
        f"{label:<14}rate={r.rate:<6g}achieved {median_achieved(runs):8.1f} req/s  "
        f"p50 {r.pct(50):8.1f}  p99 {r.pct(99):8.1f} ms  ({r.scheduled} scheduled, "
        f"{errors(r)} errors, {r.statuses['timeout']} timeouts, client lag max "
        f"{r.max_lag_ms:.0f} ms, {r.max_in_flight} in flight max)"
    )


def median_rps(runs: list[Result]) -> float:
    """Median throughput of repeated runs."""
    return statistics.median(r.rps for r in runs)


def median_achieved(runs: list[OpenResult]) -> float:
    """Median achieved rate (2xx answers per second) of repeated open-loop runs."""
    return statistics.median(r.achieved_rps for r in runs)


def errors(r: Result) -> int:
    """Requests answered, or failed, other than 2xx and not timed out."""
    return sum(n for k, n in r.statuses.items() if k not in ("2xx", "timeout"))


def pooled(runs: list[Result]) -> Result:
    """One `Result` holding every run's requests (for latency percentiles)."""
    out = Result(runs[0].concurrency, sum(r.wall_s for r in runs))
    for r in runs:
        out.latencies_ms += r.latencies_ms
        out.statuses.update(r.statuses)
        out.cpu_s += r.cpu_s
    return out


def pooled_open(runs: list[OpenResult]) -> OpenResult:
    """One `OpenResult` holding every open-loop run's requests."""
    first = runs[0]
    out = OpenResult(0, sum(r.wall_s for r in runs), rate=first.rate, arrivals=first.arrivals)
    for r in runs:
        out.latencies_ms += r.latencies_ms
        out.statuses.update(r.statuses)
        out.cpu_s += r.cpu_s
        out.scheduled += r.scheduled
        out.max_lag_ms = max(out.max_lag_ms, r.max_lag_ms)
        out.max_in_flight = max(out.max_in_flight, r.max_in_flight)
    return out


def predicted_label(url: str, request: Request) -> str:
    """The label a server answers for one request (JSON-encoded), or why there is none."""
    import urllib.error
    import urllib.request

    path, kwargs = request
    req = urllib.request.Request(url + path, data=kwargs["data"], headers=kwargs["headers"])
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.dumps(json.loads(r.read())["prediction"]["label"])
    except urllib.error.HTTPError as exc:
        return f"<HTTP {exc.code}: {exc.read()[:200]!r}>"
    except (OSError, KeyError, ValueError) as exc:
        return f"<{exc!r}>"


def check_labels(servers: dict[str, Server], inputs: list[Inputs], pause: bool) -> int:
    """Every server's label for each of ``inputs`` against ``batched``'s (the first
    server's without it); prints each mismatch loudly. Returns how many there were."""
    labels = {}
    for v, server in servers.items():
        with running(server, pause):
            labels[v] = [predicted_label(server.url, ("/v1/predict", form(x))) for x in inputs]
    ref = REFERENCE if REFERENCE in labels else next(iter(labels))
    count = 0
    for v, got in labels.items():
        bad = [i for i, (a, b) in enumerate(zip(got, labels[ref], strict=True)) if a != b]
        count += len(bad)
        for i in bad:
            print(
                f"!!! LABEL MISMATCH: {v} answered {got[i]} where {ref} answered "
                f"{labels[ref][i]} (input {i})",
                flush=True,
            )
    print(f"label check: {len(inputs)} inputs x {len(labels)} servers, {count} mismatches")
    return count


def start_servers(
    stack: contextlib.ExitStack, args: argparse.Namespace, variants: list[str]
) -> dict[str, Server]:
    """Start the servers one at a time (polyfuse's start-up measures batch sizes, so it needs
    the cores to itself), pausing each once ready when ``--pause-idle``."""
    servers: dict[str, Server] = {}
    for v in variants:
        server = start_server(stack, v, args)
        if server is not None:
            servers[v] = server
            if args.pause_idle:
                server.pause()
    if not servers:
        raise SystemExit("no server to drive")
    return servers


def measure_idle(servers: dict[str, Server], seconds: float, pause: bool) -> dict[str, float]:
    """Every server's idle CPU (cores), all running and none driven, in one window."""
    for server in servers.values():
        server.resume()
    time.sleep(1.0)
    idle = idle_cpu_cores({v: s.pid for v, s in servers.items()}, seconds)
    shares = ", ".join(f"{v} {c:.3f}" for v, c in idle.items())
    print(f"idle CPU (cores, one window of {seconds:g} s): {shares}", flush=True)
    if pause:
        for server in servers.values():
            server.pause()
    return idle


def drive(
    servers: dict[str, Server],
    requester: Callable[[str], Callable[[int], Request]],
    args: argparse.Namespace,
) -> tuple[dict[str, dict[int, list[Result]]], dict[str, dict[float, list[OpenResult]]]]:
    """The closed-loop levels, then the open-loop rates, each in ``--repeats`` interleaved
    rounds; variant -> level (or rate) -> runs."""
    names = list(servers)

    def one(v: str, load: Callable[..., Any]) -> Any:
        with running(servers[v], args.pause_idle):
            return asyncio.run(load(servers[v].url, requester(v)))

    for v in names:  # warm-up
        one(v, functools.partial(closed_loop, concurrency=4, seconds=2.0))
    closed: dict[str, dict[int, list[Result]]] = {v: {} for v in names}
    for c in args.concurrency:
        load = functools.partial(closed_loop, concurrency=c, seconds=args.seconds)
        for k in range(args.repeats):
            for v in rotated(names, k):
                closed[v].setdefault(c, []).append(one(v, load))
        for v in names:
            print(_line(v, closed[v][c]), flush=True)
    opened: dict[str, dict[float, list[OpenResult]]] = {v: {} for v in names}
    for rate in args.open_loop:
        for k in range(args.repeats):
            load = functools.partial(
                open_loop,
                rate=rate,
                seconds=args.seconds,
                arrivals=args.arrivals,
                seed=k,  # the same schedule for every variant of a round
                timeout=args.open_timeout,
            )
            for v in rotated(names, k):
                opened[v].setdefault(rate, []).append(one(v, load))
        for v in names:
            print(_open_line(v, opened[v][rate]), flush=True)
    return closed, opened


def run_servers(
    args: argparse.Namespace, inputs: list[Inputs], variants: list[str]
) -> dict[str, Any]:
    """Start one server per variant, check their answers, measure them idle, then drive
    them (`drive`).

    Returns ``{"closed": variant -> level -> runs, "open": variant -> rate -> runs,
    "caps": variant -> modality -> batch-size cap, "idle": variant -> cores,
    "mismatches": int, "variants": the variants that ran}``."""

    def requester(variant: str) -> Callable[[int], Request]:
        bodies = [form(x) for x in (inputs[:8] if variant == "cached" else inputs)]
        return lambda i: ("/v1/predict", bodies[i % len(bodies)])

    with contextlib.ExitStack() as stack:
        servers = start_servers(stack, args, variants)
        idle = measure_idle(servers, args.idle_seconds, args.pause_idle)
        mismatches = check_labels(servers, inputs[: args.check], args.pause_idle)
        closed, opened = drive(servers, requester, args)
        modalities = list(inputs[0])
        caps = {}
        for v, server in servers.items():
            if not isinstance(server, PeerServer):
                with running(server, args.pause_idle):
                    caps[v] = server.batch_sizes(modalities)
    return {
        "closed": closed,
        "open": opened,
        "caps": caps,
        "idle": idle,
        "mismatches": mismatches,
        "variants": list(servers),
    }


def run_raw(
    target: str, inputs: list[Inputs], levels: list[int], seconds: float, repeats: int
) -> dict[int, list[Result]]:
    """The ``batched`` runtime in this process (no HTTP), same options as the server,
    heap frozen out of the garbage collector as the server's app does."""
    import gc

    from polyfuse.serve.http.app import freeze_heap

    runtime = make_runtime(target, variant_options("batched"))
    freeze_heap()

    async def go() -> dict[int, list[Result]]:
        await in_process_loop(runtime, inputs, 4, 2.0)  # warm-up
        out: dict[int, list[Result]] = {}
        for c in levels:
            out[c] = [await in_process_loop(runtime, inputs, c, seconds) for _ in range(repeats)]
            print(_line("raw", out[c]), flush=True)
        await runtime.close()
        gc.unfreeze()
        return out

    return asyncio.run(go())


def print_polyfuse_tables(
    rps: dict[str, dict[int, float]], pct: dict[str, dict[int, Result]], levels: list[int]
) -> dict[str, Any] | None:
    """The naive / batched / cached table and the server / raw overhead rows (as before the
    peers); returns the saturation figures, or None without the variants they need."""
    if all(v in rps for v in VARIANTS):
        print(
            "| concurrency | naive req/s | batched req/s (x naive) | cached req/s (x naive) "
            "| p50 / p95 / p99 ms naive | batched | cached |"
        )
        print("|---|---|---|---|---|---|---|")
        for c in levels:
            n, b, k = rps["naive"][c], rps["batched"][c], rps["cached"][c]
            pcts = [
                f"{r.pct(50):.0f} / {r.pct(95):.0f} / {r.pct(99):.0f}"
                for r in (pct[v][c] for v in VARIANTS)
            ]
            print(
                f"| {c} | {n:.1f} | {b:.1f} ({b / n:.2f}x) | {k:.1f} ({k / n:.2f}x) "
                f"| {' | '.join(pcts)} |"
            )
        if "naive-pool" in rps:
            print(
                "batched x naive-pool (nothing batched, one pool call per input): "
                + ", ".join(
                    f"c={c} {rps['batched'][c] / rps['naive-pool'][c]:.2f}x "
                    f"(p99 {pct['batched'][c].pct(99):.0f} vs "
                    f"{pct['naive-pool'][c].pct(99):.0f} ms)"
                    for c in levels
                )
            )
        slower = [c for c in levels if rps["batched"][c] < rps["naive"][c]]
        print(
            "batched below naive at concurrency " + ", ".join(map(str, slower))
            if slower
            else "batched is at least naive's median throughput at every concurrency"
        )
    if "batched" not in rps or "raw" not in rps:
        return None
    print("\n| concurrency | batched server req/s | raw in-process req/s | server / raw |")
    print("|---|---|---|---|")
    for c in levels:
        print(
            f"| {c} | {rps['batched'][c]:.1f} | {rps['raw'][c]:.1f} | "
            f"{rps['batched'][c] / rps['raw'][c]:.0%} |"
        )
    server_c = max(levels, key=lambda c: rps["batched"][c])
    raw_c = max(levels, key=lambda c: rps["raw"][c])
    ratio = rps["batched"][server_c] / rps["raw"][raw_c]
    print(
        f"\noverhead at saturation: server {rps['batched'][server_c]:.1f} req/s "
        f"(c={server_c}) vs raw in-process {rps['raw'][raw_c]:.1f} req/s "
        f"(c={raw_c}): {ratio:.0%} ({'meets' if ratio >= 0.9 else 'BELOW'} the 90% target)"
    )
    return {
        "server_rps": round(rps["batched"][server_c], 2),
        "server_concurrency": server_c,
        "raw_rps": round(rps["raw"][raw_c], 2),
        "raw_concurrency": raw_c,
        "ratio": round(ratio, 4),
    }


def print_side_by_side(
    rps: dict[str, dict[int, float]],
    pct: dict[str, dict[int, Result]],
    names: list[str],
    levels: list[int],
) -> None:
    """Every server at every level, with throughput and p50/p99 ratios to polyfuse."""
    ref = REFERENCE if REFERENCE in names else None
    print(
        "\n| concurrency | server | req/s | x polyfuse | p50 ms | p99 ms | p99 x polyfuse "
        "| not 2xx |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for c in levels:
        for v in names:
            r, x = pct[v][c], rps[v][c]
            ratio = f"{x / rps[ref][c]:.2f}x" if ref else "-"
            p99 = f"{r.pct(99) / pct[ref][c].pct(99):.2f}x" if ref else "-"
            bad = sum(n for k, n in r.statuses.items() if k != "2xx")
            label = "polyfuse (batched)" if v == REFERENCE else v
            print(
                f"| {c} | {label} | {x:.1f} | {ratio} | {r.pct(50):.1f} | {r.pct(99):.1f} "
                f"| {p99} | {bad} |"
            )


def print_open_loop(
    opened: dict[str, dict[float, list[OpenResult]]],
    names: list[str],
    rates: list[float],
    arrivals: str,
    seconds: float,
) -> None:
    """The open-loop table: offered, sent (the schedule's realized rate; Poisson arrivals
    vary) and achieved rate, p50/p99, errors and timeouts."""
    print(f"\nopen loop ({arrivals} arrivals; latency from each request's scheduled time)\n")
    print(
        "| offered req/s | server | sent req/s | achieved req/s | p50 ms | p99 ms "
        "| p99 x polyfuse | errors | timeouts | client lag max ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for rate in rates:
        ref = pooled_open(opened[REFERENCE][rate]) if REFERENCE in names else None
        for v in names:
            r = pooled_open(opened[v][rate])
            p99 = f"{r.pct(99) / ref.pct(99):.2f}x" if ref else "-"
            label = "polyfuse (batched)" if v == REFERENCE else v
            print(
                f"| {rate:g} | {label} | {r.scheduled / seconds:.1f} "
                f"| {median_achieved(opened[v][rate]):.1f} | "
                f"{r.pct(50):.1f} | {r.pct(99):.1f} | {p99} | {errors(r)} "
                f"| {r.statuses['timeout']} | {r.max_lag_ms:.0f} |"
            )


def rates(text: str) -> list[float]:
    """``--open-loop`` value: comma-separated positive rates."""
    out = [float(x) for x in text.split(",") if x.strip()]
    if not out or min(out) <= 0:
        raise argparse.ArgumentTypeError("expected RATE[,RATE...], each > 0 req/s")
    return out


def variant_list(text: str) -> list[str]:
    """``--variants`` value: comma-separated names of `ALL_VARIANTS`."""
    out = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in out if x not in ALL_VARIANTS]
    if unknown or not out:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {','.join(ALL_VARIANTS)}")
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--artifact", default="demo-output/model", help="artifact folder")
    what.add_argument("--model", choices=MODELS, help="serve a random-weight model instead")
    parser.add_argument(
        "--manifest", type=Path, help="inputs (default: ARTIFACT/../data/test.jsonl)"
    )
    parser.add_argument(
        "--variants",
        type=variant_list,
        default=list(ALL_VARIANTS),
        help=f"comma-separated servers to run (default: {','.join(ALL_VARIANTS)})",
    )
    parser.add_argument(
        "--concurrency",
        nargs="*",
        type=int,
        default=[1, 4, 16, 64],
        help="closed-loop levels (none: open loop only)",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="load per run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds per level")
    parser.add_argument("--inputs", type=int, default=512, help="distinct inputs to cycle over")
    parser.add_argument(
        "--open-loop",
        type=rates,
        default=[],
        metavar="RATE[,RATE...]",
        help="also drive open loop at these offered rates (req/s)",
    )
    parser.add_argument("--arrivals", choices=("poisson", "fixed"), default="poisson")
    parser.add_argument(
        "--open-timeout", type=float, default=30.0, help="open-loop request timeout (s)"
    )
    parser.add_argument("--check", type=int, default=8, help="inputs whose labels are compared")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="idle CPU window")
    parser.add_argument(
        "--pause-idle",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="SIGSTOP every server but the one being driven (default on)",
    )
    parser.add_argument("--peer-max-batch", type=int, default=32, help="peers' batch size")
    parser.add_argument(
        "--peer-wait-ms", type=float, default=5.0, help="peers' batch wait after the first"
    )
    parser.add_argument(
        "--peer-workers", type=int, default=2, help="peers' model replicas (1 core each)"
    )
    parser.add_argument("--onnx-artifact", help="folder polyfuse-onnx serves (default: artifact)")
    parser.add_argument("--json", action="store_true", help="print results as JSON at the end")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    target = args.model or args.artifact
    inputs = (
        manifest_inputs(args.manifest, args.inputs)
        if args.manifest
        else load_inputs(target, args.inputs)
    )
    start = time.perf_counter()
    levels = args.concurrency
    out = run_servers(args, inputs, args.variants)
    closed, names = out["closed"], out["variants"]
    if levels and "batched" in names:
        closed["raw"] = run_raw(target, inputs, levels, args.seconds, args.repeats)
    rps = {v: {c: median_rps(rs) for c, rs in by.items()} for v, by in closed.items()}
    pct = {v: {c: pooled(rs) for c, rs in by.items()} for v, by in closed.items()}

    print(
        f"\ntarget {target}, {args.repeats} x {args.seconds:g} s per level and variant, "
        f"batch-size caps at the end {out['caps'].get('batched')}\n"
    )
    saturation = print_polyfuse_tables(rps, pct, levels) if levels else None
    if levels:
        print_side_by_side(rps, pct, names, levels)
    if args.open_loop:
        seconds = args.seconds * args.repeats
        print_open_loop(out["open"], names, args.open_loop, args.arrivals, seconds)
    print("\nidle CPU (cores): " + ", ".join(f"{v} {c:.3f}" for v, c in out["idle"].items()))
    print(f"label mismatches against polyfuse: {out['mismatches']}")
    failed = sum(
        n
        for kind in (closed, out["open"])
        for by in kind.values()
        for rs in by.values()
        for r in rs
        for k, n in r.statuses.items()
        if k != "2xx"
    )
    print(f"requests not answered 2xx: {failed}")
    print(f"{time.perf_counter() - start:.0f} s in all")
    if args.json:
        result: dict[str, Any] = {
            "target": target,
            "seconds_per_run": args.seconds,
            "repeats": args.repeats,
            "batch_size_caps": out["caps"],
            "idle_cpu_cores": {v: round(c, 4) for v, c in out["idle"].items()},
            "label_mismatches": out["mismatches"],
            "peer_settings": {
                "max_batch": args.peer_max_batch,
                "wait_ms": args.peer_wait_ms,
                "workers": args.peer_workers,
            },
            "variants": {
                v: {
                    str(c): {**pooled(rs).summary(), "median_rps": round(median_rps(rs), 2)}
                    for c, rs in by.items()
                }
                for v, by in closed.items()
            },
            "open_loop": {
                v: {
                    f"{rate:g}": {
                        **pooled_open(rs).summary(),
                        "median_achieved_rps": round(median_achieved(rs), 2),
                    }
                    for rate, rs in by.items()
                }
                for v, by in out["open"].items()
            },
            "saturation": saturation,
        }
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
