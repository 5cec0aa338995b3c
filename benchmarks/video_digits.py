"""Video-digits benchmark: picture + soundtrack vs frames only vs soundtrack only.

Builds video digits (`polyfuse.datasets.video_digits`: a handwritten digit appearing and
moving while the same digit is spoken, MP4 with H.264 + AAC; 10% of clips without an audio
track, 10% with a silent one), trains examples/video_digits/{fused,frames_only,audio_only}.yaml
and evaluates each on the test split, whose speaker and MNIST images training never saw.
The fused model is also fed each modality alone. Prints the table and the ratios the
acceptance names (fused accuracy over each unimodal model's), and writes JSON.
``--aggregators attention,transformer`` adds the frames-only model with those temporal
aggregators in place of the mean (``frames_only+attention`` ...), side by side.

    python benchmarks/video_digits.py --data ../shared/data --takes 10 --jobs 3
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "video_digits"
MODELS = ("fused", "frames_only", "audio_only")


def run_one(
    name: str, paths: dict[str, Path], work: Path, epochs: int | None, threads: int
) -> dict[str, Any]:
    """Train one example config and evaluate it on the test split (each modality alone too;
    runs in a worker process)."""
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)
    from polyfuse.core.config import Config
    from polyfuse.evaluation import evaluate
    from polyfuse.train import Trainer

    base, _, aggregator = name.partition("+")
    cfg = yaml.safe_load((EXAMPLES / f"{base}.yaml").read_text())
    if aggregator:
        cfg["modalities"]["video"]["encoder"]["aggregator"] = aggregator
    if epochs:
        cfg["train"]["epochs"] = epochs
    out = work / "runs" / name
    start = time.perf_counter()
    Trainer(Config.from_dict(cfg), out, progress=False).fit(paths["train"], paths["val"])
    seconds = time.perf_counter() - start
    mods = list(cfg["modalities"])
    row: dict[str, Any] = {"model": name, "train_seconds": round(seconds, 1)}
    feeds: list[tuple[str, list[str] | None]] = [("all", None)]
    if len(mods) > 1:
        feeds += [(f"{m} only", [m]) for m in mods]
    total = sum(1 for _ in paths["test"].open())
    for label, keep in feeds:
        res = evaluate(out, paths["test"], modalities=keep, progress=False, device="cpu")
        # a row the model cannot answer (the soundtrack-only model on a clip without an
        # audio track) counts as an error, so every model is scored on the same rows
        answered = int(res.metrics["n"])
        row[label] = round(res.metrics["accuracy"] * answered / total, 4)
        row[f"{label} answered"] = f"{answered}/{total}"
    print(f"  {name:<12} " + ", ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    return row


def render(rows: dict[str, dict[str, Any]]) -> str:
    """Markdown table and, with all three models, the acceptance ratios."""
    lines = [
        "| model | test accuracy | fed video only | fed audio only | rows answered | train s |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        cells = [f"{r['all']:.3f}"] + [
            f"{r[k]:.3f}" if k in r else "-" for k in ("video only", "audio only")
        ]
        answered = r["all answered"]
        lines.append(f"| {name} | {' | '.join(cells)} | {answered} | {r['train_seconds']:.0f} |")
    if not set(MODELS) <= set(rows):
        return "\n".join(lines)
    fused, frames = rows["fused"]["all"], rows["frames_only"]["all"]
    audio = rows["audio_only"]["all"]
    lines += [
        "",
        f"- fused / frames only: {fused / max(frames, 1e-9):.3f} ({fused:.3f} vs {frames:.3f})",
        f"- fused / soundtrack only: {fused / max(audio, 1e-9):.3f} ({fused:.3f} vs {audio:.3f})",
        f"- acceptance (fused above each unimodal model): "
        f"{'met' if fused > max(frames, audio) else 'NOT met'}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--work", default="/tmp/polyfuse-bench/video_digits")
    parser.add_argument("--takes", type=int, default=10, help="FSDD takes per digit and speaker")
    parser.add_argument("--image-noise", type=float, default=0.0, help="pixel noise std (0..1)")
    parser.add_argument("--epochs", type=int, help="override the configs' epochs")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument(
        "--aggregators", default="", help="extra frames-only runs: attention,transformer"
    )
    parser.add_argument("--jobs", type=int, default=1, help="trainings run in parallel")
    parser.add_argument("--json", dest="json_out", help="write the rows here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from polyfuse.datasets.video_digits import VideoDigitsSpec, build

    data, work = Path(args.data), Path(args.work)
    spec = VideoDigitsSpec(takes=args.takes, image_noise=args.image_noise)
    start = time.perf_counter()
    paths = build(data / "mnist" / "mnist_test_0_8000.npz", data / "fsdd", work / "data", spec)
    counts = {s: sum(1 for _ in p.open()) for s, p in paths.items()}
    print(f"built {counts} in {time.perf_counter() - start:.0f} s", flush=True)
    names = args.models.split(",")
    names += [f"frames_only+{a}" for a in args.aggregators.split(",") if a]
    threads = max(1, 2 // args.jobs)
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {m: pool.submit(run_one, m, paths, work, args.epochs, threads) for m in names}
        rows = {m: futures[m].result() for m in names}
    print()
    print(render(rows))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"spec": vars(args), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
