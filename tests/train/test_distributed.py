"""Data-parallel plumbing: who a process is, batch sharding, and failing ranks that surface
as typed errors instead of hangs (real processes, gloo on loopback)."""

from __future__ import annotations

import datetime
import os
import time

import pytest
import torch

from polyfuse.core.errors import ConfigError, TrainingError
from polyfuse.data.sampler import LengthGroupedBatchSampler
from polyfuse.train.distributed import (
    SINGLE,
    Collective,
    ShardedBatchSampler,
    World,
    launch,
    place,
    threads_per_process,
    world_from_env,
)


def test_the_environment_of_a_launcher_names_the_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    assert world_from_env() == SINGLE and not SINGLE.distributed and SINGLE.is_main
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    world = world_from_env()
    assert world == World(rank=3, size=4, local_rank=1, local_size=2)
    assert world.distributed and not world.is_main


def test_rank_0_keeps_the_single_process_seed() -> None:
    assert World(0, 2).seed(7) == 7
    assert len({World(r, 4).seed(7) for r in range(4)}) == 4


def test_local_ranks_share_the_cpu_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert threads_per_process(World(0, 4, 0, 4)) == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_per_process(World(0, 4, 0, 4)) == 3


@pytest.mark.parametrize("rows", [10, 40, 41, 75])
@pytest.mark.parametrize("size", [2, 3])
def test_shards_split_the_epochs_batches_evenly_and_cover_them(rows: int, size: int) -> None:
    lengths = [(i * 7) % 13 for i in range(rows)]

    def shards(epoch: int) -> list[list[list[int]]]:
        out = []
        for rank in range(size):
            inner = LengthGroupedBatchSampler(lengths, 4, shuffle=True, seed=5, group=3)
            sampler = ShardedBatchSampler(inner, World(rank, size))
            sampler.set_epoch(epoch)
            out.append(list(sampler))
            assert len(out[-1]) == len(sampler)
        return out

    epoch1 = shards(1)
    assert len({len(s) for s in epoch1}) == 1, "every rank runs the same number of steps"
    whole = LengthGroupedBatchSampler(lengths, 4, shuffle=True, seed=5, group=3)
    whole.set_epoch(1)
    assert {tuple(b) for s in epoch1 for b in s} == {tuple(b) for b in whole}
    assert sum(len(s) for s in epoch1) - len(whole) < size, "only the padding repeats"
    assert epoch1 == shards(1) and epoch1 != shards(2), "deterministic per epoch"


def test_more_processes_than_gpus_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert place(torch.device("cpu"), World(1, 2, 1, 2)) == torch.device("cpu")
    assert place(torch.device("cuda"), World(0, 2, 0, 2)) == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match="cuda:1") as info:
        place(torch.device("cuda"), World(1, 2, 1, 2))
    assert "one process per GPU" in (info.value.hint or "")


def test_collectives_are_identities_in_one_process() -> None:
    sync = Collective(SINGLE, torch.device("cpu"))
    lengths = [3, 1]
    sync.max_into(lengths)
    sync.barrier()
    assert sync.broadcast({"a": 1}) == {"a": 1} and sync.gather(5) == [5]
    assert sync.sum([1.5, 2]) == [1.5, 2.0] and sync.all(False) is False and lengths == [3, 1]


# --------------------------------------------------------------- real processes (gloo)
def _join(timeout_s: float) -> Collective:
    torch.distributed.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return Collective(world_from_env(), torch.device("cpu"))


def _collectives() -> dict[str, object]:
    sync = _join(30)
    rank = sync.world.rank
    lengths = [rank, 5 - rank, 0]
    sync.max_into(lengths)
    out = {
        "lengths": lengths,
        "sum": sync.sum([1.0, rank]),
        "all": sync.all(rank == 0),
        "broadcast": sync.broadcast(f"from {rank}"),
        "gather": sync.gather(rank * 10),
    }
    torch.distributed.destroy_process_group()
    return out


def _rank_1_raises() -> None:
    sync = _join(60)
    if sync.world.rank == 1:
        raise ValueError("rank one cannot read its shard")
    sync.barrier()  # rank 0 waits here until the launcher stops it


def _rank_1_stalls() -> None:
    sync = _join(2)
    if sync.world.rank == 1:
        time.sleep(60)  # never joins the collective
    sync.sum([1.0])  # rank 0 gives up after the 2 s timeout


def test_collectives_across_two_processes() -> None:
    out = launch(_collectives, (), 2)
    assert out == {
        "lengths": [1, 5, 0],
        "sum": [2.0, 1.0],
        "all": False,
        "broadcast": "from 0",
        "gather": [0, 10],
    }


def test_a_failing_rank_is_a_typed_error_not_a_hang() -> None:
    start = time.perf_counter()
    with pytest.raises(TrainingError, match="rank 1 of 2 failed") as info:
        launch(_rank_1_raises, (), 2)
    assert time.perf_counter() - start < 30
    assert "--ddp-timeout" in (info.value.hint or "")


def test_a_rank_that_stops_answering_fails_the_run_after_the_timeout() -> None:
    start = time.perf_counter()
    with pytest.raises(TrainingError, match="rank 0 of 2 failed"):
        launch(_rank_1_stalls, (), 2)
    assert time.perf_counter() - start < 30
