"""Session fixtures of the ONNX tests (registered in tests/conftest.py): a tiny trained
classifier over all four synthetic modalities, and its fp32 and int8 exports."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def onnx_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(artifact folder, validation manifest) of a tiny classifier over image, audio,
    text and series, with some modalities missing in some rows."""
    pytest.importorskip("onnxscript")
    from polyfuse.core.config import Config
    from polyfuse.train import Trainer
    from tests.conftest import SMALL_CONFIG, write_manifest, write_synthetic

    folder = tmp_path_factory.mktemp("onnx")
    rows = write_synthetic(folder / "data", 40)
    train = write_manifest(folder / "data" / "train.jsonl", rows[:28])
    val = write_manifest(folder / "data" / "val.jsonl", rows[28:])
    config = {**SMALL_CONFIG, "train": {**SMALL_CONFIG["train"], "epochs": 2}}
    Trainer(Config.from_dict(config), folder / "art", progress=False).fit(train, val)
    return folder / "art", val


@pytest.fixture(scope="session")
def onnx_fp32(onnx_source: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fp32 export of `onnx_source`, accuracy measured on its validation manifest."""
    from polyfuse.export import export_onnx

    art, val = onnx_source
    out = tmp_path_factory.mktemp("fp32") / "onnx"
    export_onnx(art, out, data=val)
    return out


@pytest.fixture(scope="session")
def onnx_int8(onnx_source: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The int8 export of `onnx_source` (static QDQ for the CNN encoders, calibrated on
    the validation manifest; dynamic for the text transformer, the fusion and the heads)."""
    from polyfuse.export import export_onnx

    art, val = onnx_source
    out = tmp_path_factory.mktemp("int8") / "onnx"
    export_onnx(art, out, quantize="int8", data=val)
    return out
