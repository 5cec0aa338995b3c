"""Artifacts: save/load round trip, version and integrity checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from polyfuse.artifacts.classifier import load_artifact
from polyfuse.core.config import Config
from polyfuse.core.errors import ArtifactError, ContractError
from polyfuse.fusion import FUSIONS
from polyfuse.inference.predict import Predictor
from polyfuse.train import Trainer, TrainResult
from tests.conftest import SMALL_CONFIG


def _fit(train: Path, val: Path, out: Path, fusion: str = "gated") -> TrainResult:
    params = {"heads": 2} if fusion == "cross_attention" else {}
    raw = {
        **SMALL_CONFIG,
        "model": {"dim": 16, "fusion": {"name": fusion, **params}},
        "train": {**SMALL_CONFIG["train"], "epochs": 1},
    }
    return Trainer(Config.from_dict(raw), out, progress=False).fit(train, val)


def _train(train: Path, val: Path, out: Path) -> Path:
    return _fit(train, val, out).path


@pytest.mark.parametrize("fusion", FUSIONS.list())
def test_round_trip_gives_identical_predictions(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path, fusion: str
) -> None:
    train, val = synthetic(24)
    result = _fit(train, val, tmp_path / "art", fusion)
    path = result.path
    in_memory = Predictor(result.artifact, device="cpu").predict_manifest(val, progress=False)
    run = Predictor.load(path, device="cpu").predict_manifest(val, progress=False)
    assert torch.equal(in_memory.collected.logits, run.collected.logits)
    assert [p.to_dict() for p in in_memory.predictions] == [p.to_dict() for p in run.predictions]
    art = load_artifact(path)
    assert art.metrics["val"]["n"] == len(run.predictions)
    assert (
        abs(
            art.metrics["val"]["accuracy"]
            - sum(p.label == r.label for p, r in zip(run.predictions, run.rows, strict=True))
            / len(run.rows)
        )
        < 1e-9
    ), "metrics.json must match what the saved weights predict"


def test_artifact_layout_and_versions(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    train, val = synthetic(24)
    path = _train(train, val, tmp_path / "art")
    for name in (
        "artifact.json",
        "config.yaml",
        "contracts.json",
        "labels.json",
        "metrics.json",
        "model.safetensors",
    ):
        assert (path / name).is_file()
    info = json.loads((path / "artifact.json").read_text())
    assert info["format"] == 1 and "torch" in info["versions"]
    assert json.loads((path / "labels.json").read_text())["labels"] == ["c0", "c1", "c2"]


def test_contract_version_mismatch_is_refused(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    train, val = synthetic(24)
    path = _train(train, val, tmp_path / "art")
    contracts = json.loads((path / "contracts.json").read_text())
    contracts["audio"]["version"] = 7
    (path / "contracts.json").write_text(json.dumps(contracts))
    info = json.loads((path / "artifact.json").read_text())
    info["files"].pop("contracts.json")  # bypass the digest so the contract check itself speaks
    (path / "artifact.json").write_text(json.dumps(info))
    with pytest.raises(ContractError, match="audio contract v7"):
        load_artifact(path)


def test_edited_weights_are_detected(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    train, val = synthetic(24)
    path = _train(train, val, tmp_path / "art")
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        load_artifact(path)


def test_missing_artifact_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not an artifact folder"):
        load_artifact(tmp_path / "nothing")
