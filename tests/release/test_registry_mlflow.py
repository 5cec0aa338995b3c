"""The MLflow round trip of issue 17 with real components: train a tiny model with
``train.tracking: mlflow``, register it, serve ``models:/NAME@champion`` with a real
``polyfuse serve`` process on loopback and answer a predict request, then register a second
version, promote it and roll back. Once on a local store (a sqlite file and an artifact
folder in a temporary folder), once on a real ``mlflow server`` started on loopback."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from polyfuse import cli
from polyfuse.release.registry import ModelRegistry
from polyfuse.release.tracking import TrackingRecord, mlflow_client
from tests.conftest import SMALL_CONFIG, write_manifest, write_synthetic
from tests.ops.test_live import free_port, started, wait_until

pytest.importorskip("mlflow")
pytestmark = pytest.mark.slow  # two trainings and a served model: ~30 s each

CONFIG: dict[str, Any] = {
    **SMALL_CONFIG,
    "modalities": {m: SMALL_CONFIG["modalities"][m] for m in ("image", "text")},
    "train": {**SMALL_CONFIG["train"], "epochs": 2},
}


def data(folder: Path) -> tuple[Path, Path, list[dict[str, Any]]]:
    """Train and validation manifests of 24 synthetic rows, and the validation rows."""
    rows = write_synthetic(folder, 24, missing=False)
    train = write_manifest(folder / "train.jsonl", rows[:18])
    val = write_manifest(folder / "val.jsonl", rows[18:])
    return train, val, rows[18:]


def train(folder: Path, manifests: tuple[Path, Path], out: str, seed: int) -> Path:
    """``polyfuse train digits.yaml --set train.tracking=mlflow``: the artifact folder."""
    config = folder / "digits.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    argv = ["train", str(config), "--train", str(manifests[0]), "--val", str(manifests[1])]
    argv += ["--out", str(folder / out), "--set", "train.tracking=mlflow"]
    assert cli.main([*argv, "--set", f"train.seed={seed}", "-q"]) == cli.EXIT_OK
    return folder / out


def predict(url: str, row: dict[str, Any], base: Path) -> dict[str, Any]:
    image = base64.b64encode((base / row["image"]).read_bytes()).decode()
    inputs = {"image": {"base64": image}, "text": row["text"]}
    answer = httpx.post(f"{url}/v1/predict", json={"inputs": inputs}, timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["prediction"])


def test_train_register_serve_promote_rollback_on_a_local_store(
    mlflow_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train_m, val_m, val_rows = data(tmp_path / "data")
    first = train(tmp_path, (train_m, val_m), "art1", seed=0)

    # the training run: experiment named after the config file, params, epochs, the artifact
    record = TrackingRecord.load(first)
    assert record is not None and record.tracking_uri == mlflow_store
    client, _ = mlflow_client()
    run = client.get_run(record.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "digits"
    assert run.data.params["model.fusion.name"] == "gated" and run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(record.run_id, "val_loss")] == [1, 2]
    assert "val_loss/only_image" in run.data.metrics  # val_loss@image: the fusion shown image alone

    # register with a passed gate, promote the challenger, serve the champion by alias
    passed = tmp_path / "gate.json"
    passed.write_text(json.dumps({"passed": True, "rules": []}))
    capsys.readouterr()
    argv = ["register", str(first), "--name", "digits", "--alias", "challenger", "--json"]
    assert cli.main([*argv, "--gate", str(passed)]) == cli.EXIT_OK
    version = json.loads(capsys.readouterr().out)
    assert version["run_id"] == record.run_id and version["tags"]["gate.passed"] == "true"
    assert cli.main(["registry", "promote", "digits", "--alias", "challenger"]) == cli.EXIT_OK
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "polyfuse", "serve", "models:/digits@champion"]
    with started([*args, "--port", str(port)], tmp_path / "serve.log") as process:
        wait_until(f"{url}/readyz", process, tmp_path / "serve.log", 120)
        answer = predict(url, val_rows[0], train_m.parent)
        assert answer["label"] in {"c0", "c1", "c2"}
        assert httpx.get(f"{url}/v2/models/digits/ready").status_code == 200  # the model's name
    log = (tmp_path / "serve.log").read_text()
    assert "polyfuse serving models:/digits@champion" in log

    # a second version: promote it, then roll back to the first
    second = train(tmp_path, (train_m, val_m), "art2", seed=1)
    assert cli.main(["register", str(second), "--name", "digits", "--alias", "challenger"]) == 0
    assert cli.main(["registry", "promote", "digits", "--alias", "challenger"]) == 0
    registry = ModelRegistry()
    aliases = registry.models()["digits"]
    assert aliases == {"champion": "2", "previous-champion": "1", "challenger": "2"}
    assert cli.main(["registry", "rollback", "digits"]) == cli.EXIT_OK
    assert registry.get("models:/digits@champion").version == "1"

    # predict and info take the URI too (the cached copy of version 1)
    capsys.readouterr()
    argv = ["predict", "models:/digits@champion", "--data", str(val_m), "-q"]
    assert cli.main(argv) == cli.EXIT_OK
    assert len(capsys.readouterr().out.splitlines()) == len(val_rows)
    assert cli.main(["info", "models:/digits/2"]) == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out)["task"] == "multiclass"


def test_round_trip_through_a_real_mlflow_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("flask", reason="mlflow server needs flask (the dev extra has it)")
    port = free_port()
    store = tmp_path / "server"
    store.mkdir()
    argv = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}", "--workers", "1"]
    argv += ["--artifacts-destination", str(store / "artifacts")]
    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # no job runner (huey)
    monkeypatch.chdir(tmp_path)
    with started(argv, tmp_path / "mlflow.log") as server:
        url = f"http://127.0.0.1:{port}"
        wait_until(f"{url}/health", server, tmp_path / "mlflow.log", 120)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        train_m, val_m, val_rows = data(tmp_path / "data")
        folder = train(tmp_path, (train_m, val_m), "art", seed=0)
        registry = ModelRegistry(cache_dir=tmp_path / "cache")
        version = registry.register(folder, "digits", alias="challenger")
        assert version.run_id == json.loads((folder / "tracking.json").read_text())["run_id"]
        registry.promote("digits", alias="challenger")
        copy = registry.download("models:/digits@champion")
        capsys.readouterr()
        argv = ["predict", str(copy), "--data", str(val_m), "-q"]
        assert cli.main(argv) == cli.EXIT_OK
        assert len(capsys.readouterr().out.splitlines()) == len(val_rows)
    # the artifact went through the server into its artifact store
    weights = list((store / "artifacts").rglob("model.safetensors"))
    assert [w.read_bytes() for w in weights] == [(folder / "model.safetensors").read_bytes()]
