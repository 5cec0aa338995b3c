"""Serving runtime throughput and latency, in process (no HTTP): naive vs dynamic batching
vs batching + embedding cache, at several concurrencies.

Models (random weights: throughput does not depend on what the weights learned):

- ``av-digits``: the demo architecture (28x28 image CNN + 8 kHz log-mel audio CNN, gated fusion);
- ``minilm``: text through the pretrained all-MiniLM-L6-v2 (15-word sentences);
- ``effnet``: images through the pretrained EfficientNet-Lite0 (224x224).

Modes:

- ``naive``: nothing batched (one encoder forward, one fusion forward and one
  preprocessing pool call per request), no cache;
- ``batched``: dynamic micro-batching, batch sizes measured at start-up and tuned online
  (``auto``), no cache;
- ``cached``: batching + memory cache, requests cycling over 8 distinct inputs.

Options are `serve_common.variant_options` (the HTTP benchmarks use the same), with torch
threads set as ``polyfuse serve`` sets them.

Run: ``.venv/bin/python benchmarks/serve_batching.py`` (about 4 minutes on 2 CPU cores);
``--models minilm --concurrency 1 16`` for a subset.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

MODES = ("naive", "batched", "cached")
WORDS = tuple(
    [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "a",
        "lazy",
        "dog",
        "while",
        "seven",
        "bright",
        "stars",
        "shine",
        "above",
        "quiet",
        "hills",
        "near",
        "an",
        "old",
        "stone",
        "bridge",
        "by",
        "the",
        "river",
        "at",
        "night",
    ]
)


def _config(name: str) -> dict[str, Any]:
    from polyfuse.cli.demo import DEMO_CONFIG

    if name == "av-digits":
        return DEMO_CONFIG
    mod = (
        {"text": {"kind": "text", "encoder": {"name": "minilm"}}}
        if name == "minilm"
        else {"image": {"kind": "image", "encoder": {"name": "efficientnet_lite0"}}}
    )
    return {"task": "multiclass", "modalities": mod, "model": {"dim": 64, "fusion": "gated"}}


def build_artifact(name: str) -> Any:
    """An in-memory artifact of the model ``name`` (untrained adapters and heads)."""
    from polyfuse.artifacts.classifier import Artifact
    from polyfuse.core.config import Config
    from polyfuse.heads.tasks import MulticlassTask
    from polyfuse.models.build import build_contracts, build_model

    torch.manual_seed(0)
    config = Config.from_dict(_config(name))
    contracts = build_contracts(config)
    task = MulticlassTask([str(d) for d in range(10)])
    model = build_model(config, contracts, task).eval()
    return Artifact(config, contracts, task, model, info={"files": {"model.safetensors": name}})


def _png(rng: np.random.Generator, size: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _wav(rng: np.random.Generator, rate: int = 8000) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, (0.1 * rng.standard_normal(rate)).astype(np.float32), rate, format="WAV")
    return buf.getvalue()


def make_inputs(name: str, n: int, seed: int = 0) -> list[dict[str, bytes | str]]:
    """``n`` distinct requests' inputs for model ``name``."""
    rng = np.random.default_rng(seed)
    out: list[dict[str, bytes | str]] = []
    for _ in range(n):
        if name == "av-digits":
            out.append({"image": _png(rng, 28), "audio": _wav(rng)})
        elif name == "minilm":
            out.append({"text": " ".join(rng.choice(WORDS, 15))})
        else:
            out.append({"image": _png(rng, 224)})
    return out


@dataclass
class Row:
    model: str
    mode: str
    concurrency: int
    rps: float
    p50: float
    p95: float
    p99: float
    batch: str


async def drive(runtime: Any, inputs: list[dict[str, bytes | str]], concurrency: int) -> Row:
    """Closed loop: ``concurrency`` clients send every input once; returns req/s and latency."""
    from polyfuse.serve.types import ServeRequest

    latencies: list[float] = []
    next_index = 0

    async def client() -> None:
        nonlocal next_index
        while next_index < len(inputs):
            i = next_index
            next_index += 1
            t = time.perf_counter()
            await runtime.predict(ServeRequest(inputs[i], f"r{i}"))
            latencies.append(1000 * (time.perf_counter() - t))

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return Row("", "", concurrency, len(inputs) / wall, q[49], q[94], q[98], "")


def run_mode(
    name: str, mode: str, levels: list[int], requests: int, log: Callable[[str], None]
) -> list[Row]:
    from polyfuse.serve.http.app import freeze_heap
    from serve_common import make_runtime, variant_options  # (it imports this module)

    runtime = make_runtime(name, variant_options(mode))
    freeze_heap()  # as the server's app does (full collections stall every thread)
    distinct = make_inputs(name, 8 if mode == "cached" else requests, seed=1)

    async def go() -> list[Row]:
        rows = []
        await drive(runtime, make_inputs(name, 8, seed=2), 4)  # warm-up
        for c in levels:
            inputs = [distinct[i % len(distinct)] for i in range(requests)]
            row = await drive(runtime, inputs, c)
            sizes = runtime.stats()["batchers"]
            row.model, row.mode = name, mode
            row.batch = " ".join(
                f"{m}:{s['online_cap'] or s['max_batch']}" for m, s in sizes.items()
            )
            rows.append(row)
            log(
                f"{name:<10}{mode:<9}c={c:<4}{row.rps:8.1f} req/s  p50 {row.p50:7.1f}  "
                f"p95 {row.p95:7.1f}  p99 {row.p99:7.1f} ms  max_batch {row.batch}"
            )
        await runtime.close()
        gc.unfreeze()
        return rows

    return asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["av-digits", "minilm", "effnet"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument("--requests", type=int, default=128, help="requests per level")
    args = parser.parse_args()
    start = time.perf_counter()
    rows: list[Row] = []
    for name in args.models:
        for mode in MODES:
            rows += run_mode(name, mode, args.concurrency, args.requests, print)
    print()
    print(
        "| model | concurrency | naive req/s | batched req/s (x naive) | cached req/s (x naive) "
        "| p99 ms naive / batched / cached |"
    )
    print("|---|---|---|---|---|---|")
    for name in args.models:
        for c in args.concurrency:
            got = {r.mode: r for r in rows if r.model == name and r.concurrency == c}
            n, b, k = got["naive"], got["batched"], got["cached"]
            print(
                f"| {name} | {c} | {n.rps:.1f} | {b.rps:.1f} ({b.rps / n.rps:.2f}x) | "
                f"{k.rps:.1f} ({k.rps / n.rps:.2f}x) | {n.p99:.0f} / {b.p99:.0f} / {k.p99:.0f} |"
            )
    print(f"\n{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
