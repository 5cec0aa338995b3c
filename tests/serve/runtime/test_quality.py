"""Quality gates in serving: a real runtime over a small image + audio artifact trained with
gates on both modalities; a refused input makes its modality missing (``degraded``,
``low_quality``), is counted, and the answer equals the offline `Predictor`'s."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from polyfuse.artifacts.classifier import Artifact, load_artifact
from polyfuse.core.config import Config, QualityConfig
from polyfuse.inference.predict import Predictor
from polyfuse.serve.types import ServeError, ServeResult
from tests.conftest import SMALL_CONFIG
from tests.serve.conftest import train_tiny
from tests.serve.runtime.test_model import make, req, run

GATED: dict[str, Any] = copy.deepcopy(
    {
        **SMALL_CONFIG,
        "modalities": {m: SMALL_CONFIG["modalities"][m] for m in ("image", "audio")},
        "train": {**SMALL_CONFIG["train"], "epochs": 2},
    }
)
GATED["modalities"]["image"]["quality"] = True
# the synthetic recordings are tones: the cheap stage alone (silence, clipping, stuck signal)
GATED["modalities"]["audio"]["quality"] = {"speech": False}


def wav(samples: np.ndarray, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples.astype(np.float32), rate, format="WAV")
    return buf.getvalue()


SILENCE = wav(np.zeros(4000))


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return train_tiny(tmp_path_factory.mktemp("gated"), GATED)


@pytest.fixture(scope="module")
def artifact(gated: tuple[Path, Path]) -> Artifact:
    return load_artifact(gated[0])


@pytest.fixture(scope="module")
def files(gated: tuple[Path, Path]) -> dict[str, bytes]:
    data = gated[1]
    return {"png": (data / "img0.png").read_bytes(), "tone": (data / "a0.wav").read_bytes()}


def test_the_artifact_carries_the_gates(artifact: Artifact) -> None:
    gates = artifact.quality_gates()
    assert set(gates) == {"image", "audio"}
    assert gates["audio"].check.to_dict()["speech"] is False
    assert gates["audio"].contract is artifact.contracts["audio"]


def test_a_silent_clip_is_left_out_degraded_low_quality_and_counted(
    artifact: Artifact, files: dict[str, bytes]
) -> None:
    rt = make(artifact, cache="none")

    async def body() -> list[ServeResult]:
        silent = await rt.predict(req(1, image=files["png"], audio=SILENCE))
        live = await rt.predict(req(2, image=files["png"], audio=files["tone"]))
        return [silent, live]

    silent, live = run(rt, body)
    assert silent.degraded and silent.degraded_reasons == {"audio": "low_quality"}
    assert silent.modalities_used == ["image"] and "encode:audio" not in silent.timings_ms
    assert not live.degraded and live.modalities_used == ["audio", "image"]
    assert rt.stats()["quality"] == {
        "audio": {"checked": 2, "failed": 1},
        "image": {"checked": 2, "failed": 0},
    }
    assert rt.stats()["requests"]["degraded"] == 1


def test_the_answer_equals_the_offline_predictor(
    artifact: Artifact, files: dict[str, bytes]
) -> None:
    offline = Predictor(artifact, device="cpu").predict({"image": files["png"], "audio": SILENCE})
    assert offline.modalities_used == ("image",)
    assert offline.low_quality == {"audio": "silence: RMS -240.0 dBFS < -60.0"}
    rt = make(artifact)
    res = run(rt, lambda: rt.predict(req(image=files["png"], audio=SILENCE)))
    assert res.label == offline.label
    for label, p in offline.probabilities.items():
        assert res.probabilities[label] == pytest.approx(p, abs=1e-4)


@pytest.mark.parametrize("degraded", ["allow", "refuse"])
def test_every_input_refused_answers_low_quality(
    artifact: Artifact, files: dict[str, bytes], degraded: str
) -> None:
    rt = make(artifact, cache="none", degraded=degraded)
    blank = np.zeros((12, 12, 3), np.uint8)
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(blank).save(buf, format="PNG")

    async def body() -> list[Any]:
        calls = [
            rt.predict(req(1, audio=SILENCE)),
            rt.predict(req(2, image=buf.getvalue())),
            rt.predict(req(3, image=buf.getvalue(), audio=SILENCE)),
        ]
        if degraded == "refuse":  # refuse: one refused input is enough
            calls.append(rt.predict(req(4, image=files["png"], audio=SILENCE)))
        return list(await asyncio.gather(*calls, return_exceptions=True))

    errors = run(rt, body)
    for err in errors:
        assert isinstance(err, ServeError) and err.code == "low_quality" and err.status == 422
        assert "failed its quality gate" in err.message and err.retry_after is None
    assert errors[2].details["reasons"] == {"audio": "low_quality", "image": "low_quality"}
    assert "image: blank: grey levels spread 0.00 < 2.0" in errors[2].message
    assert rt.stats()["requests"]["errors"] == len(errors)


def test_the_gate_travels_to_process_pool_workers(
    gated: tuple[Path, Path], files: dict[str, bytes]
) -> None:
    from polyfuse.serve.runtime.model import ModelRuntime

    rt = ModelRuntime.load(gated[0], preprocess="process", workers=1, cache="none", max_batch=2)

    async def body() -> list[ServeResult]:
        return list(
            await asyncio.gather(
                rt.predict(req(1, image=files["png"], audio=SILENCE)),
                rt.predict(req(2, image=files["png"], audio=files["tone"])),
            )
        )

    silent, live = run(rt, body)
    assert silent.degraded_reasons == {"audio": "low_quality"} and not live.degraded


def test_an_artifact_trained_with_the_speech_check_hears_speech_only(
    artifact: Artifact, files: dict[str, bytes], shared_data: Path
) -> None:
    """The same weights with the default audio gate (Silero VAD): real speech is used, a
    tone and environmental sound are left out."""
    config = Config.from_dict(artifact.config.to_dict())
    config.modalities["audio"].quality = QualityConfig()
    rt = make(dataclasses.replace(artifact, config=config), cache="none")
    speech = (shared_data / "fsdd" / "3_jackson_0.wav").read_bytes()
    rain = sorted((shared_data / "esc50_8k").glob("*.wav"))[0].read_bytes()

    async def body() -> list[ServeResult]:
        return [
            await rt.predict(req(i, image=files["png"], audio=a))
            for i, a in enumerate((speech, files["tone"], rain))
        ]

    used, tone, sound = run(rt, body)
    assert used.modalities_used == ["audio", "image"] and not used.degraded
    assert tone.degraded_reasons == sound.degraded_reasons == {"audio": "low_quality"}


def test_http_answers_degraded_and_prometheus_counts_low_quality(
    artifact: Artifact, files: dict[str, bytes]
) -> None:
    from fastapi.testclient import TestClient

    from polyfuse.serve.http.app import create_app

    rt = make(artifact, cache="none")
    with TestClient(create_app(rt), client=("127.0.0.1", 50000)) as c:
        multipart = {"image": ("a.png", files["png"]), "audio": ("a.wav", SILENCE)}
        r = c.post("/v1/predict", files=multipart)
        assert r.status_code == 200, r.text
        assert r.json()["degraded"] is True
        assert r.json()["degraded_reasons"] == {"audio": "low_quality"}
        r = c.post("/v1/predict", files={"audio": ("a.wav", SILENCE)})
        assert r.status_code == 422 and r.json()["error"]["code"] == "low_quality"
        metrics = c.get("/metrics").text
    assert 'polyfuse_degraded_total{modality="audio",reason="low_quality"} 1.0' in metrics
    assert 'polyfuse_errors_total{code="low_quality"' in metrics
