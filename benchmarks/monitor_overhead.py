"""What live drift monitoring costs a service: the same artifact served with it off and on.

Two real servers (`serve_common.Server`: uvicorn + `create_app` + `ModelRuntime`, the
``batched`` options of `serve_load.py`), one with ``monitor: false`` and one with the
monitor on (windows of 200 requests, assessed in a background thread), driven in
interleaved rounds by closed-loop HTTP clients at each concurrency level. The artifact
must hold a reference profile (every artifact `polyfuse train` writes does).

    python benchmarks/monitor_overhead.py --artifact /tmp/mon/art --concurrency 16 64
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from serve_common import (  # noqa: E402 - the serving benchmarks' shared pieces
    Server,
    closed_loop,
    form,
    load_inputs,
    variant_options,
)

VARIANTS = {"monitor off": {"monitor": False}, "monitor on": {"monitor": True}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifact", required=True)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    t0 = time.perf_counter()
    inputs = load_inputs(args.artifact, 256)
    bodies = [form(x) for x in inputs]
    names = list(VARIANTS)
    rps: dict[str, dict[int, list[float]]] = {v: {c: [] for c in args.concurrency} for v in names}
    p99: dict[str, dict[int, list[float]]] = {v: {c: [] for c in args.concurrency} for v in names}
    with contextlib.ExitStack() as stack:
        servers = {
            v: stack.enter_context(Server(args.artifact, variant_options("batched", **extra)))
            for v, extra in VARIANTS.items()
        }
        for server in servers.values():
            asyncio.run(closed_loop(server.url, lambda i: ("/v1/predict", bodies[i % 256]), 4, 2.0))
        for c in args.concurrency:
            for k in range(args.repeats):
                for v in names[k % 2 :] + names[: k % 2]:
                    r = asyncio.run(
                        closed_loop(
                            servers[v].url,
                            lambda i: ("/v1/predict", bodies[i % len(bodies)]),
                            c,
                            args.seconds,
                        )
                    )
                    bad = sum(n for s, n in r.statuses.items() if s != "2xx")
                    if bad:
                        print(f"  {v} c={c}: {bad} answers not 2xx: {dict(r.statuses)}")
                    rps[v][c].append(r.rps)
                    p99[v][c].append(r.pct(99))
    print("\n| concurrency | monitor off req/s | monitor on req/s | on / off | p99 ms off / on |")
    print("|---|---|---|---|---|")
    for c in args.concurrency:
        off, on = (statistics.median(rps[v][c]) for v in names)
        p_off, p_on = (statistics.median(p99[v][c]) for v in names)
        print(f"| {c} | {off:.1f} | {on:.1f} | {on / off:.2f} | {p_off:.0f} / {p_on:.0f} |")
    print(f"{time.perf_counter() - t0:.0f} s in all, {args.repeats} rounds of {args.seconds:.0f} s")


if __name__ == "__main__":
    main()
