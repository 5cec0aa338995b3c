"""Shared fixtures: an isolated cache, tiny synthetic datasets, the shared data folder."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# the ONNX tests' trained and exported artifacts, shared by tests/artifacts, export, cli, serve
pytest_plugins = ["tests.export.fixtures"]

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Feature cache and third-party caches go to a temporary folder, never ~/.cache."""
    cache = tmp_path_factory.mktemp("cache")
    os.environ["POLYFUSE_CACHE"] = str(cache / "polyfuse")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def _mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite store with its tables created once (MLflow's migrations take seconds)."""
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("mlflow") / "template.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def mlflow_store(_mlflow_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``MLFLOW_TRACKING_URI`` on a fresh sqlite store in tmp_path, which is also the working
    folder (MLflow's default artifact root, ``./mlruns``, stays in it); returns the URI."""
    import shutil

    db = tmp_path / "mlflow.db"
    shutil.copyfile(_mlflow_template, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; skips the test when it is absent (a user's fresh clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared data folder at {SHARED_DATA} (absent outside CI)")
    return SHARED_DATA


def write_synthetic(
    folder: Path, n: int = 60, classes: int = 3, seed: int = 0, missing: bool = True
) -> list[dict[str, Any]]:
    """Tiny files whose class shows in every modality (a bright band, a tone, a word, an offset).

    Returns the manifest records (paths relative to ``folder``).
    """
    import soundfile as sf
    from PIL import Image

    rng = np.random.default_rng(seed)
    words = ["red apple", "green leaf", "blue sky", "grey stone", "gold ring"]
    rows = []
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        y = i % classes
        img = (rng.random((12, 12)) * 60).astype(np.uint8)
        img[y * 4 : y * 4 + 4, :] += 150
        Image.fromarray(img).save(folder / f"img{i}.png")
        t = np.arange(int(8000 * (0.2 + 0.2 * rng.random()))) / 8000
        tone = 0.3 * np.sin(2 * np.pi * (400 + 500 * y) * t) + 0.02 * rng.standard_normal(t.size)
        sf.write(folder / f"a{i}.wav", tone.astype(np.float32), 8000)
        np.save(
            folder / f"s{i}.npy", (rng.standard_normal((10 + i % 5, 2)) + 2 * y).astype(np.float32)
        )
        row: dict[str, Any] = {
            "id": f"s{i}",
            "label": f"c{y}",
            "image": f"img{i}.png",
            "audio": f"a{i}.wav",
            "text": f"{words[y]} number {i % 4}",
            "series": f"s{i}.npy",
            "group": f"g{i % 2}",
        }
        if missing and i % 5 == 1:
            del row["audio"]
        if missing and i % 7 == 2:
            row["image"] = None
        rows.append(row)
    return rows


def relabel(rows: list[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    """Turn `write_synthetic` labels into multi-label (class + "even") or regression targets."""
    for r in rows:
        y = int(r["label"][1])
        r["label"] = (
            ([r["label"], "even"] if y % 2 == 0 else [r["label"]])
            if task == "multilabel"
            else float(y) * 1.5
        )
    return rows


def write_manifest(path: Path, rows: list[dict[str, Any]]) -> Path:
    """JSONL manifest."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def synthetic(tmp_path: Path) -> Callable[..., tuple[Path, Path]]:
    """Factory: writes a synthetic dataset and returns (train.jsonl, val.jsonl)."""

    def make(n: int = 60, **kwargs: Any) -> tuple[Path, Path]:
        rows = write_synthetic(tmp_path / "data", n, **kwargs)
        cut = int(n * 0.75)
        return (
            write_manifest(tmp_path / "data" / "train.jsonl", rows[:cut]),
            write_manifest(tmp_path / "data" / "val.jsonl", rows[cut:]),
        )

    return make


#: A small config over all four synthetic modalities with trainable encoders.
SMALL_CONFIG: dict[str, Any] = {
    "task": "multiclass",
    "modalities": {
        "image": {
            "kind": "image",
            "encoder": {"name": "image_cnn", "widths": [8, 16]},
            "contract": {"size": [12, 12], "channels": 1},
            "dropout": 0.2,
        },
        "audio": {
            "kind": "audio",
            "encoder": {"name": "audio_cnn", "widths": [8, 16]},
            "contract": {"sample_rate": 8000, "n_mels": 24},
        },
        "text": {
            "kind": "text",
            "encoder": {"name": "text_transformer", "width": 16, "layers": 1, "heads": 2},
            "contract": {"vocab_size": 512},
        },
        "series": {
            "kind": "timeseries",
            "encoder": {"name": "timeseries_cnn", "width": 16, "depth": 2},
        },
    },
    "model": {"dim": 16, "fusion": "gated"},
    # no model card by default (tests/release covers it): a card is a full evaluation
    "train": {
        "epochs": 3,
        "batch_size": 16,
        "lr": 0.005,
        "seed": 0,
        "memory_cache_mb": 64,
        "card": False,
    },
}
