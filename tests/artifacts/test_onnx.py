"""Loading ONNX exports: the same `Artifact` as the source, refusals of damaged folders,
and the sessions' options."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from polyfuse.artifacts.classifier import load_artifact
from polyfuse.artifacts.kinds import kind_of
from polyfuse.artifacts.onnx import (
    OnnxEncoder,
    OnnxFusion,
    OnnxGraph,
    is_onnx_export,
    session_options,
)
from polyfuse.core.errors import ArtifactError

pytest.importorskip("onnxruntime")


def _copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "copy"))


def test_an_export_loads_as_its_source_classifier(
    onnx_source: tuple[Path, Path], onnx_fp32: Path
) -> None:
    source, exported = load_artifact(onnx_source[0]), load_artifact(onnx_fp32)
    assert kind_of(onnx_fp32).name == "onnx" and is_onnx_export(onnx_fp32)
    assert not is_onnx_export(onnx_source[0])
    assert exported.modalities == source.modalities and exported.task.labels == source.task.labels
    assert {m: c.to_dict() for m, c in exported.contracts.items()} == {
        m: c.to_dict() for m, c in source.contracts.items()
    }
    assert all(isinstance(exported.model.encoder(m), OnnxEncoder) for m in exported.modalities)
    assert isinstance(exported.model.fusion, OnnxFusion)
    assert torch.equal(exported.model.prior, source.model.prior)
    # the encoder's identity (cache keys, shared serving stages) is the graph's digest
    digest = exported.info["files"]["encoder-text.onnx"]
    assert exported.model.encoder("text").weights_digest() == digest


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "encoder-image.onnx").unlink(), "file encoder-image.onnx is missing"),
        (
            lambda p: (p / "fusion.onnx").write_bytes(b"\x08\x07garbage"),
            "fusion.onnx does not match its recorded sha256",
        ),
    ],
)
def test_a_missing_or_corrupt_graph_is_refused(
    onnx_fp32: Path, tmp_path: Path, damage: object, message: str
) -> None:
    folder = _copy(onnx_fp32, tmp_path)
    damage(folder)  # type: ignore[operator]
    with pytest.raises(ArtifactError, match=message):
        load_artifact(folder)


def test_an_unknown_export_format_is_refused(onnx_fp32: Path, tmp_path: Path) -> None:
    folder = _copy(onnx_fp32, tmp_path)
    info = json.loads((folder / "artifact.json").read_text())
    info["onnx"]["format"] = 99
    (folder / "artifact.json").write_text(json.dumps(info))
    with pytest.raises(ArtifactError, match="ONNX export format 99 is not supported"):
        load_artifact(folder)


def test_a_graph_runtime_cannot_read_is_an_artifact_error(tmp_path: Path) -> None:
    (tmp_path / "x.onnx").write_bytes(b"not a graph")
    graph = OnnxGraph(tmp_path / "x.onnx", "encoder-image")
    with pytest.raises(ArtifactError, match="cannot load the encoder-image graph"):
        graph.run({"data": torch.zeros(1, 1)}, torch.device("cpu"))


def test_sessions_take_torch_threads_and_run_sequentially() -> None:
    import onnxruntime as ort

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        options = session_options()
        assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
        assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
        assert session_options(3).intra_op_num_threads == 3
    finally:
        torch.set_num_threads(before)
