"""Predictor API: one sample, a batch, manifests, modality subsets, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from polyfuse.core.config import Config
from polyfuse.core.errors import InvalidInputError
from polyfuse.evaluation import evaluate
from polyfuse.inference.predict import Prediction, Predictor
from polyfuse.train import Trainer
from tests.conftest import SMALL_CONFIG


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.conftest import write_manifest, write_synthetic

    folder = tmp_path_factory.mktemp("pred")
    rows = write_synthetic(folder / "data", 40)
    train = write_manifest(folder / "data" / "train.jsonl", rows[:30])
    val = write_manifest(folder / "data" / "val.jsonl", rows[30:])
    Trainer(Config.from_dict(SMALL_CONFIG), folder / "art", progress=False).fit(train, val)
    return folder / "art", val


def test_one_sample_any_subset(trained: tuple[Path, Path]) -> None:
    art, val = trained
    p = Predictor.load(art, device="cpu")
    data = val.parent
    pred = p.predict({"image": data / "img31.png", "text": "green leaf number 3"})
    assert isinstance(pred, Prediction) and pred.modalities_used == ("image", "text")
    assert set(pred.probabilities) == {"c0", "c1", "c2"}
    assert abs(sum(pred.probabilities.values()) - 1) < 1e-4
    assert pred.fusion_weights is not None and pred.fusion_weights["audio"] == 0.0
    assert set(pred.unimodal) == {"image", "text"}


def test_batch_of_in_memory_values(trained: tuple[Path, Path]) -> None:
    art, _ = trained
    p = Predictor.load(art, device="cpu")
    wave = (0.3 * np.sin(2 * np.pi * 900 * np.arange(2000) / 8000)).astype(np.float32)
    preds = p.predict(
        [
            {"audio": wave},
            {"series": np.ones((8, 2), np.float32)},
            {"image": np.zeros((12, 12), np.uint8), "id": "z"},
        ]
    )
    assert [x.modalities_used for x in preds] == [("audio",), ("series",), ("image",)]
    assert preds[2].id == "z"


def test_bad_input_and_unknown_modality_raise_typed_errors(trained: tuple[Path, Path]) -> None:
    art, _ = trained
    p = Predictor.load(art, device="cpu")
    with pytest.raises(InvalidInputError, match="no modality 'imagee'"):
        p.predict({"imagee": "x.png"})
    with pytest.raises(InvalidInputError, match="not a supported image"):
        p.predict({"image": b"hello"})


def test_manifest_prediction_and_subset_evaluation(trained: tuple[Path, Path]) -> None:
    art, val = trained
    p = Predictor.load(art, device="cpu")
    run = p.predict_manifest(val, progress=False)
    assert len(run.predictions) == 10 and not run.bad_rows
    only_text = evaluate(p, val, modalities=["text"], progress=False)
    assert only_text.modalities == ("text",) and only_text.n == 10
    assert all(not bool(v.any()) for m, v in only_text.collected.present.items() if m != "text")
    with pytest.raises(InvalidInputError, match="cannot feed"):
        evaluate(p, val, modalities=["video"], progress=False)
