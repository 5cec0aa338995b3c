"""``polyfuse train``: train a config on manifests and write an artifact."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from polyfuse.cli.common import EXIT_OK, load_config

if TYPE_CHECKING:
    from polyfuse.train import TrainRequest, TrainSummary


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
    ddp = p.add_argument_group(
        "data-parallel training (DistributedDataParallel; multiclass, multilabel, regression)"
    )
    ddp.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="train in N local processes (gloo on CPU, NCCL with one GPU each); the "
        "effective batch is train.batch_size x N. Under torchrun leave it out",
    )
    ddp.add_argument(
        "--ddp-timeout",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="a rank that waits longer than this for the others fails the run (default 1800)",
    )
    ddp.add_argument(
        "--ray", action="store_true", help="train with Ray Train on --nproc workers (needs ray)"
    )
    ddp.add_argument(
        "--ray-address", metavar="ADDR", help="Ray cluster to join (default: start a local one)"
    )
    ddp.add_argument(
        "--ray-storage",
        metavar="PATH",
        help="Ray Train's run folder (default ~/ray_results; shared storage on a cluster)",
    )


def train(args: argparse.Namespace) -> int:
    """Train a config on manifests and write an artifact (the trainer comes from TRAINERS)."""
    from polyfuse.core.config import Config
    from polyfuse.train import TrainRequest
    from polyfuse.train.distributed import DDPOptions

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
        ddp=DDPOptions(timeout_s=args.ddp_timeout),
    )
    summary = _run(request, args)
    if summary is None:
        return EXIT_OK
    width = max(12, *(len(k) for k in summary))
    lines = (f"{k:>{width}}: {v}" for k, v in summary.items())
    print(json.dumps(summary) if args.json else "\n".join(lines))
    return EXIT_OK


def _run(request: TrainRequest, args: argparse.Namespace) -> dict[str, float | int | str] | None:
    """The summary of the run the flags ask for; None on ranks other than 0 of a run
    torchrun started (rank 0 prints)."""
    from polyfuse.core.errors import ConfigError
    from polyfuse.train import trainer_for
    from polyfuse.train.distributed import world_from_env

    level = logging.getLogger().getEffectiveLevel()
    world = world_from_env()
    summary: TrainSummary
    if args.ray:
        from polyfuse.train.parallel import train_ray

        summary = train_ray(request, args.nproc, args.ray_address, level, args.ray_storage)
    elif world.distributed:  # torchrun (or another launcher) started this process
        if args.nproc > 1:
            raise ConfigError(
                "--nproc",
                f"this process is rank {world.rank} of {world.size} already",
                hint="leave --nproc out under torchrun (its --nproc-per-node sets it)",
            )
        from polyfuse.train.parallel import worker

        summary = worker(request, level)
        if not world.is_main:
            return None
    elif args.nproc != 1:
        from polyfuse.train.parallel import train_local

        summary = train_local(request, args.nproc, level)
    else:
        summary = trainer_for(request.config.task)(request)
    return summary.to_dict()
