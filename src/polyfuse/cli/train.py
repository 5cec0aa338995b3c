"""``polyfuse train``: train a config on manifests and write an artifact."""

from __future__ import annotations

import argparse
import json
from typing import Any

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
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def train(args: argparse.Namespace) -> int:
    """Train a config on manifests and write an artifact."""
    from polyfuse.core.config import Config
    from polyfuse.train import Trainer

    config = Config.from_dict(load_config(args.config, args.set))
    if config.task == "contrastive":
        return _train_alignment(config, args)
    if config.task == "captioning":
        from polyfuse.core.errors import ConfigError
        from polyfuse.models.captioner import train_captioning

        if args.val is None:
            raise ConfigError("--val", "captioning reports BLEU / CIDEr on a validation manifest")
        done = train_captioning(config, args.train, args.val, args.out, progress=not args.quiet)
        lines = [f"{k:>16}: {v}" for k, v in done.items()]
        print(json.dumps(done) if args.json else "\n".join(lines))
        return EXIT_OK
    result = Trainer(config, args.out, progress=not args.quiet, resume=args.resume).fit(
        args.train, args.val
    )
    summary: dict[str, Any] = {
        "artifact": str(result.path),
        "best_epoch": result.best_epoch,
        **{k: result.metrics[k] for k in ("accuracy", "macro_f1", "rmse") if k in result.metrics},
        "bad_rows": len(result.bad_rows),
    }
    print(
        json.dumps(summary) if args.json else "\n".join(f"{k:>12}: {v}" for k, v in summary.items())
    )
    return EXIT_OK


def _train_alignment(config: Any, args: argparse.Namespace) -> int:
    """``task: contrastive``: alignment adapters on frozen encoders."""
    from polyfuse.core.errors import ConfigError
    from polyfuse.retrieval.pipeline import train_alignment

    if args.val is None:
        raise ConfigError("--val", "contrastive training picks its epoch on a validation manifest")
    result = train_alignment(config, args.train, args.val, args.out, progress=not args.quiet)
    summary: dict[str, Any] = {"artifact": str(result.path), "best_epoch": result.best_epoch}
    for direction, values in result.metrics.items():
        summary.update({f"val {direction} {k}": v for k, v in values.items()})
    print(
        json.dumps(summary) if args.json else "\n".join(f"{k:>28}: {v}" for k, v in summary.items())
    )
    return EXIT_OK
