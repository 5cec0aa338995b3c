"""The bad inputs of the acceptance list, all in one manifest: a long run skips and reports
them, validate finds them, prediction never crashes."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from polyfuse.cli import main
from polyfuse.core.config import Config
from polyfuse.inference.predict import Predictor
from polyfuse.train import Trainer
from tests.conftest import SMALL_CONFIG, write_manifest, write_synthetic


def _bomb_png(side: int = 100_000) -> bytes:
    """A tiny PNG whose header claims side x side pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def bad_manifest(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    data = tmp_path / "data"
    rows = write_synthetic(data, 40, missing=False)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(buf, format="PNG")
    (data / "truncated.png").write_bytes(buf.getvalue()[:60])
    (data / "bomb.png").write_bytes(_bomb_png())
    nan = np.zeros(800, np.float32)
    nan[5] = np.nan
    sf.write(data / "nan.wav", nan, 8000, subtype="FLOAT")
    sf.write(data / "empty.wav", np.zeros(0, np.float32), 8000)
    (data / "fake.png").write_bytes((data / "a0.wav").read_bytes())  # audio behind .png
    broken = {  # row id -> what must be reported
        "s1": "decode",
        "s2": "decompression bomb",
        "s3": "NaN",
        "s4": "zero length",
        "s5": "WAV audio, not a supported image",
        "s6": "not valid UTF-8",
        "s7": "file not found",
    }
    rows[1]["image"] = "truncated.png"
    rows[2]["image"] = "bomb.png"
    rows[3]["audio"] = "nan.wav"
    rows[4]["audio"] = "empty.wav"
    rows[5]["image"] = "fake.png"
    rows[6]["text"] = b"caf\xe9".decode("utf-8", "surrogateescape")
    rows[7]["series"] = "missing.npy"
    train = write_manifest(data / "train.jsonl", rows[:32])
    val = write_manifest(data / "val.jsonl", rows[32:])
    return train, val, broken


def test_training_skips_and_reports_every_bad_row(
    bad_manifest: tuple[Path, Path, dict[str, str]], tmp_path: Path
) -> None:
    train, val, broken = bad_manifest
    config = Config.from_dict({**SMALL_CONFIG, "train": {**SMALL_CONFIG["train"], "epochs": 2}})
    result = Trainer(config, tmp_path / "run", progress=False).fit(train, val)
    reported = {b.id: b.describe() for b in result.bad_rows}
    assert set(reported) == set(broken)
    for row_id, reason in broken.items():
        assert reason in reported[row_id], reported[row_id]
    lines = (tmp_path / "run" / "bad_rows.jsonl").read_text().splitlines()
    assert len(lines) == len(broken) and all(json.loads(x)["modality"] for x in lines)


def test_validate_finds_the_same_rows(
    bad_manifest: tuple[Path, Path, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    train, _, broken = bad_manifest
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(SMALL_CONFIG))
    assert main(["validate", str(train), "--config", str(cfg), "--json", "-q"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert {b["id"] for b in report["bad_rows"]} == set(broken)


def test_prediction_over_bad_rows_reports_instead_of_crashing(
    bad_manifest: tuple[Path, Path, dict[str, str]], tmp_path: Path
) -> None:
    train, val, broken = bad_manifest
    config = Config.from_dict({**SMALL_CONFIG, "train": {**SMALL_CONFIG["train"], "epochs": 1}})
    Trainer(config, tmp_path / "run", progress=False).fit(val, val)
    run = Predictor.load(tmp_path / "run", device="cpu").predict_manifest(train, progress=False)
    assert {b.id for b in run.bad_rows} == set(broken)
    assert len(run.predictions) == 32 - len(broken)
