"""Data-parallel training: who this process is, the collectives the trainer needs, batch
sharding, and the local launcher.

One code path for every launcher: `polyfuse train --nproc N` starts N local workers with
torch's elastic launch API (the engine under ``torchrun``), ``torchrun`` starts them on one or
several machines, Ray Train starts them on a Ray cluster; each worker reads who it is from the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``) or adopts a process group its launcher already started (Ray Train), and the
`polyfuse.train.trainer.Trainer` wraps the model in ``DistributedDataParallel`` (gloo on CPU,
NCCL on CUDA).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os
import pickle
import uuid
from collections.abc import Callable, Iterator, MutableSequence, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch.utils.data import Sampler

from polyfuse.core.errors import ConfigError, TrainingError
from polyfuse.data.sampler import LengthGroupedBatchSampler

log = logging.getLogger("polyfuse.train")

T = TypeVar("T")

#: Seconds a collective waits for the other ranks before the run fails (not hangs).
DEFAULT_TIMEOUT_S = 1800.0
#: Seed offset between ranks (a prime, so rank streams never line up with epoch offsets).
RANK_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class World:
    """Who this process is in a data-parallel run.

    Attributes:
        rank: global rank, 0 .. ``size - 1``; rank 0 validates and writes every file.
        size: number of processes (the world size).
        local_rank: rank on this machine (picks the CUDA device).
        local_size: processes on this machine (shares the CPU threads).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: validates, decides early stopping, writes checkpoints, logs and artifacts."""
        return self.rank == 0

    def seed(self, base: int) -> int:
        """This rank's seed derived from ``base`` (rank 0 keeps ``base``, so one process
        draws exactly what a single-process run draws)."""
        return base + RANK_SEED_STRIDE * self.rank


SINGLE = World()


@dataclass(frozen=True)
class DDPOptions:
    """How a data-parallel run behaves (ignored in a single process).

    Attributes:
        timeout_s: seconds a collective waits for the other ranks before the run fails.
        find_unused: DDP's ``find_unused_parameters``; None picks it from the data (on when
            a training row lacks a modality or a quality gate may refuse one, since a batch
            without a modality leaves its encoder, adapter and auxiliary head unused).
    """

    timeout_s: float = DEFAULT_TIMEOUT_S
    find_unused: bool | None = None


def world_from_env() -> World:
    """The `World` a launcher described: torchrun / elastic launch environment variables,
    else an already initialised process group (Ray Train), else a single process."""
    env = os.environ
    if "WORLD_SIZE" in env and "RANK" in env:
        size = int(env["WORLD_SIZE"])
        return World(
            rank=int(env["RANK"]),
            size=size,
            local_rank=int(env.get("LOCAL_RANK", "0")),
            local_size=int(env.get("LOCAL_WORLD_SIZE", str(size))),
        )
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        size = dist.get_world_size()
        return World(dist.get_rank(), size, 0, size)
    return SINGLE


def place(device: torch.device, world: World) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for CUDA runs, else ``device``.

    Raises:
        ConfigError: more local processes than GPUs (NCCL needs one GPU per process).
    """
    if not (world.distributed and device.type == "cuda"):
        return device
    gpus = torch.cuda.device_count()
    if world.local_rank >= gpus:
        raise ConfigError(
            "train.device",
            f"local rank {world.local_rank} needs cuda:{world.local_rank} but this machine "
            f"has {gpus} GPU(s)",
            hint="start at most one process per GPU (--nproc / --nproc-per-node), or train on "
            "CPU with train.device: cpu (gloo)",
        )
    return torch.device("cuda", world.local_rank)


@contextlib.contextmanager
def process_group(world: World, device: torch.device, timeout_s: float) -> Iterator[None]:
    """Join the process group (gloo on CPU, NCCL on CUDA) for the duration of a run; one a
    launcher already started (Ray Train) is adopted and left running."""
    dist = torch.distributed
    if world.distributed and device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL's object collectives use the current device
    if not world.distributed or dist.is_initialized():
        yield
        return
    dist.init_process_group(
        backend="nccl" if device.type == "cuda" else "gloo",
        rank=world.rank,
        world_size=world.size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


class Collective:
    """The few collectives the trainer uses; in a single process each is the identity.

    Args:
        world: this process.
        device: where collective tensors live (CUDA for NCCL, CPU for gloo).
    """

    def __init__(self, world: World, device: torch.device) -> None:
        self.world = world
        self.device = device

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.world.distributed:
            torch.distributed.barrier()

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (any picklable value)."""
        if not self.world.distributed:
            return obj
        box: list[Any] = [obj]
        torch.distributed.broadcast_object_list(box, src=0, device=self._object_device())
        return box[0]  # type: ignore[no-any-return]

    def gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.world.distributed:
            return [obj]
        out: list[Any] = [None] * self.world.size
        torch.distributed.all_gather_object(out, obj)
        return out

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over ranks."""
        if not self.world.distributed:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return [float(v) for v in t.tolist()]

    def all(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank."""
        if not self.world.distributed:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        return bool(t.item())

    def max_into(self, values: MutableSequence[int]) -> None:
        """Replace ``values`` in place by their element-wise maximum over ranks."""
        if not self.world.distributed or not len(values):
            return
        t = torch.tensor(list(values), dtype=torch.int64, device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        values[:] = t.tolist()

    def _object_device(self) -> torch.device | None:
        return self.device if self.device.type == "cuda" else None


class ShardedBatchSampler(Sampler[list[int]]):
    """This rank's share of a `LengthGroupedBatchSampler`'s batches: the DistributedSampler
    idea at batch level.

    Every rank draws the same epoch's batch list (same seed and epoch, same lengths: the
    trainer keeps ``lengths`` equal on all ranks), pads it by repeating its first batches to
    a multiple of the world size, and takes every ``size``-th batch from ``rank``. Every rank
    thus runs the same number of steps (DDP needs it) and every batch of the epoch is trained
    once (the few padded ones twice).
    """

    def __init__(self, inner: LengthGroupedBatchSampler, world: World) -> None:
        self.inner = inner
        self.world = world

    def set_epoch(self, epoch: int) -> None:
        """Change the shuffle of the next iteration deterministically (on every rank alike)."""
        self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return math.ceil(len(self.inner) / self.world.size)

    def __iter__(self) -> Iterator[list[int]]:
        batches = list(self.inner)
        if not batches:
            return iter(())
        extra = -len(batches) % self.world.size
        padded = batches + [batches[i % len(batches)] for i in range(extra)]
        return iter(padded[self.world.rank :: self.world.size])


# ---------------------------------------------------------------------- launching
def threads_per_process(world: World) -> int:
    """CPU threads each local process gets (the cores shared among the local ranks), unless
    ``OMP_NUM_THREADS`` says otherwise."""
    if "OMP_NUM_THREADS" in os.environ:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return max(1, (os.cpu_count() or 1) // max(1, world.local_size))


def launch(fn: Callable[..., T], args: tuple[Any, ...], nproc: int) -> T:
    """Run ``fn(*args)`` in ``nproc`` local processes and return rank 0's result.

    Uses torch's elastic launch API (what ``torchrun --standalone`` runs): a c10d rendezvous
    on a free loopback port sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_*`` in each
    spawned worker. When one worker fails, the agent stops the others and the failure is
    raised here as a `TrainingError` naming the rank and its error (no hang).

    Args:
        fn: a module-level (picklable) function.
        args: its arguments (picklable).
        nproc: number of processes.

    Raises:
        TrainingError: a worker failed.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"polyfuse-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )
    try:
        results = elastic_launch(config, fn)(*args)
    except ChildFailedError as exc:
        raise _failure(exc, nproc) from None
    return results[0]  # type: ignore[no-any-return]


def _failure(exc: Any, nproc: int) -> TrainingError:
    """The first failed rank's error as a `TrainingError`."""
    rank, failure = exc.get_first_failure()
    message: Any = failure.message
    while isinstance(message, dict):  # the error file a worker's @record wrote
        message = message.get("message", "")
    text = str(message).strip().splitlines()
    detail = text[-1] if text else f"exit code {failure.exitcode}"
    if failure.exitcode < 0 and not text:
        detail = f"killed by signal {-failure.exitcode}"
    return TrainingError(
        f"rank {rank} of {nproc} failed: {detail}",
        hint="the rank's log above has the full error; a rank that stops answering fails the "
        "others after --ddp-timeout seconds",
    )


def picklable(obj: object, what: str) -> None:
    """Refuse early, in the launching process, what cannot travel to spawned workers."""
    try:
        pickle.dumps(obj)
    except Exception as exc:  # pickling raises many types
        raise TrainingError(
            f"{what} cannot be sent to worker processes ({exc})",
            hint="pass paths and plain values, not open objects",
        ) from exc
