"""Bounded soak of the HTTP server: steady mixed load for ``--minutes``, zero 5xx and flat
memory required.

A real server (uvicorn + `create_app` + `ModelRuntime`, dynamic batching ``auto`` and a
memory cache of ``--cache-mb``) runs in its own process; this process keeps ``--clients``
closed-loop workers busy with a mix of requests:

- both modalities from the test manifest (cycling over it; cache hits after one pass);
- fresh content (a random PNG and WAV per request: always a cache miss, evicts);
- repeated content (8 inputs), image only, audio only, JSON with base64;
- malformed requests (undecodable image bytes, an unknown modality, a broken JSON body,
  no inputs), which must be answered 4xx, never 5xx.

Every ``--sample-s`` seconds the resident memory (RSS) of the server process and of its
process tree (with the preprocessing workers) is read. At the end: counts by status
class, latency percentiles, RSS at start / mid / end and the least-squares slope in MB per
minute after ``--warmup-s``. Exit status 1 on any 5xx (or connection error) or when the
tree's RSS grew more than ``--max-growth-mb`` after warm-up.

Run: ``.venv/bin/python benchmarks/serve_soak.py --minutes 10`` (AV-digits demo artifact).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import (
    Inputs,
    Request,
    Server,
    closed_loop,
    form,
    load_inputs,
    tree_rss_mb,
    variant_options,
)

MIX = {  # kind -> weight
    "manifest": 30,
    "fresh": 20,
    "repeated": 15,
    "image_only": 10,
    "audio_only": 10,
    "json": 5,
    "malformed": 10,
}


def _fresh(rng: np.random.Generator) -> Inputs:
    """A random 28x28 PNG and 1 s 8 kHz WAV: content the cache has never seen."""
    import soundfile as sf
    from PIL import Image

    png, wav = io.BytesIO(), io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (28, 28), np.uint8)).save(png, "PNG")
    sf.write(wav, (0.1 * rng.standard_normal(8000)).astype(np.float32), 8000, format="WAV")
    return {"image": png.getvalue(), "audio": wav.getvalue()}


def request_maker(inputs: list[Inputs], seed: int) -> Callable[[int], tuple[str, Request]]:
    """``i`` -> (kind, request) drawn from `MIX`."""
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    kinds, weights = list(MIX), list(MIX.values())
    repeated = inputs[:8]

    def make(i: int) -> tuple[str, Request]:
        kind = pick.choices(kinds, weights)[0]
        item = inputs[i % len(inputs)]
        if kind == "manifest":
            return kind, ("/v1/predict", form(item))
        if kind == "fresh":
            return kind, ("/v1/predict", form(_fresh(rng)))
        if kind == "repeated":
            return kind, ("/v1/predict", form(repeated[i % 8]))
        if kind in ("image_only", "audio_only"):
            m = kind.split("_")[0]
            return kind, ("/v1/predict", form({m: item[m]}))
        if kind == "json":
            body = {
                "inputs": {
                    m: {"base64": base64.b64encode(v).decode()}
                    for m, v in item.items()
                    if isinstance(v, bytes)
                }
            }
            return kind, ("/v1/predict", {"json": body})
        bad: list[Request] = [
            (
                "/v1/predict",
                form({"image": b"\x89PNG not really", "audio": item["audio"]}),
            ),
            ("/v1/predict", form({"image": b"garbage"})),
            ("/v1/predict", form({"nosuch": b"x"})),
            (
                "/v1/predict",
                {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
            ),
            ("/v1/predict", {"json": {"inputs": {}}}),
        ]
        return kind, bad[i % len(bad)]

    return make


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB per minute."""
    if len(samples) < 2:
        return 0.0
    t = np.array([s[0] for s in samples]) / 60
    y = np.array([s[1] for s in samples])
    return float(np.polyfit(t, y, 1)[0])


async def soak(args: argparse.Namespace, server: Server, inputs: list[Inputs]) -> dict[str, Any]:
    make = request_maker(inputs, seed=0)
    kinds: dict[int, str] = {}
    by_kind: Counter[tuple[str, str]] = Counter()
    fives: list[str] = []

    def next_request(i: int) -> Request:
        kinds[i], req = make(i)
        return req

    def on_status(i: int, status: int, body: str) -> None:
        kind = kinds.pop(i, "?")
        by_kind[kind, f"{status // 100}xx" if status else "conn_error"] += 1
        if status >= 500 or status == 0:
            fives.append(f"{kind} {status}: {body}")

    samples: list[tuple[float, float, float]] = []  # seconds, own MB, tree MB
    start = time.monotonic()

    async def sampler() -> None:
        while True:
            own, tree = tree_rss_mb(server.pid)
            samples.append((time.monotonic() - start, own, tree))
            print(
                f"  {samples[-1][0]:6.0f} s  RSS server {own:7.1f} MB  with workers {tree:7.1f} MB",
                flush=True,
            )
            await asyncio.sleep(args.sample_s)

    task = asyncio.create_task(sampler())
    result = await closed_loop(
        server.url, next_request, args.clients, 60 * args.minutes, on_status=on_status
    )
    task.cancel()
    own, tree = tree_rss_mb(server.pid)
    samples.append((time.monotonic() - start, own, tree))
    return {"result": result, "samples": samples, "fives": fives, "by_kind": by_kind}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", default="demo-output/model", help="artifact folder")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8, help="concurrent closed-loop clients")
    parser.add_argument("--sample-s", type=float, default=10.0, help="seconds between RSS reads")
    parser.add_argument("--warmup-s", type=float, default=120.0, help="RSS growth counted after")
    parser.add_argument("--cache-mb", type=float, default=1.0, help="memory cache budget")
    parser.add_argument("--max-growth-mb", type=float, default=50.0)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args()
    inputs = load_inputs(args.artifact, 600)
    options = variant_options("cached", cache_bytes=int(args.cache_mb * 2**20))
    print(f"soak: {args.artifact}, {args.clients} clients, {args.minutes:g} min", flush=True)
    with Server(args.artifact, options) as server:
        out = asyncio.run(soak(args, server, inputs))
        cache = {
            k.rsplit("_cache_", 1)[1]: v for k, v in server.metrics().items() if "_cache_" in k
        }
    r, samples, fives, by_kind = out["result"], out["samples"], out["fives"], out["by_kind"]
    warm = min(args.warmup_s, 0.25 * 60 * args.minutes)
    after = [(t, tree) for t, _, tree in samples if t >= warm]
    mid = samples[len(samples) // 2]
    growth = after[-1][1] - after[0][1] if after else 0.0
    slope = slope_mb_per_min(after)
    points, marks = ("start", "mid", "end"), (samples[0], mid, samples[-1])
    five = sum(n for k, n in r.statuses.items() if k in ("5xx", "conn_error"))
    summary = {
        "minutes": args.minutes,
        "clients": args.clients,
        "requests": len(r.latencies_ms),
        "rps": round(r.rps, 2),
        "statuses": dict(r.statuses),
        "p50_ms": round(r.pct(50), 2),
        "p95_ms": round(r.pct(95), 2),
        "p99_ms": round(r.pct(99), 2),
        "by_kind": {f"{k} {c}": n for (k, c), n in sorted(by_kind.items())},
        "rss_server_mb": dict(zip(points, (round(s[1], 1) for s in marks), strict=True)),
        "rss_tree_mb": dict(zip(points, (round(s[2], 1) for s in marks), strict=True)),
        "warmup_s": warm,
        "tree_growth_after_warmup_mb": round(growth, 1),
        "tree_slope_mb_per_min": round(slope, 2),
        "cache": cache,
        "five_xx": five,
        "first_5xx": fives[:5],
    }
    ok = five == 0 and growth <= args.max_growth_mb
    print(
        f"\n{summary['requests']} requests in {args.minutes:g} min ({r.rps:.1f} req/s), "
        f"statuses {dict(r.statuses)}\n"
        f"by kind: {summary['by_kind']}\n"
        f"latency p50 / p95 / p99: {r.pct(50):.1f} / {r.pct(95):.1f} / {r.pct(99):.1f} ms\n"
        f"RSS server start / mid / end: {samples[0][1]:.1f} / {mid[1]:.1f} / "
        f"{samples[-1][1]:.1f} MB; "
        f"with workers {samples[0][2]:.1f} / {mid[2]:.1f} / {samples[-1][2]:.1f} MB\n"
        f"after {warm:.0f} s warm-up: growth {growth:+.1f} MB, slope {slope:+.2f} MB/min "
        f"(limit {args.max_growth_mb:g} MB)\n"
        f"cache: {cache}\n"
        f"5xx or connection errors: {five}\n{'PASS' if ok else 'FAIL'}"
    )
    for line in fives[:5]:
        print("  ", line)
    if args.json:
        print(json.dumps(summary, indent=2))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
