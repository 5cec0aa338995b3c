"""Data-parallel training benchmark: one process vs ``--nproc N`` (DDP, gloo on CPU) on AV-digits.

The same config (examples/av_digits/fused.yaml), seed and data for every run; each run
reports its seconds per epoch (rank 0's clock: training, the other ranks waiting while rank 0
validates, and validation), its wall time, its best validation accuracy and its accuracy on
the test speaker. The one-process run uses every core; each of the N processes gets
cores / N torch threads. Optionally a DDP run with ``find_unused_parameters`` off, to
measure what the graph traversal costs (fused.yaml has quality gates, so the trainer turns
it on by itself; with gates that refuse nothing on this data, off is safe to measure).

    python benchmarks/train_ddp.py --data ../shared/data --nproc 2 --find-unused-off
    python benchmarks/train_ddp.py --data ../shared/data --epochs 1 --limit 200   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "av_digits" / "fused.yaml"


def subset(paths: dict[str, Path], limit: int | None, work: Path) -> dict[str, Path]:
    """``limit`` rows of each split, evenly spread (all of them without a limit)."""
    if not limit:
        return paths
    out = {}
    for split, path in paths.items():
        if not path.name.endswith(".jsonl"):
            out[split] = path
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        lines = lines[:: max(1, len(lines) // limit)][:limit]  # spread over the (sorted) labels
        out[split] = path.parent / f"{path.stem}.some{limit}.jsonl"
        out[split].write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return out


def run(
    name: str, config: dict[str, Any], paths: dict[str, Path], work: Path, **how: Any
) -> dict[str, Any]:
    """Train one way (``nproc``, ``find_unused``) and measure it."""
    from polyfuse.core.config import Config
    from polyfuse.evaluation import evaluate
    from polyfuse.train.distributed import DDPOptions
    from polyfuse.train.parallel import train_local
    from polyfuse.train.tasks import TrainRequest

    out = work / "runs" / name
    req = TrainRequest(
        Config.from_dict(config),
        paths["train"],
        paths["val"],
        out,
        progress=False,
        reference=False,  # no monitoring profile: it is not training time
        ddp=DDPOptions(find_unused=how["find_unused"]),
    )
    start = time.perf_counter()
    summary = train_local(req, how["nproc"], logging.WARNING)
    wall = time.perf_counter() - start
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").open(encoding="utf-8")]
    seconds = [e["seconds"] for e in epochs]
    test = evaluate(out, paths["test"], progress=False, device="cpu").metrics["accuracy"]
    row = {
        "run": name,
        "processes": how["nproc"],
        "find_unused": how["find_unused"],
        "epochs": len(epochs),
        "first_epoch_s": round(seconds[0], 2),
        "epoch_s": round(statistics.median(seconds[1:] or seconds), 2),
        "wall_s": round(wall, 1),
        "val_accuracy": round(float(summary.figures.get("accuracy", 0.0)), 4),
        "test_accuracy": round(float(test), 4),
    }
    print(
        f"  {name:<28} epoch {row['epoch_s']:.2f} s (first {row['first_epoch_s']:.2f} s), "
        f"wall {row['wall_s']:.0f} s, val {row['val_accuracy']:.3f}, "
        f"test {row['test_accuracy']:.3f}",
        flush=True,
    )
    return row


def render(rows: list[dict[str, Any]]) -> str:
    """Markdown table with the speed-up over the one-process run."""
    base = rows[0]["epoch_s"]
    lines = [
        "| run | processes | s / epoch | speed-up | wall s | val acc | test acc |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['processes']} | {r['epoch_s']:.2f} | {base / r['epoch_s']:.2f}x "
            f"| {r['wall_s']:.0f} | {r['val_accuracy']:.3f} | {r['test_accuracy']:.3f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--work", default="/tmp/polyfuse-bench/train_ddp")
    parser.add_argument("--variant", default="clean")
    parser.add_argument("--nproc", type=int, default=2, help="processes of the DDP run")
    parser.add_argument("--epochs", type=int, help="override the config's epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="N rows of each split (smoke runs)")
    parser.add_argument(
        "--find-unused-off",
        action="store_true",
        help="add a DDP run with find_unused_parameters off",
    )
    parser.add_argument("--json", dest="json_out", help="write the rows here")
    args = parser.parse_args()

    from polyfuse.datasets.av_digits import AVDigitsSpec, build

    work = Path(args.work)
    paths = build(args.data, work / args.variant, AVDigitsSpec(args.variant), progress=False)
    paths = subset(paths, args.limit, work)
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    config["train"].update(seed=args.seed, patience=0, card=False)
    if args.epochs:
        config["train"]["epochs"] = args.epochs
    runs: list[tuple[str, dict[str, Any]]] = [
        ("1 process", {"nproc": 1, "find_unused": None}),
        (f"{args.nproc} processes", {"nproc": args.nproc, "find_unused": None}),
    ]
    if args.find_unused_off:
        runs.append(
            (f"{args.nproc} processes, unused off", {"nproc": args.nproc, "find_unused": False})
        )
    print(f"AV-digits {args.variant}, {config['train']['epochs']} epochs, seed {args.seed}")
    rows = [run(name, config, paths, work, **how) for name, how in runs]
    print()
    print(render(rows))
    if args.json_out:
        report = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "rows": rows}
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
