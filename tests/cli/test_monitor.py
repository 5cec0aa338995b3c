"""``polyfuse monitor`` end to end on a tiny trained artifact: exit codes, JSON, report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from polyfuse.cli import main
from polyfuse.core.config import Config
from polyfuse.monitor import PROFILE_DIR, ReferenceProfile
from polyfuse.train.trainer import Trainer
from tests.conftest import SMALL_CONFIG, write_manifest, write_synthetic


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, object]], Path]:
    folder = tmp_path_factory.mktemp("monitor")
    rows = write_synthetic(folder / "data", 150, missing=False)
    train = write_manifest(folder / "data" / "train.jsonl", rows[:60])
    val = write_manifest(folder / "data" / "val.jsonl", rows[60:105])
    Trainer(Config.from_dict(SMALL_CONFIG), folder / "art", progress=False).fit(train, val)
    return folder / "art", rows[105:], folder / "data"


def test_training_writes_the_reference_profile(trained) -> None:  # type: ignore[no-untyped-def]
    art, _, _ = trained
    profile = ReferenceProfile.of_artifact(art)
    obs = profile.observations
    assert len(obs) == 45 and obs.labels is not None
    assert set(obs.modalities) == {"image", "audio", "text", "series"}
    image = obs.modalities["image"]
    assert image.statistics.shape == (45, len(image.names)) and np.isfinite(image.statistics).all()
    assert image.statistics[0, image.names.index("height")] == 12
    assert profile.vocab["text"] >= {"red", "apple", "number"}
    assert (art / PROFILE_DIR / "observations.npz").is_file()


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    code = main(["monitor", *args, "-q", "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def test_unshifted_data_exits_zero(trained, capsys) -> None:  # type: ignore[no-untyped-def]
    art, rows, data = trained
    current = write_manifest(data / "current.jsonl", rows)
    code, result = _run([str(art), "--current", str(current), "--window", "20"], capsys)
    assert code == 0, result
    assert result["drift"] is False and result["n"] == 45 and result["window"] == 20
    assert set(result["modalities"]) == {"image", "audio", "text", "series"}
    for entry in result["modalities"].values():  # type: ignore[union-attr]
        assert set(entry) >= {"drift", "p_value", "score", "first_window", "statistics"}
    assert result["estimated_accuracy"]["current"] is not None  # type: ignore[index]


def test_missing_modality_and_shifted_text_exit_one(trained, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    art, rows, data = trained
    shifted = []
    for row in rows:
        r = dict(row)
        r.pop("audio")
        r["text"] = "Quarterly revenue grew 12% YoY; EBITDA margin 31.5% (guidance raised)."
        shifted.append(r)
    current = write_manifest(data / "shifted.jsonl", shifted)
    out = tmp_path / "report"
    code = main(["monitor", str(art), "--current", str(current), "--out", str(out), "-q", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 1
    assert result["drift"] is True
    assert result["missing_rate"]["audio"]["drift"] is True
    assert result["missing_rate"]["audio"]["current"] == 1.0
    assert result["modalities"]["text"]["drift"] is True
    assert result["modalities"]["image"]["drift"] is False
    assert json.loads((out / "drift.json").read_text())["drift"] is True
    page = (out / "drift.html").read_text()
    assert "<svg" in page and "text: <span class='flag'>drift" in page


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--window", "0"], "--window"),
        (["--alpha", "1.5"], "--alpha"),
        (["--reference", "/nonexistent/ref.jsonl"], "ref.jsonl"),
    ],
)
def test_bad_arguments_exit_two(trained, capsys, extra, message) -> None:  # type: ignore[no-untyped-def]
    art, rows, data = trained
    current = write_manifest(data / "c2.jsonl", rows)
    code = main(["monitor", str(art), "--current", str(current), *extra, "-q"])
    assert code == 2
    assert message in capsys.readouterr().err


def test_artifact_without_profile_says_how_to_fix(trained, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    art, rows, data = trained
    bare = tmp_path / "bare"
    shutil.copytree(art, bare)
    shutil.rmtree(bare / "monitor")
    current = write_manifest(data / "c3.jsonl", rows)
    assert main(["monitor", str(bare), "--current", str(current), "-q"]) == 2
    assert "--reference" in capsys.readouterr().err


def test_multilabel_artifact_is_monitored(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import relabel

    rows = relabel(write_synthetic(tmp_path / "data", 120, missing=False), "multilabel")
    train = write_manifest(tmp_path / "data" / "train.jsonl", rows[:50])
    val = write_manifest(tmp_path / "data" / "val.jsonl", rows[50:85])
    raw = {**SMALL_CONFIG, "task": "multilabel"}
    Trainer(Config.from_dict(raw), tmp_path / "art", progress=False).fit(train, val)
    obs = ReferenceProfile.of_artifact(tmp_path / "art").observations
    assert obs.outputs.multilabel and obs.labels is not None and obs.labels.shape == (35, 4)
    current = write_manifest(tmp_path / "data" / "current.jsonl", rows[85:])
    code, result = _run([str(tmp_path / "art"), "--current", str(current)], capsys)
    assert code == 0, result
    assert result["estimated_accuracy"]["current"] is not None  # type: ignore[index]
    assert result["estimated_accuracy"]["metric"] == "subset_accuracy"  # type: ignore[index]
    shifted = [{**r, "text": "Quarterly revenue grew 12% YoY; EBITDA up."} for r in rows[85:]]
    current = write_manifest(tmp_path / "data" / "shifted.jsonl", shifted)
    code, result = _run([str(tmp_path / "art"), "--current", str(current)], capsys)
    assert code == 1 and result["modalities"]["text"]["drift"] is True  # type: ignore[index]
