"""The command line, run in-process (and once as a real subprocess for --help)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from polyfuse.cli import main
from tests.conftest import SMALL_CONFIG


def test_help_does_not_import_torch() -> None:
    code = "import sys, polyfuse.cli; polyfuse.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    helped = subprocess.run(
        [sys.executable, "-m", "polyfuse", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("validate", "train", "predict", "evaluate", "demo"):
        assert command in helped.stdout


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(SMALL_CONFIG))
    return path


def test_validate_reports_coverage_and_problems(
    synthetic: Callable[..., tuple[Path, Path]],
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    train, _ = synthetic(20)
    assert main(["validate", str(train), "--config", str(config_file), "-q"]) == 0
    assert "OK: every row is readable" in capsys.readouterr().out
    (train.parent / "img0.png").write_bytes(b"RIFF....WAVEfmt ")
    (train.parent / "a3.wav").unlink()
    assert main(["validate", str(train), "--config", str(config_file), "--json", "-q"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["coverage"]["series"] == 15
    assert {b["row"] for b in report["bad_rows"]} == {1, 4}
    assert report["metadata"] == ["group"]


def test_validate_guesses_modalities_from_column_names(
    synthetic: Callable[..., tuple[Path, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    train, _ = synthetic(10)
    assert main(["validate", str(train), "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["modalities"] == {
        "image": "image",
        "audio": "audio",
        "text": "text",
    }


def test_train_predict_evaluate_info(
    synthetic: Callable[..., tuple[Path, Path]],
    config_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    train, val = synthetic(24)
    out = tmp_path / "art"
    assert (
        main(
            [
                "train",
                str(config_file),
                "--train",
                str(train),
                "--val",
                str(val),
                "--out",
                str(out),
                "--set",
                "train.epochs=1",
                "--json",
                "-q",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["best_epoch"] == 1 and "accuracy" in summary
    assert (
        main(["predict", str(out), "--data", str(val), "--out", str(tmp_path / "p.jsonl"), "-q"])
        == 0
    )
    preds = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(preds) == 6 and {"label", "probabilities", "modalities_used"} <= set(preds[0])
    assert main(["evaluate", str(out), "--data", str(val), "--json", "-q"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 6 and 0.0 <= result["accuracy"] <= 1.0
    assert main(["evaluate", str(out), "--data", str(val), "--modalities", "audio", "-q"]) == 0
    text = capsys.readouterr().out
    assert "modalities: audio" in text and "confusion matrix" in text
    assert main(["info", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "multiclass"


def test_config_errors_exit_2_with_the_key(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "train",
            str(config_file),
            "--train",
            "x.jsonl",
            "--out",
            str(tmp_path),
            "--set",
            "train.epoch=3",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "train.epoch: unknown key" in err and "did you mean 'epochs'" in err


def test_list_shows_registries(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert (
        "cross_attention" in out and "efficientnet_lite0" in out and "(pretrained, frozen)" in out
    )


def test_output_into_a_closed_pipe_ends_quietly() -> None:
    """`polyfuse schema serve | head -1`: no BrokenPipeError traceback on stderr."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "polyfuse", "schema", "serve"],
        stdout=write_end,
        stderr=subprocess.PIPE,
    )
    os.close(write_end)
    os.close(read_end)  # the reader is gone before anything is written, as after `head -1`
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err
