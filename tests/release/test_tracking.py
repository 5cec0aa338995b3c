"""Experiment tracking: what is logged (names, numbers, parameters), tracking.json, and real
MLflow runs on a sqlite store in a temporary folder (start, epochs, finish, resume, failure,
and the classifier trainer tracking itself)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from polyfuse.core.config import Config
from polyfuse.core.errors import DependencyError, TrackingError
from polyfuse.release.tracking import (
    ARTIFACT_PATH,
    MlflowTracker,
    NoTracker,
    TrackingRecord,
    check_reachable,
    flatten_params,
    make_tracker,
    metric_name,
    mlflow_client,
    numeric,
    safe_uri,
    tracked,
)
from tests.conftest import SMALL_CONFIG

pytest.importorskip("mlflow")

CONFIG: dict[str, Any] = {
    **SMALL_CONFIG,
    "modalities": {"text": SMALL_CONFIG["modalities"]["text"]},
    "train": {**SMALL_CONFIG["train"], "epochs": 2, "tracking": "mlflow"},
}


# ------------------------------------------------------------------ what is logged
@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("val_accuracy", "val_accuracy"),
        ("train_loss/image", "train_loss/image"),
        ("val_accuracy@image", "val_accuracy/only_image"),
        ("val R@5", "val R/only_5"),
        ("val_loss@image+text", "val_loss/only_image_text"),
    ],
)
def test_record_keys_become_valid_mlflow_names(key: str, name: str) -> None:
    assert metric_name(key) == name


def test_numeric_keeps_finite_numbers_only() -> None:
    record = {"a": 1, "b": 0.5, "c": True, "d": [1], "e": "x", "f": float("nan"), "g@m": 2}
    assert numeric(record) == {"a": 1.0, "b": 0.5, "g/only_m": 2.0}


def test_flatten_params_dots_nested_keys_and_writes_json_values() -> None:
    params = flatten_params({"model": {"dim": 16, "fusion": {"name": "gated"}}, "x": [1, 2]})
    assert params == {"model.dim": "16", "model.fusion.name": "gated", "x": "[1, 2]"}
    assert flatten_params({"empty": {}, "none": None}) == {"empty": "{}", "none": "null"}
    assert len(flatten_params({"long": "a" * 9000})["long"]) == 6000


def test_tracking_record_round_trips_and_a_broken_file_reads_as_none(tmp_path: Path) -> None:
    record = TrackingRecord("mlflow", "sqlite:///x.db", "1", "abc")
    record.save(tmp_path)
    assert TrackingRecord.load(tmp_path) == record
    assert TrackingRecord.load(tmp_path / "absent") is None
    (tmp_path / "tracking.json").write_text('{"backend": "mlflow"}')
    assert TrackingRecord.load(tmp_path) is None


def test_make_tracker_follows_the_config(tmp_path: Path) -> None:
    off = Config.from_dict({**CONFIG, "train": {"epochs": 1}})
    assert isinstance(make_tracker(off, tmp_path), NoTracker)
    on = Config.from_dict(CONFIG)
    tracker = make_tracker(on, tmp_path, name="digits")
    assert isinstance(tracker, MlflowTracker) and tracker.experiment == "digits"
    named = Config.from_dict({**CONFIG, "train": {**CONFIG["train"], "experiment": "exp"}})
    assert make_tracker(named, tmp_path, name="digits").experiment == "exp"  # type: ignore[attr-defined]
    assert make_tracker(on, tmp_path).experiment == "polyfuse"  # type: ignore[attr-defined]


def test_config_refuses_an_unknown_tracking_backend() -> None:
    from polyfuse.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train\.tracking"):
        Config.from_dict({**CONFIG, "train": {"tracking": "wandb"}})


# ------------------------------------------------------------------ connection errors
def test_an_unreachable_server_fails_at_once_with_a_hint() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens
    with pytest.raises(TrackingError, match="cannot reach the MLflow tracking server") as exc:
        check_reachable(f"http://127.0.0.1:{port}")
    assert "MLFLOW_TRACKING_URI" in str(exc.value.hint)
    check_reachable("sqlite:///anything.db")  # not a server: nothing to probe


def test_messages_never_show_a_password() -> None:
    assert safe_uri("https://me:secret@mlflow.example:8443/x") == (
        "https://me:***@mlflow.example:8443/x"
    )
    assert safe_uri("sqlite:///a.db") == "sqlite:///a.db"


def test_without_mlflow_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(DependencyError) as exc:
        mlflow_client("sqlite:///x.db")
    assert exc.value.hint == "pip install 'polyfuse[mlflow]'"


# ------------------------------------------------------------------ real runs (sqlite)
def _artifact(folder: Path) -> Path:
    """A folder shaped like an artifact, with training state that is never published."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.pt").write_bytes(b"state")
    (folder / "monitor").mkdir()
    (folder / "monitor" / "reference.json").write_text("{}")
    (folder / "artifact.json").write_text(
        json.dumps({"format": 1, "kind": "classifier", "task": "multiclass", "modalities": {}})
    )
    return folder


def _files(client: Any, run_id: str, path: str = ARTIFACT_PATH) -> set[str]:
    out: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        out |= _files(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def test_a_run_records_params_epochs_and_the_artifact(mlflow_store: str, tmp_path: Path) -> None:
    out = _artifact(tmp_path / "art")
    with tracked(Config.from_dict(CONFIG), out, name="digits") as tracker:
        tracker.log_epoch({"epoch": 1, "train_loss": 0.9, "val_accuracy@text": 0.5}, 1)
        tracker.log_epoch({"epoch": 2, "train_loss": 0.4, "warnings": ["x"]}, 2)
        tracker.finish(out, {"best_epoch": 2, "accuracy": 0.75})
    record = TrackingRecord.load(out)
    assert record is not None and record.tracking_uri == mlflow_store
    client, _ = mlflow_client()
    run = client.get_run(record.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "art"
    assert client.get_experiment(run.info.experiment_id).name == "digits"
    assert run.data.params["model.fusion.name"] == "gated"
    assert run.data.params["train.tracking"] == "mlflow"
    history = client.get_metric_history(record.run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(1, 0.9), (2, 0.4)]
    assert run.data.metrics["val_accuracy/only_text"] == 0.5
    assert run.data.metrics["accuracy"] == 0.75
    assert run.data.tags["polyfuse.kind"] == "classifier"
    assert _files(client, record.run_id) == {
        "artifact/artifact.json",
        "artifact/monitor/reference.json",
        "artifact/tracking.json",
    }  # checkpoints/ is training state, not the model


def test_a_failed_training_marks_the_run_failed(mlflow_store: str, tmp_path: Path) -> None:
    out = tmp_path / "art"
    with pytest.raises(RuntimeError), tracked(Config.from_dict(CONFIG), out):
        raise RuntimeError("diverged")
    record = TrackingRecord.load(out)
    assert record is not None
    client, _ = mlflow_client()
    assert client.get_run(record.run_id).info.status == "FAILED"


def test_resume_continues_the_same_run(mlflow_store: str, tmp_path: Path) -> None:
    out = _artifact(tmp_path / "art")
    config = Config.from_dict(CONFIG)
    with pytest.raises(KeyboardInterrupt), tracked(config, out) as first:
        first.log_epoch({"train_loss": 0.9}, 1)
        raise KeyboardInterrupt
    record = TrackingRecord.load(out)
    assert record is not None
    client, _ = mlflow_client()
    assert client.get_run(record.run_id).info.status == "KILLED"
    with tracked(config, out, resume=True) as second:
        second.log_epoch({"train_loss": 0.5}, 2)
        second.finish(out, {})
    assert TrackingRecord.load(out) == record
    history = client.get_metric_history(record.run_id, "train_loss")
    assert [m.step for m in history] == [1, 2]
    assert client.get_run(record.run_id).info.status == "FINISHED"
    with tracked(config, out) as third:  # no --resume: a new run
        third.finish(out, {})
    assert TrackingRecord.load(out) != record


def test_the_classifier_trainer_tracks_itself_when_the_config_says_so(
    mlflow_store: str, tmp_path: Path, synthetic: Any
) -> None:
    from polyfuse.train import Trainer

    train, val = synthetic(n=16, missing=False)
    result = Trainer(Config.from_dict(CONFIG), tmp_path / "art", progress=False).fit(train, val)
    record = TrackingRecord.load(result.path)
    assert record is not None
    client, _ = mlflow_client()
    lines = (result.path / "metrics.jsonl").read_text().splitlines()
    epochs = [json.loads(x)["epoch"] for x in lines]
    history = client.get_metric_history(record.run_id, "val_loss")
    assert [m.step for m in history] == epochs == [1, 2]
    assert client.get_run(record.run_id).data.metrics["best_epoch"] == result.best_epoch
    files = _files(client, record.run_id)
    assert {"artifact/artifact.json", "artifact/model.safetensors"} <= files
    assert not any("checkpoints" in f for f in files)


def test_alignment_history_prefixes_ensemble_members(tmp_path: Path) -> None:
    from polyfuse.train.tasks import alignment_history

    records = [
        {"member": 0.0, "epoch": 1.0, "loss": 2.0, "score": 0.1},
        {"member": 1.0, "epoch": 1.0, "loss": 2.5, "score": 0.2},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert alignment_history(tmp_path) == [
        (1, {"member0/loss": 2.0, "member0/score": 0.1}),
        (1, {"member1/loss": 2.5, "member1/score": 0.2}),
    ]
    (tmp_path / "metrics.jsonl").write_text(json.dumps(records[0]) + "\n")
    assert alignment_history(tmp_path) == [(1, {"loss": 2.0, "score": 0.1})]
