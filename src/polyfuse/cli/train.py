"""``polyfuse train``: train a config on manifests and write an artifact."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from polyfuse.cli.common import EXIT_OK, load_config


def train_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``train``."""
    p.add_argument("config", help="YAML config")
    p.add_argument("--train", required=True, metavar="MANIFEST", help="training manifest")
    p.add_argument(
        "--val", metavar="MANIFEST", help="validation manifest (default: hold out 10%% of --train)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="artifact folder")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoints")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=5",
    )
    p.add_argument(
        "--reference",
        metavar="MANIFEST",
        help="data of the monitoring reference profile (default: the validation manifest)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def train(args: argparse.Namespace) -> int:
    """Train a config on manifests and write an artifact (the trainer comes from TRAINERS)."""
    from polyfuse.core.config import Config
    from polyfuse.train import TrainRequest, trainer_for

    config = Config.from_dict(load_config(args.config, args.set))
    request = TrainRequest(
        config,
        args.train,
        args.val,
        args.out,
        progress=not args.quiet,
        resume=args.resume,
        reference=args.reference,
        name=Path(args.config).stem,
    )
    summary = trainer_for(config.task)(request).to_dict()
    width = max(12, *(len(k) for k in summary))
    lines = (f"{k:>{width}}: {v}" for k, v in summary.items())
    print(json.dumps(summary) if args.json else "\n".join(lines))
    return EXIT_OK
