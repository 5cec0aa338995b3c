"""Encoder stages of the serving runtime: contiguous vs channels-last weights, side by side.

Each model's runtime is built twice (``RuntimeConfig.channels_last`` off and on; traced
encoders, 1 torch thread as `polyfuse serve` sets it for a two-encoder model on 2 cores),
then every encoder + adapter stage runs batches of 1, 4, 16 and 32 copies of its warm-up
sample. Rounds alternate between the two layouts and the figure is the median over
rounds of items per second; ratios are channels-last over contiguous.

Run: ``.venv/bin/python benchmarks/serve_stages.py`` (about a minute on 2 CPU cores);
``--models av-digits --rounds 9`` for more rounds of one model.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import make_runtime

LAYOUTS = {"contiguous": False, "channels_last": True}


def runtime(model: str, layout: bool) -> Any:
    return make_runtime(
        model,
        {
            "batching": {"max_batch": 1},  # no autotune: only the stages are timed
            "cache": "none",
            "preprocess": "thread",
            "torch_threads": 1,
            "channels_last": layout,
        },
    )


def items_per_second(fn: Any, sample: Any, batch: int, calls: int) -> float:
    items = [sample] * batch
    fn(items)  # warm-up
    start = time.perf_counter()
    for _ in range(calls):
        fn(items)
    return batch * calls / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["av-digits", "effnet"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 16, 32])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for model in args.models:
        runtimes = {name: runtime(model, flag) for name, flag in LAYOUTS.items()}
        first = runtimes["channels_last"]
        for m in first.modalities:
            status = {name: rt.stats()["encoders"][m] for name, rt in runtimes.items()}
            sample = first._sample(m)  # the runtime's own warm-up input
            calls = 3 if model == "effnet" else 10
            runs: dict[tuple[str, int], list[float]] = {}
            for k in range(args.rounds):
                order = list(LAYOUTS) if k % 2 == 0 else list(reversed(LAYOUTS))
                for name in order:
                    fn = runtimes[name]._batchers[m].fn
                    for b in args.batches:
                        runs.setdefault((name, b), []).append(
                            items_per_second(fn, sample, b, calls)
                        )
            print(f"{model} {m}: {status}", flush=True)
            for b in args.batches:
                slow = statistics.median(runs["contiguous", b])
                fast = statistics.median(runs["channels_last", b])
                rows.append((model, m, b, slow, fast))
                print(f"  batch {b:3d}: {slow:8.1f} -> {fast:8.1f} items/s", flush=True)
        for rt in runtimes.values():
            asyncio.run(rt.close())
    print("\n| model | encoder | batch | contiguous items/s | channels-last items/s | ratio |")
    print("|---|---|---|---|---|---|")
    for model, m, b, slow, fast in rows:
        print(f"| {model} | {m} | {b} | {slow:.1f} | {fast:.1f} | {fast / slow:.2f}x |")


if __name__ == "__main__":
    main()
