"""``polyfuse export`` and the other commands on an exported folder, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyfuse.cli import main

pytest.importorskip("onnxscript")


def test_export_then_predict_evaluate_info_on_the_folder(
    onnx_source: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    art, val = onnx_source
    out = tmp_path / "onnx"
    assert main(["export", str(art), "--format", "onnx", "--out", str(out), "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["precision"] == "fp32" and summary["max_abs_diff_fp32"] <= 1e-4
    assert "fusion" in summary["graphs"] and summary["accuracy"] == {}

    assert main(["predict", str(out), "--data", str(val), "--out", str(tmp_path / "p.jsonl")]) == 0
    exported = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert main(["predict", str(art), "--data", str(val), "--out", str(tmp_path / "e.jsonl")]) == 0
    eager = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [p["label"] for p in exported] == [p["label"] for p in eager] and len(eager) == 12
    for a, b in zip(exported, eager, strict=True):
        assert all(abs(a["probabilities"][k] - v) < 1e-4 for k, v in b["probabilities"].items())

    capsys.readouterr()
    assert main(["evaluate", str(out), "--data", str(val), "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 12
    assert main(["info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "onnx" and info["task"] == "multiclass"
    assert info["onnx"]["source"]["path"] == str(art.resolve())


def test_static_int8_without_data_exits_2_with_the_flag(
    onnx_source: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["export", str(onnx_source[0]), "--quantize", "int8", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--quantize" in err and "--data MANIFEST" in err
