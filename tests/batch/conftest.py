"""A real tiny classifier (image + text + series, cross-attention over tokens) and a
manifest with missing modalities, a bad file and a broken line, shared by the batch tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SMALL_CONFIG, write_manifest, write_synthetic
from tests.serve.conftest import train_tiny

#: Encoders whose output ignores padding (fixed-size images, masked attention, packed GRU),
#: so any batching gives the same answers (see docs/scale.md).
CONFIG: dict[str, Any] = {
    **SMALL_CONFIG,
    "modalities": {
        "image": SMALL_CONFIG["modalities"]["image"],
        "text": SMALL_CONFIG["modalities"]["text"],
        "series": {"kind": "timeseries", "encoder": {"name": "timeseries_gru", "hidden": 16}},
    },
    "model": {"dim": 16, "fusion": "cross_attention"},
    "train": {**SMALL_CONFIG["train"], "epochs": 1},
}


@pytest.fixture(scope="session")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The artifact folder."""
    art, _ = train_tiny(tmp_path_factory.mktemp("batch"), CONFIG, n=16)
    return art


@pytest.fixture(scope="session")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 rows: some without image or series, one unreadable image, one broken JSON line."""
    folder = tmp_path_factory.mktemp("batch-data")
    rows = write_synthetic(folder, 20, seed=1, missing=True)
    for i, row in enumerate(rows):
        if i % 6 == 3:
            del row["series"]
    rows[4]["image"] = "missing.png"
    path = write_manifest(folder / "rows.jsonl", rows)
    lines = path.read_text().splitlines()
    lines.insert(9, '{"id": "broken", ')
    path.write_text("\n".join(lines) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """JSON lines of a predictions file."""
    return [json.loads(x) for x in path.read_text().splitlines()]


def assert_same_predictions(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Same rows, labels, modalities and quality verdicts; probabilities within 1e-5."""
    assert [g["id"] for g in got] == [e["id"] for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert g["label"] == e["label"], g["id"]
        assert g["modalities_used"] == e["modalities_used"]
        assert g["low_quality"] == e["low_quality"] and g["unimodal"] == e["unimodal"]
        assert g["probabilities"] == pytest.approx(e["probabilities"], abs=1e-5)
        assert g["fusion_weights"] == pytest.approx(e["fusion_weights"], abs=1e-5)
