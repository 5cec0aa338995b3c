"""Faults through HTTP, against the real app over a real `ModelRuntime` (the tiny trained
image + text artifact): an image encoder that raises or hangs opens its breaker within
``breaker_failures`` failures, answers stay 200 and degraded meanwhile, `/metrics`
shows the breaker, and once the encoder recovers the breaker closes again.

No assertion is on a duration: timeouts are short, waits for a state are polls
bounded by generous margins."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import torch

from polyfuse.artifacts.classifier import Artifact
from polyfuse.serve.http.app import create_app
from polyfuse.serve.runtime.breaker import BreakerState
from polyfuse.serve.runtime.model import EncodeFn, ModelRuntime
from polyfuse.serve.runtime.settings import BatchSettings, RuntimeConfig
from tests.serve.fakes import Client, LiveServer

FAILURES = 2  # breaker_failures
MARGIN_S = 20.0  # the longest any poll waits for a state (never reached when healthy)


class Fault:
    """An encoder wrapper: passes, raises, or hangs (until released, at most 30 s)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0
        self.release = threading.Event()

    def __call__(self, fn: EncodeFn) -> EncodeFn:
        def wrapped(items: list[torch.Tensor]) -> list[Any]:
            self.calls += 1
            if self.mode == "raise":
                raise RuntimeError("injected encoder failure")
            if self.mode == "hang":
                self.release.wait(30)
            return fn(items)

        return wrapped

    def recover(self) -> None:
        self.mode = "ok"
        self.release.set()


def runtime(artifact: Artifact, fault: Fault, **options: Any) -> ModelRuntime:
    config = RuntimeConfig(
        **{
            "preprocess": "thread",
            "cache": "none",  # a cached embedding would hide the encoder's faults
            "batching": BatchSettings(max_batch=1, max_wait_ms=0),
            "breaker_failures": FAILURES,
            "breaker_reset_s": 1.0,
            # long enough that the healthy text encoder never times out on a busy CI machine
            "encoder_timeout_s": 2.0,
            **options,
        }
    )
    rt = ModelRuntime(artifact, config, encoder_wrappers={"image": fault})
    rt.setup()
    return rt


Post = Callable[[], httpx.Response]


def predictor(post: Callable[..., httpx.Response], png: bytes) -> Post:
    return lambda: post(
        "/v1/predict", files={"image": ("x.png", png)}, data={"text": "red apple number 0"}
    )


def degraded(response: httpx.Response) -> str:
    """The image's degraded reason of a 200 answer that used the text alone."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["degraded"] is True and body["modalities_used"] == ["text"], body
    assert set(body["degraded_reasons"]) == {"image"}, body
    return str(body["degraded_reasons"]["image"])


def until(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + MARGIN_S
    while not predicate():
        assert time.monotonic() < deadline, "state not reached within the margin"
        time.sleep(0.05)


def metric(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric family in Prometheus text."""
    out: dict[str, float] = {}
    for m in re.finditer(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE):
        out[m.group(1) or ""] = float(m.group(2))
    return out


def open_then_recover(
    rt: ModelRuntime,
    fault: Fault,
    predict: Post,
    get: Callable[[str], httpx.Response],
    reason: str,
) -> None:
    """The shared scenario: ``FAILURES`` failures with ``reason``, then the breaker opens
    (answers stay 200, degraded), then recovery closes it."""
    first = [degraded(predict()) for _ in range(FAILURES)]
    assert first == [reason] * FAILURES
    # open now; a slow machine may let it turn half-open and fail a trial once more,
    # so look for the breaker_open answer over a few requests
    reasons = [degraded(predict()) for _ in range(3)]
    assert "breaker_open" in reasons and set(reasons) <= {"breaker_open", reason}
    metrics = get("/metrics").text
    assert metric(metrics, "polyfuse_runtime_breakers_image_opens")[""] >= 1
    state = metric(metrics, "polyfuse_runtime_breakers_image_state")
    assert set(state) & {'{state="open"}', '{state="half_open"}'}, state
    assert (
        metric(metrics, "polyfuse_degraded_total")['{modality="image",reason="breaker_open"}'] >= 1
    )
    assert metric(metrics, "polyfuse_runtime_breakers_text_state") == {'{state="closed"}': 1.0}

    fault.recover()
    answers: list[httpx.Response] = []

    def healthy() -> bool:
        answers.append(predict())
        assert answers[-1].status_code == 200, answers[-1].text
        return answers[-1].json()["degraded"] is False

    until(healthy)  # the breaker's reset timeout passes, a trial succeeds
    assert rt.breaker("image").state is BreakerState.CLOSED
    again = predict().json()
    assert again["degraded"] is False and again["modalities_used"] == ["image", "text"]
    assert again["degraded_reasons"] == {}
    closed = metric(get("/metrics").text, "polyfuse_runtime_breakers_image_state")
    assert closed == {'{state="closed"}': 1.0}


def test_a_raising_encoder_opens_its_breaker_degrades_and_recovers(
    artifact: Artifact, png: bytes
) -> None:
    fault = Fault()
    rt = runtime(artifact, fault)
    client = Client(create_app(rt))
    predict = predictor(client.post, png)
    assert predict().json()["degraded"] is False
    fault.mode = "raise"
    open_then_recover(rt, fault, predict, client.get, "error")
    assert client.get("/healthz").status_code == 200


def test_a_hanging_encoder_times_out_opens_its_breaker_and_recovers_on_uvicorn(
    artifact: Artifact, png: bytes
) -> None:
    fault = Fault()
    rt = runtime(artifact, fault)
    with LiveServer(create_app(rt)) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        predict = predictor(http.post, png)
        assert predict().json()["degraded"] is False
        fault.mode = "hang"
        try:
            open_then_recover(rt, fault, predict, http.get, "timeout")
        finally:
            fault.release.set()  # never leave the encoder thread stuck
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200


@pytest.mark.parametrize("mode", ["raise", "hang"])
def test_the_refuse_policy_answers_unavailable(artifact: Artifact, png: bytes, mode: str) -> None:
    fault = Fault()
    rt = runtime(artifact, fault, degraded="refuse", breaker_reset_s=60.0)
    client = Client(create_app(rt))
    fault.mode = mode
    try:
        response = predictor(client.post, png)()
    finally:
        fault.release.set()
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "unavailable"
    assert error["details"] == {"reasons": {"image": "error" if mode == "raise" else "timeout"}}
    assert response.headers["retry-after"]
    # text alone is not degraded: answered
    alone = client.post("/v1/predict", json={"inputs": {"text": "red apple"}})
    assert alone.status_code == 200 and alone.json()["degraded"] is False
