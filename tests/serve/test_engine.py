"""``polyfuse serve --engine``: an ONNX export answering real requests over a loopback
socket, and the engine/folder mismatches refused before anything loads."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from polyfuse.cli.serve import check_engine
from polyfuse.core.errors import ConfigError
from polyfuse.inference.predict import Predictor
from polyfuse.serve.config import ServeConfig
from polyfuse.serve.http.app import create_app
from polyfuse.serve.runtime.model import ModelRuntime
from tests.serve.fakes import LiveServer

pytest.importorskip("onnxruntime")


@pytest.mark.integration
def test_an_onnx_export_answers_over_a_real_socket(
    onnx_source: tuple[Path, Path], onnx_fp32: Path
) -> None:
    check_engine("onnx", str(onnx_fp32))
    data = onnx_source[1].parent
    runtime = ModelRuntime.load(onnx_fp32, preprocess="thread", max_batch=4, torch_threads=1)
    assert set(runtime.stats()["encoders"].values()) == {"onnx"}
    want = Predictor.load(onnx_fp32, device="cpu").predict(
        {"image": data / "img30.png", "text": "green leaf number 2"}
    )
    with LiveServer(create_app(runtime, ServeConfig())) as server:
        response = httpx.post(
            f"{server.url}/v1/predict",
            files={"image": ("a.png", (data / "img30.png").read_bytes(), "image/png")},
            data={"text": "green leaf number 2"},
            timeout=30,
        )
    assert response.status_code == 200, response.text
    body = response.json()
    answer = body["prediction"]
    assert answer["label"] == want.label
    assert sorted(body["modalities_used"]) == ["image", "text"] and not body["degraded"]
    for label, p in want.probabilities.items():
        assert abs(answer["probabilities"][label] - p) < 1e-4


def test_engines_that_do_not_fit_the_folder_are_refused(
    onnx_source: tuple[Path, Path], onnx_fp32: Path
) -> None:
    art = str(onnx_source[0])
    check_engine("auto", art)
    check_engine("torch", art)
    check_engine("auto", str(onnx_fp32))
    with pytest.raises(ConfigError, match="is not an ONNX export") as err:
        check_engine("onnx", art)
    assert err.value.hint is not None and "polyfuse export" in err.value.hint
    with pytest.raises(ConfigError, match="holds ONNX graphs, not torch weights"):
        check_engine("torch", str(onnx_fp32))
    with pytest.raises(ConfigError, match="serves in process"):
        check_engine("auto", str(onnx_fp32), ray=True)
