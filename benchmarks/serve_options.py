"""Serving options side by side: one real server per set of `RuntimeConfig` options (the
``batched`` variant of `serve_common.variant_options` plus each set's overrides), driven in
interleaved rounds, closed loop at ``--concurrency`` levels and open loop at ``--open-loop``
rates; with ``--raw``, the same options' runtime called in this process too.

What it answered (docs/benchmarks.md, "Serving over HTTP"): where preprocessing runs
(``preprocess`` thread / process / auto) at low and high load, and what the live drift
monitor costs the open-loop tail (``monitor`` on / off).

    .venv/bin/python benchmarks/serve_options.py \\
        --set 'thread={"preprocess": "thread"}' --set 'process={"preprocess": "process"}' \\
        --set 'auto={}' --concurrency 1 64 --raw
    .venv/bin/python benchmarks/serve_options.py --set 'monitor={}' \\
        --set 'no-monitor={"monitor": false}' --concurrency --open-loop 150
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import (
    Server,
    closed_loop,
    form,
    in_process_loop,
    load_inputs,
    make_runtime,
    open_loop,
    variant_options,
)


def option_set(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME=JSON`` -> (name, options)."""
    name, _, raw = text.partition("=")
    try:
        options = json.loads(raw or "{}")
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: the options are not JSON ({exc})") from None
    if not name or not isinstance(options, dict):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME={{JSON object}}")
    return name, options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", default="demo-output/model")
    parser.add_argument(
        "--set",
        dest="sets",
        type=option_set,
        action="append",
        required=True,
        metavar="NAME=JSON",
        help="a server: its name and RuntimeConfig overrides",
    )
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 16, 64])
    parser.add_argument("--open-loop", type=float, nargs="*", default=[], metavar="RATE")
    parser.add_argument("--seconds", type=float, default=5.0, help="load per run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--raw", action="store_true", help="also each runtime in process")
    args = parser.parse_args()
    sets = dict(args.sets)
    inputs = load_inputs(args.artifact, 64)
    bodies = [form(x) for x in inputs]

    def request(i: int) -> tuple[str, dict[str, Any]]:
        return "/v1/predict", bodies[i % len(bodies)]

    runs: dict[tuple[str, str], list[Any]] = {}
    with contextlib.ExitStack() as stack:
        servers = {
            name: stack.enter_context(Server(args.artifact, variant_options("batched", **o)))
            for name, o in sets.items()
        }
        for server in servers.values():
            asyncio.run(closed_loop(server.url, request, 4, 2.0))  # warm-up
        loads = [f"c={c}" for c in args.concurrency] + [f"rate={r:g}" for r in args.open_loop]
        for load in loads:
            for k in range(args.repeats):
                names = list(servers)
                for name in names[k % len(names) :] + names[: k % len(names)]:
                    url = servers[name].url
                    if load.startswith("c="):
                        c = int(load[2:])
                        result = asyncio.run(closed_loop(url, request, c, args.seconds))
                    else:
                        rate = float(load[5:])
                        result = asyncio.run(open_loop(url, request, rate, args.seconds))
                    runs.setdefault((name, load), []).append(result)
    if args.raw:
        for name, overrides in sets.items():
            runtime = make_runtime(args.artifact, variant_options("batched", **overrides))

            async def drive(rt: Any = runtime, key: str = name) -> None:
                await in_process_loop(rt, inputs, 4, 2.0)
                for c in args.concurrency:
                    for _ in range(args.repeats):
                        result = await in_process_loop(rt, inputs, c, args.seconds)
                        runs.setdefault((f"{key} (raw)", f"c={c}"), []).append(result)
                await rt.close()

            asyncio.run(drive())
    print("| load | options | req/s (median) | runs | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for (name, load), results in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        latencies = sorted(x for r in results for x in r.latencies_ms)
        p50 = latencies[len(latencies) // 2] if latencies else float("nan")
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else 0
        rates = "/".join(f"{r.rps:.0f}" for r in results)
        median = statistics.median(r.rps for r in results)
        print(f"| {load} | {name} | {median:.1f} | {rates} | {p50:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    main()
