"""HTTP serving load test: naive vs dynamic batching vs batching + cache, over loopback
from a second process, and the HTTP overhead against the same runtime in process.

Three real servers (uvicorn + `create_app` + `ModelRuntime`, see `serve_common.py`), one
per variant, start side by side in their own processes on free loopback ports; this
process drives them with ``concurrency`` closed-loop keep-alive clients (multipart uploads
to ``/v1/predict``), ``--seconds`` per run:

- ``naive``: one encoder forward and one fusion forward per request (max_batch 1), no
  cache, distinct inputs;
- ``batched``: batch sizes measured at start-up and tuned online (``auto``), fusion
  batched, no cache, distinct inputs;
- ``cached``: ``auto`` + memory cache, requests cycling over 8 distinct inputs.

Each concurrency level runs ``--repeats`` rounds; a round drives every variant in turn
(the order rotates between rounds), so slow drift of a noisy machine hits every variant
alike. Throughput is the median over rounds, latency percentiles pool the rounds' requests.

Overhead: the ``batched`` server's best median throughput (saturation) against the same
runtime (same options) called in this process with ``runtime.predict`` at the same
concurrencies, also in ``--repeats`` rounds, after the servers are stopped.

Default target: the demo AV-digits artifact (``--artifact demo-output/model``, inputs from
``demo-output/data/test.jsonl``); ``--model minilm`` serves a random-weight MiniLM text
model built like `serve_batching.py`. Run: ``.venv/bin/python benchmarks/serve_load.py``
(about 5 minutes on 2 CPU cores); ``--json`` prints the results as JSON at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import (
    MODELS,
    Inputs,
    Request,
    Result,
    Server,
    closed_loop,
    form,
    in_process_loop,
    load_inputs,
    make_runtime,
    manifest_inputs,
    variant_options,
)

VARIANTS = ("naive", "batched", "cached")


def _line(label: str, runs: list[Result]) -> str:
    r = pooled(runs)
    bad = sum(v for k, v in r.statuses.items() if k != "2xx")
    rates = "/".join(f"{x.rps:.0f}" for x in runs)
    return (
        f"{label:<10}c={r.concurrency:<4}{median_rps(runs):8.1f} req/s (runs {rates})  "
        f"p50 {r.pct(50):7.1f}  p95 {r.pct(95):7.1f}  p99 {r.pct(99):7.1f} ms  "
        f"({len(r.latencies_ms)} requests, this process {r.cpu_cores:.2f} cores"
        + (f", {bad} not 2xx: {dict(r.statuses)})" if bad else ")")
    )


def median_rps(runs: list[Result]) -> float:
    """Median throughput of repeated runs."""
    return statistics.median(r.rps for r in runs)


def pooled(runs: list[Result]) -> Result:
    """One `Result` holding every run's requests (for latency percentiles)."""
    out = Result(runs[0].concurrency, sum(r.wall_s for r in runs))
    for r in runs:
        out.latencies_ms += r.latencies_ms
        out.statuses.update(r.statuses)
        out.cpu_s += r.cpu_s
    return out


def run_servers(
    target: str, inputs: list[Inputs], levels: list[int], seconds: float, repeats: int
) -> tuple[dict[str, dict[int, list[Result]]], dict[str, dict[str, int]]]:
    """Start one server per variant, then drive the levels in interleaved rounds.

    Returns variant -> level -> runs, and variant -> modality -> batch-size cap."""

    def requester(variant: str) -> Callable[[int], Request]:
        bodies = [form(x) for x in (inputs[:8] if variant == "cached" else inputs)]
        return lambda i: ("/v1/predict", bodies[i % len(bodies)])

    runs: dict[str, dict[int, list[Result]]] = {v: {c: [] for c in levels} for v in VARIANTS}
    with contextlib.ExitStack() as stack:
        servers = {v: stack.enter_context(Server(target, variant_options(v))) for v in VARIANTS}
        for v, server in servers.items():
            asyncio.run(closed_loop(server.url, requester(v), 4, 2.0))  # warm-up
        for c in levels:
            for k in range(repeats):
                order = VARIANTS[k % 3 :] + VARIANTS[: k % 3]
                for v in order:
                    r = asyncio.run(closed_loop(servers[v].url, requester(v), c, seconds))
                    runs[v][c].append(r)
            for v in VARIANTS:
                print(_line(v, runs[v][c]), flush=True)
        modalities = list(inputs[0])
        caps = {v: servers[v].batch_sizes(modalities) for v in VARIANTS}
    return runs, caps


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--artifact", default="demo-output/model", help="artifact folder")
    what.add_argument("--model", choices=MODELS, help="serve a random-weight model instead")
    parser.add_argument(
        "--manifest", type=Path, help="inputs (default: ARTIFACT/../data/test.jsonl)"
    )
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument("--seconds", type=float, default=5.0, help="load per run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds per level")
    parser.add_argument("--inputs", type=int, default=512, help="distinct inputs to cycle over")
    parser.add_argument("--json", action="store_true", help="print results as JSON at the end")
    args = parser.parse_args()
    target = args.model or args.artifact
    inputs = (
        manifest_inputs(args.manifest, args.inputs)
        if args.manifest
        else load_inputs(target, args.inputs)
    )
    start = time.perf_counter()
    levels = args.concurrency
    runs, caps = run_servers(target, inputs, levels, args.seconds, args.repeats)
    runs["raw"] = run_raw(target, inputs, levels, args.seconds, args.repeats)
    rps = {v: {c: median_rps(rs) for c, rs in by.items()} for v, by in runs.items()}
    pct = {v: {c: pooled(rs) for c, rs in by.items()} for v, by in runs.items()}

    print(
        f"\ntarget {target}, {args.repeats} x {args.seconds:g} s per level and variant, "
        f"batch-size caps at the end {caps['batched']}\n"
    )
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
        f"(c={raw_c}): {ratio:.0%} ({'meets' if ratio >= 0.7 else 'BELOW'} the 70% target)"
    )
    slower = [c for c in levels if rps["batched"][c] < rps["naive"][c]]
    print(
        "batched below naive at concurrency " + ", ".join(map(str, slower))
        if slower
        else "batched is at least naive's median throughput at every concurrency"
    )
    failed = sum(
        n
        for by in runs.values()
        for rs in by.values()
        for r in rs
        for k, n in r.statuses.items()
        if k != "2xx"
    )
    print(f"requests not answered 2xx: {failed}")
    print(f"{time.perf_counter() - start:.0f} s in all")
    if args.json:
        out: dict[str, Any] = {
            "target": target,
            "seconds_per_run": args.seconds,
            "repeats": args.repeats,
            "batch_size_caps": caps,
            "variants": {
                v: {
                    str(c): {**pooled(rs).summary(), "median_rps": round(median_rps(rs), 2)}
                    for c, rs in by.items()
                }
                for v, by in runs.items()
            },
            "saturation": {
                "server_rps": round(rps["batched"][server_c], 2),
                "server_concurrency": server_c,
                "raw_rps": round(rps["raw"][raw_c], 2),
                "raw_concurrency": raw_c,
                "ratio": round(ratio, 4),
            },
        }
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
