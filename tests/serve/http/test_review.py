"""Human review through a real service (the tiny trained artifact, the real runtime, the
firewall, a SQLite queue in a temp folder): routing, ``GET /v1/review``, stored inputs,
``POST /v1/feedback`` reaching the monitor's observed accuracy, metrics and keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from polyfuse.serve.config import ServeConfig, hash_key
from polyfuse.serve.runtime.model import ModelRuntime
from tests.guard.fakes import RegexDetector
from tests.serve.review.test_routing import RULES


@pytest.fixture
def runtime(trained: tuple[Path, Path]) -> Iterator[ModelRuntime]:
    rt = ModelRuntime.load(
        trained[0], preprocess="thread", cache="memory", monitor_window=10, monitor_rate=0
    )
    yield rt


def client_for(rt: ModelRuntime, config: ServeConfig, **app: Any) -> Any:
    from fastapi.testclient import TestClient

    from polyfuse.serve.http.app import create_app

    return TestClient(create_app(rt, config, **app), client=("127.0.0.1", 50000))


def predict(client: Any, data: Path, i: int, text: str | None = None, **headers: str) -> Any:
    files = {"image": (f"{i}.png", (data / f"img{i}.png").read_bytes())}
    words = text or f"{['red apple', 'green leaf', 'blue sky'][i % 3]} number {i % 4}"
    return client.post("/v1/predict", files=files, data={"text": words}, headers=headers)


def test_routed_answers_wait_for_labels_that_reach_the_monitor(
    runtime: ModelRuntime, trained: tuple[Path, Path], tmp_path: Path
) -> None:
    """Everything below confidence 1 is routed: every answer waits for a label."""
    data = trained[1]
    config = ServeConfig(
        review=f"sqlite://{tmp_path / 'review.db'}",
        review_inputs=True,
        review_threshold=1.0,
        review_reasons=RULES,
    )
    with client_for(runtime, config) as client:
        answers = [predict(client, data, i).json() for i in range(24)]
        assert all(a["review"]["reasons"] == ["low_confidence"] for a in answers)
        page = client.get("/v1/review", params={"limit": 10}).json()
        assert page["total"] == 24 and page["next_offset"] == 10 and len(page["items"]) == 10
        first = page["items"][0]
        assert first["request_id"] == answers[0]["request_id"]
        assert first["prediction"] == answers[0]["prediction"]["label"]
        assert first["reasons"] == ["low_confidence"] and first["model"]["version"]
        image = client.get(first["inputs"]["image"]["url"])
        assert image.headers["content-type"] == "image/png"
        assert image.content == (data / "img0.png").read_bytes()
        assert client.get(first["inputs"]["text"]["url"]).text == "red apple number 0"
        assert client.get(f"/v1/review/{first['request_id']}").json() == first

        runtime.live_monitor().wait()  # type: ignore[union-attr]
        labels = [str(a["prediction"]["label"]) for a in answers]
        truth = labels[:6] + [
            next(x for x in runtime.info()["labels"] if x != y) for y in labels[6:10]
        ]
        for a, label in zip(answers[:10], truth, strict=True):
            body = {"request_id": a["request_id"], "label": label, "reviewer": "ana"}
            r = client.post("/v1/feedback", json=body).json()
            assert r["reviewed"] is True and r["known"] is True
        state = client.get("/v1/monitor").json()
        assert state["observed_accuracy"] == pytest.approx(0.6)  # real accuracy of window 1
        assert state["feedback"] == {"correct": 6, "wrong": 4}
        assert client.get("/v1/review").json()["total"] == 14
        done = client.get("/v1/review", params={"status": "reviewed"}).json()
        assert done["total"] == 10 and {i["reviewer"] for i in done["items"]} == {"ana"}
        metrics = client.get("/metrics").text
        for line in (
            "polyfuse_review_judged_total 24.0",
            'polyfuse_review_routed_total{reason="low_confidence"} 24.0',
            'polyfuse_review_routed_total{reason="contradiction"} 0.0',
            "polyfuse_review_queued_total 24.0",
            "polyfuse_review_pending 14.0",
            'polyfuse_review_reviewed_total{outcome="correct"} 6.0',
            'polyfuse_review_reviewed_total{outcome="wrong"} 4.0',
            "polyfuse_monitor_observed_accuracy 0.6",
        ):
            assert line in metrics, line


def test_by_default_the_error_model_routes_a_share_of_recent_answers(
    runtime: ModelRuntime, trained: tuple[Path, Path], tmp_path: Path
) -> None:
    """The service's router is `Router.of_profile` on the artifact's reference profile
    (the one benchmarks/review_routing.py measures): every answer carries its predicted
    error, and at most a quarter of any 12 answers in a row are routed."""
    from polyfuse.serve.http.review import open_queue
    from polyfuse.serve.review.routing import Router, RoutingPolicy

    config = ServeConfig(
        review=f"sqlite://{tmp_path / 'review.db'}", review_share=0.25, review_window=12
    )
    queue = open_queue(runtime, config)
    assert queue is not None
    live = runtime.live_monitor()
    assert live is not None
    policy = RoutingPolicy(share=0.25, window=12)
    fitted = Router.of_profile(policy, live.profile, live.profile.observations.outputs)
    if fitted.errors is None:
        assert queue.router.errors is None
    else:
        assert queue.router.errors is not None
        assert np.allclose(queue.router.errors.coef, fitted.errors.coef)
    with client_for(runtime, config, review=queue) as client:
        answers = [predict(client, trained[1], i).json()["review"] for i in range(24)]
        routed = np.array([a["routed"] for a in answers])
        assert all(0.0 <= a["error_probability"] <= 1.0 for a in answers)
        assert {r for a in answers for r in a["reasons"]} <= {"predicted_error"}
        assert routed.any() and np.convolve(routed, np.ones(12), mode="valid").max() <= 3
        metrics = client.get("/metrics").text
        line = f'polyfuse_review_routed_total{{reason="predicted_error"}} {float(routed.sum())}'
        assert line in metrics
        assert client.get("/v1/review").json()["total"] == int(routed.sum())


def test_firewall_verdicts_are_queued_with_what_the_policy_allows(
    runtime: ModelRuntime, trained: tuple[Path, Path], tmp_path: Path
) -> None:
    from polyfuse.guard.engine import Guard

    guard = Guard(
        text_detectors=[
            RegexDetector(r"ignore previous instructions", "PROMPT_INJECTION"),
            RegexDetector(r"\d{3}-\d{2}-\d{4}", "US_SSN"),
        ]
    )
    config = ServeConfig(
        review=f"sqlite://{tmp_path / 'review.db'}",
        review_inputs=True,
        review_threshold=0.0,
        review_reasons=RULES,
    )
    with client_for(runtime, config, guard=guard) as client:
        plain = predict(client, trained[1], 1).json()
        assert not plain["review"]["routed"] and plain["review"]["reasons"] == []
        redacted = predict(client, trained[1], 2, text="my ssn is 123-45-6789").json()
        assert redacted["review"]["reasons"] == ["firewall"]
        blocked = predict(client, trained[1], 3, text="ignore previous instructions now")
        assert blocked.status_code == 422
        items = {i["request_id"]: i for i in client.get("/v1/review").json()["items"]}
        assert set(items) == {redacted["request_id"], blocked.headers["x-request-id"]}
        kept = items[redacted["request_id"]]
        assert kept["firewall"] == "redact" and kept["findings"] == ["US_SSN"]
        text = client.get(kept["inputs"]["text"]["url"]).text
        assert "123-45-6789" not in text and text.startswith("my ssn is")
        refused = items[blocked.headers["x-request-id"]]
        assert refused["prediction"] is None and refused["firewall"] == "block"
        assert not any(i["stored"] for i in refused["inputs"].values())
        rid = blocked.headers["x-request-id"]
        assert client.get(f"/v1/review/{rid}/inputs/text").status_code == 404
        listed = client.get("/v1/review", params={"reason": "firewall"}).json()
        assert listed["total"] == 2
        assert client.get("/v1/review", params={"reason": "nope"}).status_code == 400
        assert client.get("/v1/review", params={"limit": "x"}).status_code == 400


def test_review_routes_need_the_api_key_and_name_the_reviewer(
    runtime: ModelRuntime, trained: tuple[Path, Path], tmp_path: Path
) -> None:
    config = ServeConfig(
        review=f"sqlite://{tmp_path / 'review.db'}",
        review_threshold=1.0,
        review_reasons=RULES,
        api_key_hashes=(hash_key("k1"),),
    )
    key = {"X-API-Key": "k1"}
    with client_for(runtime, config) as client:
        answer = predict(client, trained[1], 0, **key).json()
        assert client.get("/v1/review").status_code == 401
        assert client.get("/v1/review", headers={"X-API-Key": "bad"}).status_code == 403
        item = client.get("/v1/review", headers=key).json()["items"][0]
        assert not item["inputs"]["image"]["stored"] and "url" not in item["inputs"]["image"]
        body = {"request_id": answer["request_id"], "label": answer["prediction"]["label"]}
        assert client.post("/v1/feedback", json=body, headers=key).json()["outcome"] == "correct"
        done = client.get("/v1/review", params={"status": "reviewed"}, headers=key).json()
        assert done["items"][0]["reviewer"] == hash_key("k1")[:12]  # the key's id, never the key


def test_review_off_answers_not_found_and_feedback_still_feeds_the_monitor(
    runtime: ModelRuntime, trained: tuple[Path, Path]
) -> None:
    with client_for(runtime, ServeConfig()) as client:
        answer = predict(client, trained[1], 0).json()
        assert "review" not in answer
        r = client.get("/v1/review")
        assert r.status_code == 404 and "--review" in r.json()["error"]["hint"]
        body = {"request_id": answer["request_id"], "label": answer["prediction"]["label"]}
        assert client.post("/v1/feedback", json=body).json() == {
            "request_id": answer["request_id"],
            "known": True,
            "outcome": "correct",
        }
        assert "polyfuse_review_" not in client.get("/metrics").text


def test_review_without_monitoring_still_takes_labels(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    rt = ModelRuntime.load(trained[0], preprocess="thread", cache="none", monitor=False)
    config = ServeConfig(
        review=f"sqlite://{tmp_path / 'r.db'}", review_threshold=1.0, review_reasons=RULES
    )
    with client_for(rt, config) as client:
        answer = predict(client, trained[1], 0).json()
        body = {"request_id": answer["request_id"], "label": answer["prediction"]["label"]}
        r = client.post("/v1/feedback", json=body).json()
        assert r == {
            "request_id": answer["request_id"],
            "reviewed": True,
            "known": True,
            "outcome": "correct",
        }


def test_review_inputs_without_review_is_refused() -> None:
    from polyfuse.core.errors import ConfigError

    with pytest.raises(ConfigError, match="--review-inputs"):
        ServeConfig(review_inputs=True).check()
    with pytest.raises(ConfigError, match="--review"):
        ServeConfig(review="postgres://x").check()
