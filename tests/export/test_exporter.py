"""`polyfuse export`: fp32 graphs equal to the eager model end to end, int8 graphs with their
accuracy recorded, and the refusals (static without data, a graph that differs, an export of
an export)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polyfuse.artifacts.classifier import load_artifact
from polyfuse.core.errors import ArtifactError, ConfigError, ExportError
from polyfuse.export import export_onnx
from polyfuse.export.exporter import verification_batches, write_graphs
from polyfuse.export.graphs import verify
from polyfuse.inference.predict import Predictor

pytest.importorskip("onnxscript")


def test_fp32_export_predicts_like_the_eager_model(
    onnx_source: tuple[Path, Path], onnx_fp32: Path
) -> None:
    art, val = onnx_source
    eager = Predictor.load(art, device="cpu").predict_manifest(val, progress=False)
    onnx = Predictor.load(onnx_fp32, device="cpu").predict_manifest(val, progress=False)
    assert len(onnx.predictions) == len(eager.predictions) == 12
    assert torch.allclose(onnx.collected.logits, eager.collected.logits, atol=1e-4)
    for m in eager.collected.unimodal:
        assert torch.allclose(onnx.collected.unimodal[m], eager.collected.unimodal[m], atol=1e-4)
    assert eager.collected.weights is not None and onnx.collected.weights is not None
    assert torch.allclose(onnx.collected.weights, eager.collected.weights, atol=1e-4)
    assert [p.label for p in onnx.predictions] == [p.label for p in eager.predictions]
    assert [p.modalities_used for p in onnx.predictions] == [
        p.modalities_used for p in eager.predictions
    ]


def test_the_manifest_records_graphs_axes_source_and_accuracy(
    onnx_source: tuple[Path, Path], onnx_fp32: Path
) -> None:
    info = json.loads((onnx_fp32 / "artifact.json").read_text())
    source = json.loads((onnx_source[0] / "artifact.json").read_text())
    assert info["kind"] == "onnx" and info["lineage"] == source["lineage"]
    entry = info["onnx"]
    assert entry["source"]["path"] == str(onnx_source[0].resolve())
    assert entry["precision"] == "fp32" and entry["quantization"] is None
    assert set(entry["graphs"]) == {
        *(f"{p}-{m}" for p in ("encoder", "head") for m in ("audio", "image", "series", "text")),
        "fusion",
    }
    assert all(isinstance(o, int) and o >= 17 for o in entry["opsets"])
    text = entry["graphs"]["encoder-text"]["inputs"]
    assert [isinstance(d, str) for d in text["data"]["shape"]] == [True, True]  # batch, length
    assert text["data"]["dtype"] == "int64"
    assert max(entry["verification"]["max_abs_diff"].values()) <= 1e-4
    assert entry["accuracy"]["fp32"]["n"] == 12
    assert {f"encoder-{m}.onnx" for m in ("audio", "image")} <= set(info["files"])


def test_int8_export_quantizes_by_graph_and_records_both_accuracies(onnx_int8: Path) -> None:
    entry = json.loads((onnx_int8 / "artifact.json").read_text())["onnx"]
    modes = entry["quantization"]["graphs"]
    assert modes["encoder-image"] == modes["encoder-audio"] == modes["encoder-series"] == "static"
    assert modes["encoder-text"] == modes["fusion"] == modes["head-text"] == "dynamic"
    accuracy = entry["accuracy"]
    assert set(accuracy) == {"fp32", "int8"}
    assert abs(accuracy["int8"]["accuracy"] - accuracy["fp32"]["accuracy"]) <= 0.25
    prediction = Predictor.load(onnx_int8, device="cpu").predict({"text": "red apple number 1"})
    assert prediction.modalities_used == ("text",)
    assert abs(sum(prediction.probabilities.values()) - 1) < 1e-4


def test_static_int8_without_data_is_refused_with_a_hint(
    onnx_source: tuple[Path, Path], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="needs calibration data") as err:
        export_onnx(onnx_source[0], tmp_path / "out", quantize="int8")
    assert err.value.hint is not None and "--data" in err.value.hint
    assert not (tmp_path / "out").exists()


def test_a_graph_that_differs_from_the_model_is_named(
    onnx_source: tuple[Path, Path], tmp_path: Path
) -> None:
    from polyfuse.export.exporter import _model

    artifact = load_artifact(onnx_source[0])
    write_graphs(artifact.model, artifact, tmp_path)
    exported = _model(tmp_path, artifact, artifact.model)
    with torch.no_grad():
        weight = next(artifact.model.adapters["text"].parameters())
        weight.add_(0.05 * torch.randn_like(weight))  # the eager model moves on
    with pytest.raises(ExportError, match=r"^encoder-text: the exported graph differs") as err:
        verify(artifact.model, exported, verification_batches(artifact))
    assert err.value.graph == "encoder-text"


def test_exporting_an_export_or_into_another_folder_is_refused(
    onnx_source: tuple[Path, Path], onnx_fp32: Path, tmp_path: Path
) -> None:
    with pytest.raises(ArtifactError, match="already an ONNX export"):
        export_onnx(onnx_fp32, tmp_path / "again")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="not an ONNX export"):
        export_onnx(onnx_source[0], tmp_path / "busy")
