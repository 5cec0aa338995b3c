"""Data-parallel training end to end: two real CPU processes (gloo on loopback) train the
synthetic task from the command line, match one process within noise, and resume."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from polyfuse.cli import main
from polyfuse.core.config import Config
from polyfuse.core.errors import ConfigError, TrainingError
from polyfuse.inference.predict import Predictor
from polyfuse.train import Trainer
from polyfuse.train.distributed import launch
from polyfuse.train.parallel import check_parallel, train_local, train_ray, worker
from polyfuse.train.tasks import TrainRequest
from tests.conftest import SMALL_CONFIG


def _raw(**train: Any) -> dict[str, Any]:
    """SMALL_CONFIG on CPU (gloo), also on a machine with one GPU (NCCL needs one per rank)."""
    return {**SMALL_CONFIG, "train": {**SMALL_CONFIG["train"], "device": "cpu", **train}}


def _stop_after_epoch_1(req: TrainRequest, level: int) -> None:
    """A worker whose run dies right after epoch 1's checkpoint (on every rank)."""
    from polyfuse.train.trainer import Trainer as Patched

    original = Patched._checkpoint

    def checkpoint_then_stop(self: Patched, run: Any) -> None:
        original(self, run)
        if run.state.epoch == 1:
            raise RuntimeError("stopped after epoch 1")

    Patched._checkpoint = checkpoint_then_stop  # type: ignore[method-assign]
    worker(req, level)


def test_two_processes_train_from_the_cli_like_one_within_noise(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    train, val = synthetic(80, missing=False)  # every modality in every row
    raw = _raw(epochs=4, patience=0)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    out = tmp_path / "ddp"
    argv = ["train", str(config_file), "--train", str(train), "--val", str(val)]
    assert main([*argv, "--out", str(out), "--nproc", "2", "-q", "--json"]) == 0

    one = Trainer(Config.from_dict(raw), tmp_path / "one", progress=False).fit(train, val)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4], "rank 0 alone writes the log"
    ddp_accuracy = records[-1]["val_accuracy"]
    assert ddp_accuracy >= 0.8 and one.metrics["accuracy"] >= 0.8
    assert abs(ddp_accuracy - one.metrics["accuracy"]) <= 0.15
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=False)["world_size"] == 2

    predictor = Predictor.load(out)  # the artifact is the single-process format
    rows = [json.loads(x) for x in val.read_text().splitlines()][:4]
    samples = [{k: v for k, v in r.items() if k in predictor.modalities} for r in rows]
    answers = predictor.predict(samples, base_dir=val.parent)
    assert sum(a.label == r["label"] for a, r in zip(answers, rows, strict=True)) >= 3


def test_a_ddp_run_resumes_after_epoch_1_to_the_weights_of_an_uninterrupted_torchrun_run(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    train, val = synthetic(48)  # rows lacking a modality: find_unused_parameters on
    config = Config.from_dict(_raw(epochs=3, patience=0))

    def request(out: str, resume: bool = False) -> TrainRequest:
        return TrainRequest(config, train, val, tmp_path / out, progress=False, resume=resume)

    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    torchrun = Path(sys.executable).with_name("torchrun")  # the same code path as --nproc
    args = ["--standalone", "--nproc-per-node", "2", "-m", "polyfuse", "train", str(config_file)]
    args += ["--train", str(train), "--val", str(val), "--out", str(tmp_path / "full"), "-q"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([str(torchrun), *args], check=True, env=env, timeout=300)
    with pytest.raises(TrainingError, match="stopped after epoch 1"):
        launch(_stop_after_epoch_1, (request("resumed"), 30), 2)
    assert len((tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()) == 1
    train_local(request("resumed", resume=True), 2)
    full = load_file(str(tmp_path / "full" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert all(torch.allclose(full[k], resumed[k], atol=1e-6) for k in full)
    assert len((tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()) == 3

    with pytest.raises(TrainingError, match="2 process") as info:
        Trainer(config, tmp_path / "full", progress=False, resume=True).fit(train, val)
    assert "--nproc 2" in (info.value.hint or "")


def test_tasks_outside_the_classifier_trainer_are_refused_before_launching() -> None:
    config = Config.from_dict(_raw())
    req = TrainRequest(config, "train.jsonl", None, "out")
    with pytest.raises(ConfigError, match="--nproc"):
        check_parallel(req, 0)
    other = TrainRequest(dataclasses.replace(config, task="captioning"), "t", None, "o")
    with pytest.raises(ConfigError, match="one process only"):
        check_parallel(other, 2)


@pytest.mark.slow
def test_ray_train_runs_the_same_trainer_on_two_workers(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    pytest.importorskip("ray.train.torch")
    train, val = synthetic(32)
    config = Config.from_dict(_raw(epochs=2))
    req = TrainRequest(config, train, val, tmp_path / "ray_run", progress=False)
    summary = train_ray(req, 2, storage=str(tmp_path / "ray"))
    local = train_local(TrainRequest(config, train, val, tmp_path / "local", progress=False), 2)
    assert summary.artifact == tmp_path / "ray_run"
    assert summary.figures == local.figures, "the same ranks, seeds and shards"
    assert Predictor.load(summary.artifact).modalities == tuple(sorted(SMALL_CONFIG["modalities"]))
