"""HTTP serving load test: naive vs dynamic batching vs batching + cache, over loopback
from a second process, and the HTTP overhead against the same runtime in process.

For each variant a real server (uvicorn + `create_app` + `ModelRuntime`, see
`serve_common.py`) starts in its own process on a free loopback port; this process drives
it with ``concurrency`` closed-loop aiohttp workers (multipart uploads to ``/v1/predict``)
for ``--seconds`` per level:

- ``naive``: one encoder forward per request (max_batch 1), no cache, distinct inputs;
- ``batched``: batch size measured at start-up (``auto``), no cache, distinct inputs;
- ``cached``: ``auto`` + memory cache, requests cycling over 8 distinct inputs.

Overhead: the ``batched`` server's best throughput (saturation) against the same runtime
(same options, batch sizes pinned to the ones the server measured) called in this process
with ``runtime.predict`` at the same concurrencies.

Default target: the demo AV-digits artifact (``--artifact demo-output/model``, inputs from
``demo-output/data/test.jsonl``); ``--model minilm`` serves a random-weight MiniLM text
model built like `serve_batching.py`. Run: ``.venv/bin/python benchmarks/serve_load.py``
(about 4 minutes on 2 CPU cores); ``--json`` prints the results as JSON at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
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


def _line(label: str, r: Result) -> str:
    bad = sum(v for k, v in r.statuses.items() if k != "2xx")
    return (
        f"{label:<22}c={r.concurrency:<4}{r.rps:8.1f} req/s  p50 {r.pct(50):7.1f}  "
        f"p95 {r.pct(95):7.1f}  p99 {r.pct(99):7.1f} ms  ({len(r.latencies_ms)} requests, "
        f"this process {r.cpu_cores:.2f} cores"
        + (f", {bad} not 2xx: {dict(r.statuses)})" if bad else ")")
    )


def run_variant(
    target: str,
    variant: str,
    inputs: list[Inputs],
    levels: list[int],
    seconds: float,
) -> tuple[list[Result], dict[str, int]]:
    """Start the variant's server, warm it up, drive every concurrency level."""
    pool = inputs[:8] if variant == "cached" else inputs

    def request(i: int) -> Request:
        return "/v1/predict", {"data": form(pool[i % len(pool)])}

    with Server(target, variant_options(variant)) as server:
        modalities = list(inputs[0])
        sizes = server.batch_sizes(modalities)
        asyncio.run(closed_loop(server.url, request, 4, 2.0))  # warm-up
        results = []
        for c in levels:
            r = asyncio.run(closed_loop(server.url, request, c, seconds))
            results.append(r)
            batch = " ".join(f"{m}:{s}" for m, s in sizes.items())
            print(_line(f"{variant} (batch {batch})", r), flush=True)
    return results, sizes


def run_raw(
    target: str,
    inputs: list[Inputs],
    levels: list[int],
    seconds: float,
    sizes: dict[str, int],
) -> list[Result]:
    """The ``batched`` runtime in this process (no HTTP), batch sizes pinned to ``sizes``."""
    per = {m: {"max_batch": max(1, s), "max_wait_ms": 0} for m, s in sizes.items()}
    runtime = make_runtime(target, variant_options("batched", per_modality=per))

    async def go() -> list[Result]:
        await in_process_loop(runtime, inputs, 4, 2.0)  # warm-up
        out = []
        for c in levels:
            r = await in_process_loop(runtime, inputs, c, seconds)
            out.append(r)
            print(_line("raw in-process", r), flush=True)
        await runtime.close()
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
    parser.add_argument("--seconds", type=float, default=8.0, help="load per level")
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
    results: dict[str, list[Result]] = {}
    sizes: dict[str, int] = {}
    for variant in VARIANTS:
        results[variant], got = run_variant(target, variant, inputs, args.concurrency, args.seconds)
        if variant == "batched":
            sizes = got
    results["raw"] = run_raw(target, inputs, args.concurrency, args.seconds, sizes)
    levels = args.concurrency
    by = {v: {r.concurrency: r for r in rs} for v, rs in results.items()}

    print(f"\ntarget {target}, {args.seconds:g} s per level, batch sizes {sizes}\n")
    print(
        "| concurrency | naive req/s | batched req/s (x naive) | cached req/s (x naive) "
        "| p50 / p95 / p99 ms naive | batched | cached |"
    )
    print("|---|---|---|---|---|---|---|")
    for c in levels:
        n, b, k = by["naive"][c], by["batched"][c], by["cached"][c]
        pcts = [f"{r.pct(50):.0f} / {r.pct(95):.0f} / {r.pct(99):.0f}" for r in (n, b, k)]
        print(
            f"| {c} | {n.rps:.1f} | {b.rps:.1f} ({b.rps / n.rps:.2f}x) "
            f"| {k.rps:.1f} ({k.rps / n.rps:.2f}x) | {' | '.join(pcts)} |"
        )
    print("\n| concurrency | batched server req/s | raw in-process req/s | server / raw |")
    print("|---|---|---|---|")
    for c in levels:
        b, r = by["batched"][c], by["raw"][c]
        print(f"| {c} | {b.rps:.1f} | {r.rps:.1f} | {b.rps / r.rps:.0%} |")
    server_best = max(results["batched"], key=lambda r: r.rps)
    raw_best = max(results["raw"], key=lambda r: r.rps)
    ratio = server_best.rps / raw_best.rps
    print(
        f"\noverhead at saturation: server {server_best.rps:.1f} req/s "
        f"(c={server_best.concurrency}) vs raw in-process {raw_best.rps:.1f} req/s "
        f"(c={raw_best.concurrency}): {ratio:.0%} "
        f"({'meets' if ratio >= 0.7 else 'BELOW'} the 70% target)"
    )
    failed = sum(
        n for rs in results.values() for r in rs for k, n in r.statuses.items() if k != "2xx"
    )
    print(f"requests not answered 2xx: {failed}")
    print(f"{time.perf_counter() - start:.0f} s in all")
    if args.json:
        out: dict[str, Any] = {
            "target": target,
            "seconds_per_level": args.seconds,
            "batch_sizes": sizes,
            "variants": {v: [r.summary() for r in rs] for v, rs in results.items()},
            "saturation": {
                "server_rps": round(server_best.rps, 2),
                "server_concurrency": server_best.concurrency,
                "raw_rps": round(raw_best.rps, 2),
                "raw_concurrency": raw_best.concurrency,
                "ratio": round(ratio, 4),
            },
        }
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
