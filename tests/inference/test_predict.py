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


def _gated(art: Path) -> Predictor:
    """The trained artifact with audio and text gates on (as if trained with them)."""
    import dataclasses

    from polyfuse.artifacts.classifier import load_artifact
    from polyfuse.core.config import QualityConfig

    artifact = load_artifact(art)
    config = Config.from_dict(artifact.config.to_dict())
    config.modalities["audio"].quality = QualityConfig(params={"speech": False})
    config.modalities["text"].quality = QualityConfig()
    return Predictor(dataclasses.replace(artifact, config=config), device="cpu")


def test_a_refused_input_is_left_out_and_said_why(trained: tuple[Path, Path]) -> None:
    art, val = trained
    p = _gated(art)
    assert set(p.gates) == {"audio", "text"}
    silent = np.zeros(4000, np.float32)
    pred = p.predict({"image": val.parent / "img31.png", "audio": silent, "text": "zzzzzzzz"})
    assert pred.modalities_used == ("image",)
    assert pred.low_quality == {
        "audio": "silence: RMS -240.0 dBFS < -60.0",
        "text": "repeated characters: one letter 8 times in a row",
    }
    plain = Predictor.load(art, device="cpu").predict({"image": val.parent / "img31.png"})
    assert pred.probabilities == plain.probabilities  # exactly what the image alone gives
    with pytest.raises(InvalidInputError, match="every given modality failed its quality gate"):
        p.predict({"audio": silent})


def test_manifest_rows_and_evaluation_apply_the_gate(trained: tuple[Path, Path]) -> None:
    import json

    import soundfile as sf

    art, val = trained
    rows = [json.loads(x) for x in val.read_text().splitlines()]
    sf.write(val.parent / "dead.wav", np.zeros(4000, np.float32), 8000)
    rows[0]["audio"] = "dead.wav"
    rows[1] = {"id": "only-dead", "label": rows[1]["label"], "audio": "dead.wav"}
    manifest = val.parent / "gated.jsonl"  # beside val.jsonl: its relative paths hold
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    p = _gated(art)
    run = p.predict_manifest(manifest, progress=False, feature_cache=False)
    assert run.predictions[0].low_quality.keys() == {"audio"}
    assert "audio" not in run.predictions[0].modalities_used
    assert all(not pred.low_quality for pred in run.predictions[1:])
    assert [b.id for b in run.bad_rows] == ["only-dead"]  # nothing left to answer from
    assert "failed its quality gate" in run.bad_rows[0].error.message
    assert evaluate(p, manifest, progress=False).n == len(rows) - 1
