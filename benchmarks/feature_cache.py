"""Frozen-feature cache: epoch times of a frozen-encoder run with the cache vs without.

Flickr8k photos + captions (the concepts task) through frozen EfficientNet-Lite0 and
MiniLM. Side by side in one run:

* ``cache``: epoch 1 encodes every input once (and stores it); later epochs read tokens
  back from disk;
* ``no cache``: every epoch runs the frozen encoders again;
* ``disk only``: the cache without the in-RAM copy (every epoch reads tokens from disk);
* ``warm cache``: a second run on the same data finds everything cached from the start.

Prints per-epoch seconds, the median of epochs >= 2, and the ratios.

    python benchmarks/feature_cache.py --data ../shared/data --rows 600
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def run(name: str, raw: dict[str, Any], train: Path, val: Path, out: Path) -> list[float]:
    from polyfuse.core.config import Config
    from polyfuse.train import Trainer

    result = Trainer(Config.from_dict(raw), out / name, progress=False).fit(train, val)
    seconds = [r["seconds"] for r in result.history]
    print(f"  {name:<11} epochs: " + "  ".join(f"{s:6.1f}" for s in seconds) + " s", flush=True)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--rows", type=int, default=600, help="training rows (images)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--json", dest="json_out", help="write the figures here")
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    from polyfuse.datasets.flickr8k import build_concepts

    work = Path(tempfile.mkdtemp(prefix="polyfuse-cache-bench-"))
    try:
        paths = build_concepts(args.data, work / "data")
        train = work / "train.jsonl"
        train.write_text("".join(paths["train"].read_text().splitlines(True)[: args.rows]))
        val = work / "val.jsonl"
        val.write_text("".join(paths["val"].read_text().splitlines(True)[:100]))
        raw = yaml.safe_load((ROOT / "examples" / "flickr8k" / "concepts.yaml").read_text())
        raw["train"].update(
            {"epochs": args.epochs, "patience": 0, "cache_dir": str(work / "cache")}
        )
        print(
            f"{args.rows} train + 100 val rows, {args.epochs} epochs, frozen EfficientNet-Lite0 "
            "+ MiniLM",
            flush=True,
        )
        no_cache = {**raw, "train": {**raw["train"], "feature_cache": False}}
        disk_only = {
            **raw,
            "train": {**raw["train"], "memory_cache_mb": 0, "cache_dir": str(work / "cache-disk")},
        }
        times = {
            "no cache": run("no cache", no_cache, train, val, work / "runs"),
            "cache": run("cache", raw, train, val, work / "runs"),
            "disk only": run("disk only", disk_only, train, val, work / "runs"),
            "warm cache": run("warm cache", raw, train, val, work / "runs"),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    later = {k: statistics.median(v[1:]) for k, v in times.items()}
    figures = {
        "epoch1_over_later_with_cache": round(times["cache"][0] / later["cache"], 2),
        "epoch1_over_later_disk_only": round(times["disk only"][0] / later["disk only"], 2),
        "epoch1_over_later_without_cache": round(times["no cache"][0] / later["no cache"], 2),
        "later_epochs_no_cache_over_cache": round(later["no cache"] / later["cache"], 2),
        "epoch1_cold_over_warm": round(times["cache"][0] / times["warm cache"][0], 2),
    }
    print()
    print("| run | epoch 1 s | median epoch >= 2 s | epoch 1 / later |")
    print("|---|---|---|---|")
    for k, v in times.items():
        print(f"| {k} | {v[0]:.1f} | {later[k]:.1f} | {v[0] / later[k]:.1f}x |")
    print()
    for k, v in figures.items():
        print(f"{k}: {v}x")
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {"command": " ".join(["python", *sys.argv]), "seconds": times, "ratios": figures},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
