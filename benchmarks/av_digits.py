"""AV-digits benchmark: unimodal models vs every fusion, with and without modality dropout.

MNIST images paired with spoken digits (FSDD) by label; the test speaker is unseen.
For each variant (clean, hard) it trains, side by side in one run:

* ``image_only`` and ``audio_only`` (examples/av_digits/{image,audio}_only.yaml),
* every registered fusion with modality dropout and without it (examples/av_digits/fused.yaml
  with the fusion swapped),

and evaluates each on the test speaker with both modalities and, for fused models, with
only the image and only the audio. It prints the table, the gains and ratios the
acceptance criteria name, and writes everything as JSON.

    python benchmarks/av_digits.py --data ../shared/data --jobs 2
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "av_digits"
FUSIONS = ("concat", "late", "gated", "cross_attention", "set")


def model_grid(fusions: list[str]) -> dict[str, dict[str, Any]]:
    """name -> config dict for every model of the comparison."""
    load = lambda name: yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())  # noqa: E731
    grid = {"image_only": load("image_only"), "audio_only": load("audio_only")}
    fused = load("fused")
    best = fused["model"]["fusion"]
    best = best if isinstance(best, str) else best["name"]
    for fusion in fusions:
        for dropout in (True, False):
            cfg = copy.deepcopy(fused)
            if fusion != best:
                cfg["model"]["fusion"] = fusion
            for mod in cfg["modalities"].values():
                mod["dropout"] = mod.get("dropout", 0.0) if dropout else 0.0
            grid[f"{fusion}{'+dropout' if dropout else ''}"] = cfg
    return grid


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one model (runs in a worker process)."""
    import torch

    torch.set_num_threads(job["threads"])
    import logging

    logging.basicConfig(level=logging.WARNING)
    from polyfuse.core.config import Config
    from polyfuse.evaluation import evaluate
    from polyfuse.train import Trainer

    cfg = copy.deepcopy(job["config"])
    cfg.setdefault("train", {})["seed"] = job["seed"]
    if job.get("epochs"):
        cfg["train"]["epochs"] = job["epochs"]
    out = Path(job["work"]) / "runs" / f"{job['variant']}-{job['name']}-s{job['seed']}"
    finished = (out / "artifact.json").exists() and (out / "metrics.json").exists()
    if not (job["resume"] and finished):  # a finished run is only evaluated again
        resume = job["resume"] and (out / "checkpoints" / "last.pt").exists()
        trainer = Trainer(Config.from_dict(cfg), out, progress=False, resume=resume)
        trainer.fit(job["train"], job["val"])
    # epoch times from the run's log, so resumed runs report what training took
    seconds = sum(json.loads(line)["seconds"] for line in (out / "metrics.jsonl").open())
    row: dict[str, Any] = {
        "variant": job["variant"],
        "model": job["name"],
        "seed": job["seed"],
        "epochs": json.loads((out / "metrics.json").read_text())["best_epoch"],
        "train_seconds": round(seconds, 1),
    }
    mods = list(cfg["modalities"])
    feeds: list[tuple[str, list[str] | None]] = [("both", None)]
    if len(mods) > 1:
        feeds += [(f"{m} only", [m]) for m in mods]
    for label, keep in feeds:
        res = evaluate(out, job["test"], modalities=keep, progress=False, device="cpu")
        row[label] = round(res.metrics["accuracy"], 4)
    print(
        f"  {job['variant']:<5} {job['name']:<24} seed {job['seed']}: "
        + ", ".join(
            f"{k} {v:.3f}" for k, v in row.items() if k in ("both", "image only", "audio only")
        )
        + f"  ({seconds:.0f} s)",
        flush=True,
    )
    return row


def summarise(rows: list[dict[str, Any]], variant: str) -> dict[str, Any]:
    """Medians over seeds per model, and the acceptance figures."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["variant"] == variant:
            by_model.setdefault(r["model"], []).append(r)
    table = {}
    for model, rs in by_model.items():
        table[model] = {
            k: statistics.median(r[k] for r in rs)
            for k in ("both", "image only", "audio only", "train_seconds")
            if k in rs[0]
        }
    image = table["image_only"]["both"]
    audio = table["audio_only"]["both"]
    fused = {m: v for m, v in table.items() if m not in ("image_only", "audio_only")}
    best = max(fused, key=lambda m: fused[m]["both"])
    dropout = {m: v for m, v in fused.items() if m.endswith("+dropout")}
    best_dropout = max(dropout, key=lambda m: dropout[m]["both"])
    return {
        "table": table,
        "best_unimodal": max(image, audio),
        "best_fused": best,
        "best_fused_accuracy": fused[best]["both"],
        "gain_points": round(100 * (fused[best]["both"] - max(image, audio)), 2),
        "best_dropout_model": best_dropout,
        "image_ratio": round(dropout[best_dropout]["image only"] / image, 4),
        "audio_ratio": round(dropout[best_dropout]["audio only"] / audio, 4),
    }


def render(summary: dict[str, Any], variant: str) -> str:
    """Markdown table plus the acceptance lines."""
    lines = [
        f"### {variant}",
        "",
        "| model | image + audio | image only | audio only | train s |",
        "|---|---|---|---|---|",
    ]
    for model, v in summary["table"].items():
        cells = [f"{v[k]:.3f}" if k in v else "-" for k in ("both", "image only", "audio only")]
        if model == "image_only":
            cells = ["-", f"{v['both']:.3f}", "-"]
        elif model == "audio_only":
            cells = ["-", "-", f"{v['both']:.3f}"]
        lines.append(f"| {model} | {' | '.join(cells)} | {v['train_seconds']:.0f} |")
    lines += [
        "",
        f"- best fused: {summary['best_fused']} {summary['best_fused_accuracy']:.3f} vs best "
        f"unimodal {summary['best_unimodal']:.3f}: {summary['gain_points']:+.1f} points",
        f"- {summary['best_dropout_model']} fed one modality / dedicated unimodal model: "
        f"image {summary['image_ratio']:.3f}, audio {summary['audio_ratio']:.3f}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data",
        default=str(ROOT.parent / "shared" / "data"),
        help="shared data folder with mnist/, fsdd/, esc50_8k/",
    )
    parser.add_argument(
        "--work",
        default="/tmp/polyfuse-bench/av_digits",
        help="folder for generated data and artifacts (outside the repository)",
    )
    parser.add_argument("--variants", default="clean,hard")
    parser.add_argument("--models", help="comma-separated subset, e.g. image_only,gated+dropout")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; medians are reported")
    parser.add_argument("--epochs", type=int, help="override the configs' epochs")
    parser.add_argument("--test-speaker", default="theo")
    parser.add_argument("--jobs", type=int, default=1, help="trainings run in parallel")
    parser.add_argument("--json", dest="json_out", help="write all rows and summaries here")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="reuse finished runs under --work and continue interrupted ones from their checkpoint",
    )
    args = parser.parse_args()

    from polyfuse.datasets.av_digits import AVDigitsSpec, build

    grid = model_grid(list(FUSIONS))
    if args.models:
        grid = {k: v for k, v in grid.items() if k in args.models.split(",")}
    threads = max(1, (os.cpu_count() or 2) // args.jobs)
    jobs = []
    for variant in args.variants.split(","):
        paths = build(
            args.data,
            Path(args.work) / variant,
            AVDigitsSpec(variant, test_speaker=args.test_speaker),
            progress=False,
        )
        for seed in (int(s) for s in args.seeds.split(",")):
            for name, cfg in grid.items():
                jobs.append(
                    {
                        "variant": variant,
                        "name": name,
                        "config": cfg,
                        "seed": seed,
                        "epochs": args.epochs,
                        "threads": threads,
                        "work": args.work,
                        "resume": args.resume,
                        **{k: str(v) for k, v in paths.items()},
                    }
                )
    print(f"{len(jobs)} trainings, {args.jobs} at a time, {threads} torch threads each", flush=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(run_one, jobs))
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "rows": rows,
        "summaries": {},
    }
    for variant in args.variants.split(","):
        if {"image_only", "audio_only"} <= set(grid) and len(grid) > 2:
            report["summaries"][variant] = summarise(rows, variant)
            print()
            print(render(report["summaries"][variant], variant))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
