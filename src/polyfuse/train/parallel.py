"""Launchers of a data-parallel training run: N local processes (``--nproc``) and Ray Train
(``--ray``). ``torchrun`` needs no launcher here: each process it starts runs the plain
``polyfuse train``, which reads its rank from the environment.

Each worker runs the task's trainer (`polyfuse.train.tasks.classify`) with the launcher's
environment; `polyfuse.train.distributed` and the `Trainer` do the rest.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from polyfuse.core.errors import ConfigError, TrainingError
from polyfuse.train.distributed import launch, threads_per_process, world_from_env
from polyfuse.train.tasks import DATA_PARALLEL, TrainRequest, TrainSummary, classify

#: rank 0's `TrainSummary` in the checkpoint a Ray Train worker reports
SUMMARY = "summary.json"


def check_parallel(req: TrainRequest, nproc: int, flag: str = "--nproc") -> None:
    """Refuse a data-parallel run the trainers cannot do, before starting processes."""
    if nproc < 1:
        raise ConfigError(flag, f"needs at least 1 process, got {nproc}")
    if req.config.task not in DATA_PARALLEL:
        raise ConfigError(
            flag,
            f"task '{req.config.task}' trains in one process only; data-parallel training "
            f"covers {', '.join(sorted(DATA_PARALLEL))}",
            hint=f"drop {flag}",
        )


def train_local(req: TrainRequest, nproc: int, log_level: int = logging.INFO) -> TrainSummary:
    """Train ``req`` in ``nproc`` local processes (DDP; gloo on CPU, NCCL on CUDA, where
    local rank r uses ``cuda:r``) and return rank 0's summary.

    Raises:
        TrainingError: a rank failed (its error named); the others were stopped.
    """
    check_parallel(req, nproc)
    if nproc == 1:
        return classify(req)
    return launch(worker, (req, log_level), nproc)


def worker(req: TrainRequest, log_level: int) -> TrainSummary:
    """One local or torchrun-style process: logging and CPU threads for its rank, then train.

    Ranks other than 0 log warnings only, prefixed with their rank.
    """
    import torch

    world = world_from_env()
    prefix = "" if world.is_main else f"[rank {world.rank}] "
    root = logging.getLogger()
    if not root.handlers:  # a spawned worker; under torchrun the CLI set logging up
        logging.basicConfig(format=prefix + "%(message)s")
    root.setLevel(log_level if world.is_main else max(log_level, logging.WARNING))
    torch.set_num_threads(threads_per_process(world))
    return classify(req)


# ---------------------------------------------------------------------- Ray Train
def train_ray(
    req: TrainRequest,
    nproc: int,
    address: str | None = None,
    log_level: int = logging.INFO,
    storage: str | None = None,
) -> TrainSummary:
    """Train ``req`` with Ray Train: a `TorchTrainer` of ``nproc`` workers (one GPU each when
    the config's device is CUDA, or ``auto`` on a cluster with GPUs) on the Ray cluster at
    ``address`` (default: a local one).

    The artifact folder is written by rank 0's worker: on a cluster, give ``--out`` on
    storage every node sees, and manifests every node can read. ``storage`` is Ray Train's
    own run folder (``RunConfig.storage_path``, default ``~/ray_results``; shared storage
    on a cluster), where rank 0's summary travels back.

    Raises:
        TrainingError: the run failed.
    """
    check_parallel(req, nproc, "--ray")
    import ray

    started = not ray.is_initialized()
    if started:  # "local": a fresh instance, never another user's cluster found by chance
        ray.init(address=address or "local", include_dashboard=False)
    try:
        return _fit_ray(req, nproc, log_level, storage)
    finally:
        if started:
            ray.shutdown()


def _fit_ray(req: TrainRequest, nproc: int, log_level: int, storage: str | None) -> TrainSummary:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    device = req.config.train.device
    gpu = device.startswith("cuda") or (
        device == "auto" and ray.cluster_resources().get("GPU", 0) >= 1
    )
    timeout = int(req.ddp.timeout_s) if req.ddp else 1800
    out = Path(req.out).resolve()
    trainer = TorchTrainer(
        ray_worker,
        train_loop_config={"request": req, "log_level": log_level},
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo", timeout_s=timeout),
        scaling_config=ScalingConfig(num_workers=nproc, use_gpu=gpu),
        run_config=RunConfig(
            name=f"polyfuse-{out.name}-{uuid.uuid4().hex[:6]}", storage_path=storage
        ),
    )
    try:
        result = trainer.fit()
    except Exception as exc:  # Ray wraps worker errors in its own types
        raise TrainingError(
            f"the Ray Train run failed: {str(exc).strip().splitlines()[-1]}",
            hint="the workers' logs above have the full error",
        ) from exc
    if result.checkpoint is None:
        raise TrainingError("the Ray Train run ended without rank 0's summary")
    with result.checkpoint.as_directory() as folder:
        figures = json.loads((Path(folder) / SUMMARY).read_text(encoding="utf-8"))
    return TrainSummary(Path(figures.pop("artifact")), figures)


def ray_worker(loop_config: dict[str, Any]) -> None:
    """A Ray Train worker: its rank as torchrun would give it, then `worker`; reports the
    summary (rank 0's is the run's result)."""
    import ray.train

    ctx = ray.train.get_context()
    os.environ.update(
        RANK=str(ctx.get_world_rank()),
        WORLD_SIZE=str(ctx.get_world_size()),
        LOCAL_RANK=str(ctx.get_local_rank()),
        LOCAL_WORLD_SIZE=str(ctx.get_local_world_size()),
    )
    summary = worker(loop_config["request"], loop_config["log_level"])
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if ctx.get_world_rank() == 0:  # the summary travels as a (tiny) Ray checkpoint
            (Path(folder) / SUMMARY).write_text(json.dumps(summary.to_dict()), encoding="utf-8")
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(summary.to_dict(), checkpoint=checkpoint)
