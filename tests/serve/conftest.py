"""A real tiny trained artifact (image + text, gated fusion), trained once per session
and shared by the runtime, fuzz and fault tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from polyfuse.artifacts.classifier import Artifact, load_artifact
from polyfuse.core.config import Config
from polyfuse.train import Trainer
from tests.conftest import SMALL_CONFIG, write_manifest, write_synthetic
from tests.serve.versions.trained import Models

CONFIG: dict[str, Any] = {
    **SMALL_CONFIG,
    "modalities": {m: SMALL_CONFIG["modalities"][m] for m in ("image", "text")},
    "train": {**SMALL_CONFIG["train"], "epochs": 2},
}


def train_tiny(folder: Path, config: dict[str, Any], n: int = 24) -> tuple[Path, Path]:
    """Train ``config`` on ``n`` synthetic rows (3/4 train, 1/4 validation) in ``folder``:
    (artifact folder ``folder/art``, data folder with ``img0.png``, ``a0.wav`` ...)."""
    rows = write_synthetic(folder / "data", n, missing=False)
    cut = n * 3 // 4
    train = write_manifest(folder / "data" / "train.jsonl", rows[:cut])
    val = write_manifest(folder / "data" / "val.jsonl", rows[cut:])
    Trainer(Config.from_dict(config), folder / "art", progress=False).fit(train, val)
    return folder / "art", folder / "data"


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The image + text artifact: (artifact folder, data folder with img0.png ...)."""
    return train_tiny(tmp_path_factory.mktemp("serve"), CONFIG)


@pytest.fixture(scope="session")
def artifact(trained: tuple[Path, Path]) -> Artifact:
    return load_artifact(trained[0])


@pytest.fixture(scope="session")
def png(trained: tuple[Path, Path]) -> bytes:
    return (trained[1] / "img0.png").read_bytes()


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    """Two image + text artifacts: a champion and a worse candidate (shuffled labels)."""
    return Models(tmp_path_factory.mktemp("versions"))
