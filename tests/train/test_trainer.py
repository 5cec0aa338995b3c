"""Training runs end to end on synthetic data: logs, determinism, resume, bad rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from polyfuse.core.config import Config
from polyfuse.core.errors import InvalidInputError
from polyfuse.inference.predict import Predictor
from polyfuse.train import Trainer
from tests.conftest import SMALL_CONFIG


def _config(**train: Any) -> Config:
    return Config.from_dict({**SMALL_CONFIG, "train": {**SMALL_CONFIG["train"], **train}})


def test_training_writes_artifact_and_jsonl_log(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    train, val = synthetic(48)
    result = Trainer(_config(epochs=4), tmp_path / "run", progress=False).fit(train, val)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4]
    for key in (
        "train_loss",
        "train_loss/image",
        "train_loss/audio",
        "val_loss",
        "val_accuracy",
        "val_macro_f1/text",
        "val_macro_f1@audio",
        "selection_score",
        "lr",
        "seconds",
    ):
        assert key in lines[-1]
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    assert result.metrics["accuracy"] > 0.6, "the synthetic task is easy"
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_bf16_autocast_path_trains(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    train, val = synthetic(24)
    result = Trainer(_config(epochs=1, precision="bf16"), tmp_path / "run", progress=False).fit(
        train, val
    )
    assert result.history[0]["train_loss"] > 0 and result.metrics["n"] == 6


def test_same_seed_same_run(synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path) -> None:
    train, val = synthetic(32)
    for name in ("a", "b"):
        Trainer(_config(epochs=2), tmp_path / name, progress=False).fit(train, val)
    wa, wb = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("a", "b"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    la, lb = ((tmp_path / n / "metrics.jsonl").read_text().splitlines() for n in ("a", "b"))
    strip = [{k: v for k, v in json.loads(x).items() if "seconds" not in k} for x in la]
    assert strip == [{k: v for k, v in json.loads(x).items() if "seconds" not in k} for x in lb]


def test_resume_after_interruption_reaches_the_same_weights(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, val = synthetic(32)
    config = _config(epochs=4, patience=0)
    Trainer(config, tmp_path / "full", progress=False).fit(train, val)

    original = Trainer._checkpoint

    def stop_after_two(self: Trainer, run: Any) -> None:
        original(self, run)
        if run.state.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_checkpoint", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, tmp_path / "resumed", progress=False).fit(train, val)
    monkeypatch.setattr(Trainer, "_checkpoint", original)
    Trainer(config, tmp_path / "resumed", progress=False, resume=True).fit(train, val)
    full = load_file(str(tmp_path / "full" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert all(torch.allclose(full[k], resumed[k], atol=1e-6) for k in full)
    assert len((tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()) == 4


def test_bad_rows_are_skipped_and_reported(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    train, val = synthetic(32)
    (train.parent / "img0.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    (train.parent / "a3.wav").unlink()
    with train.open("a") as f:
        f.write("{broken json\n")
    result = Trainer(_config(epochs=1), tmp_path / "run", progress=False).fit(train, val)
    reported = [
        json.loads(x) for x in (tmp_path / "run" / "bad_rows.jsonl").read_text().splitlines()
    ]
    reasons = {r["row"]: r["reason"] for r in reported}
    assert "decode" in reasons[1] and "file not found" in reasons[4]
    assert any("invalid JSON" in r for r in reasons.values())
    assert len(result.bad_rows) == len(reported) == 3


def test_fail_policy_stops_at_the_first_bad_row(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    train, val = synthetic(32)
    (train.parent / "a3.wav").unlink()
    with pytest.raises(InvalidInputError, match=r"a3\.wav"):
        Trainer(_config(epochs=1, on_bad_row="fail"), tmp_path / "run", progress=False).fit(
            train, val
        )


def test_early_stopping_when_nothing_improves(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    train, val = synthetic(32)
    result = Trainer(
        _config(epochs=10, lr=1e-12, patience=2, metric="accuracy"),
        tmp_path / "run",
        progress=False,
    ).fit(train, val)
    assert len(result.history) == result.best_epoch + 2 < 10, "stops after `patience` flat epochs"


def test_without_validation_a_tenth_is_held_out(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    train, _ = synthetic(40)
    result = Trainer(_config(epochs=1), tmp_path / "run", progress=False).fit(train)
    assert result.metrics["n"] == 3 and result.artifact.metrics["train_rows"] == 27


@pytest.mark.parametrize("task", ["multilabel", "regression"])
def test_multilabel_and_regression_tasks(tmp_path: Path, task: str) -> None:
    from tests.conftest import relabel, write_manifest, write_synthetic

    rows = relabel(write_synthetic(tmp_path / "data", 40), task)
    train = write_manifest(tmp_path / "data" / "train.jsonl", rows[:30])
    val = write_manifest(tmp_path / "data" / "val.jsonl", rows[30:])
    raw = {**SMALL_CONFIG, "task": task, "train": {**SMALL_CONFIG["train"], "epochs": 4}}
    result = Trainer(Config.from_dict(raw), tmp_path / "run", progress=False).fit(train, val)
    pred = Predictor.load(result.path, device="cpu").predict({"text": "red apple number 1"})
    if task == "multilabel":
        assert set(result.artifact.task.labels) == {"c0", "c1", "c2", "even"}
        assert isinstance(pred.label, list) and result.metrics["micro_f1"] > 0.3
    else:
        assert isinstance(pred.label, float) and result.metrics["rmse"] < 1.5
