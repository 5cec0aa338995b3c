"""RayRuntime on a real local Ray instance, over the tiny image + text artifact: the same
answers as the in-process ModelRuntime, a missing modality, the FastAPI app in front."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from polyfuse.artifacts.classifier import Artifact
from polyfuse.core.errors import ConfigError
from polyfuse.serve.runtime.breaker import BreakerState
from polyfuse.serve.runtime.model import ModelRuntime
from polyfuse.serve.runtime.ray import DeploymentSettings, RayConfig
from polyfuse.serve.runtime.settings import BatchSettings, RuntimeConfig
from polyfuse.serve.types import Runtime, ServeError, ServeRequest, ServeResult

TEXT = "red apple number 0"


def test_ray_config_from_dict_checks_and_overrides() -> None:
    rc = RayConfig.from_dict(
        {"deployment": {"max_replicas": 4}, "per_modality": {"image": {"num_gpus": 1}}}
    )
    assert rc.settings("text").max_replicas == 4 and rc.settings("text").device == "cpu"
    image = rc.settings("image")
    assert image.max_replicas == 4 and image.device == "cuda"  # inherits, then overrides
    auto = image.options()["autoscaling_config"]
    assert auto["max_replicas"] == 4 and auto["target_ongoing_requests"] > 0
    with pytest.raises(ConfigError, match="max_batch_size"):
        RayConfig.from_dict({"deployment": {"max_batch_sise": 4}})
    with pytest.raises(ConfigError, match="min_replicas"):
        RayConfig.from_dict({"deployment": {"min_replicas": 3, "max_replicas": 2}})


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="ray[serve] is not installed (pip install ray[serve])")
    pytest.importorskip("ray.serve", reason="ray[serve] is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()


def predict(rt: Any, **inputs: bytes | str) -> ServeResult:
    result: ServeResult = asyncio.run(rt.predict(ServeRequest(inputs=inputs, request_id="r")))
    return result


def test_ray_runtime_matches_the_in_process_runtime(
    ray_instance: Any, artifact: Artifact, png: bytes
) -> None:
    from polyfuse.serve.http.app import create_app
    from polyfuse.serve.runtime.ray import RayRuntime

    local = ModelRuntime(
        artifact,
        RuntimeConfig(batching=BatchSettings(max_batch=2), preprocess="thread", cache="none"),
    )
    local.setup()
    expected = predict(local, image=png, text=TEXT)
    text_only = predict(local, text=TEXT)
    asyncio.run(local.close())

    small = DeploymentSettings(max_batch_size=4, num_cpus=0.5, max_replicas=1)
    start = time.perf_counter()
    rt = RayRuntime(
        artifact, RuntimeConfig(cache="none", encoder_timeout_s=10), RayConfig(deployment=small)
    )
    rt.setup()
    try:
        assert isinstance(rt, Runtime) and rt.ready()
        print(f"ray deployments ready in {time.perf_counter() - start:.1f} s")
        got = predict(rt, image=png, text=TEXT)
        assert got.label == expected.label and not got.degraded
        assert got.modalities_used == ["image", "text"]
        for label, p in expected.probabilities.items():
            assert got.probabilities[label] == pytest.approx(p, abs=1e-4)
        assert "remote:image" in got.timings_ms

        missing = predict(rt, text=TEXT)  # the image encoder is not called at all
        assert missing.modalities_used == ["text"] and not missing.degraded
        assert missing.label == text_only.label
        for label, p in text_only.probabilities.items():
            assert missing.probabilities[label] == pytest.approx(p, abs=1e-4)

        with pytest.raises(ServeError) as bad:  # the replica's preprocessing refuses it
            predict(rt, image=b"not a picture", text=TEXT)
        assert bad.value.code == "invalid_input" and bad.value.details["modality"] == "image"
        # not the encoder's fault: the breaker stays closed
        assert rt.breaker("image").snapshot()["state"] == str(BreakerState.CLOSED)

        async def over_http() -> httpx.Response:
            app = create_app(rt)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.post("/v1/predict", json={"inputs": {"text": TEXT}}, timeout=60)

        response = asyncio.run(over_http())
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["prediction"]["label"] == text_only.label
        assert rt.stats()["deployments"]["image"]["max_batch_size"] == 4

        from ray import serve

        serve.delete("polyfuse-image")  # the image encoder is gone: a degraded answer
        degraded = predict(rt, image=png, text=TEXT)
        assert degraded.degraded and degraded.modalities_used == ["text"]
        assert degraded.degraded_reasons["image"] in {"error", "timeout"}
        assert degraded.label == text_only.label
        assert rt.breaker("image").snapshot()["failures"] == 1
    finally:
        asyncio.run(rt.close())


def test_ray_runtime_needs_a_saved_artifact(trained: tuple[Path, Path]) -> None:
    from polyfuse.artifacts.classifier import load_artifact
    from polyfuse.serve.runtime.ray import RayRuntime

    artifact = load_artifact(trained[0])
    artifact.path = None
    with pytest.raises(ConfigError, match="saved artifact"):
        RayRuntime(artifact)


def test_cli_ray_without_ray_installed_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from polyfuse import cli

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    monkeypatch.delenv("POLYFUSE_API_KEYS", raising=False)
    assert cli.main(["serve", str(tmp_path), "--ray"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "ray[serve]" in err and "polyfuse[ray]" in err


def test_cli_ray_flags_reach_the_ray_runtime(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    from polyfuse import cli
    from polyfuse.serve.runtime import ray as ray_backend
    from tests.serve.fakes import FakeRuntime

    calls: dict[str, Any] = {}

    class FakeRayRuntime:
        @staticmethod
        def load(artifact: str, *, ray_config: RayConfig, **options: Any) -> FakeRuntime:
            calls.update(artifact=artifact, ray_config=ray_config, options=options)
            return FakeRuntime()

    monkeypatch.setattr(ray_backend, "import_ray", lambda: (None, None))
    monkeypatch.setattr(ray_backend, "RayRuntime", FakeRayRuntime)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.update(app=app))
    monkeypatch.delenv("POLYFUSE_API_KEYS", raising=False)
    config = tmp_path / "ray.yaml"
    config.write_text("deployment: {max_replicas: 6}\nper_modality: {image: {num_gpus: 1}}\n")
    argv = ["serve", "art", "--ray-address", "auto", "--ray-config", str(config)]
    assert cli.main([*argv, "--device", "cpu"]) == cli.EXIT_OK
    rc = calls["ray_config"]
    assert rc.address == "auto" and rc.deployment.max_replicas == 6
    assert rc.settings("image").device == "cuda" and calls["options"] == {
        "torch_threads": "auto",
        "device": "cpu",
    }
    assert calls["artifact"] == "art" and "app" in calls
