"""Drift monitoring in a real service: gauges, feedback, quarantine, the request log and
``polyfuse monitor --log`` over it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyfuse.cli import main
from polyfuse.serve.config import ServeConfig
from polyfuse.serve.runtime.model import ModelRuntime


@pytest.fixture
def served(trained: tuple[Path, Path], tmp_path: Path):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from polyfuse.serve.http.app import create_app

    art, data = trained
    rt = ModelRuntime.load(
        art, preprocess="thread", cache="memory", monitor_window=10, monitor_rate=0
    )
    log = tmp_path / "requests.jsonl"
    config = ServeConfig(request_log=str(log))
    with TestClient(create_app(rt, config), client=("127.0.0.1", 50000)) as client:
        yield client, rt, data, log


def _predict(client, data: Path, i: int, **extra: bytes):  # type: ignore[no-untyped-def]
    files = {"image": (f"{i}.png", (data / f"img{i}.png").read_bytes())}
    files.update({k: (k, v) for k, v in extra.items()})
    words = ["red apple", "green leaf", "blue sky"][i % 3]
    r = client.post("/v1/predict", files=files, data={"text": f"{words} number {i % 4}"})
    assert r.status_code == 200, r.text
    return r.json()


def test_windows_gauges_feedback_and_log(served) -> None:  # type: ignore[no-untyped-def]
    client, rt, data, log = served
    answers = [_predict(client, data, i) for i in range(24)]
    rt.live_monitor().wait()
    state = client.get("/v1/monitor").json()
    # windows assess in the background (the first in a process it starts first); the
    # requests that arrive while one runs wait for the next window
    assert 1 <= state["windows"] <= 2
    assert state["samples"] <= 24 - 10 * state["windows"]
    assert set(state["modalities"]) == {"image", "text"}
    metrics = client.get("/metrics").text
    for name in (
        'polyfuse_monitor_drift{modality="image"}',
        'polyfuse_monitor_p_value{modality="prediction"}',
        'polyfuse_monitor_quarantined{modality="text"} 0.0',
        "polyfuse_monitor_estimated_accuracy",
        "polyfuse_monitor_window_samples",
    ):
        assert name in metrics, name
    first = answers[0]
    r = client.post(
        "/v1/feedback",
        json={"request_id": first["request_id"], "label": first["prediction"]["label"]},
    )
    assert r.json() == {"request_id": first["request_id"], "known": True, "outcome": "correct"}
    r = client.post(
        "/v1/feedback", json={"request_id": "nope", "label": first["prediction"]["label"]}
    )
    assert r.json()["outcome"] == "unknown"
    bad = client.post("/v1/feedback", json={"request_id": "x", "label": "no-such-label"})
    assert bad.status_code == 400 and "labels" in bad.json()["error"]["hint"]
    metrics = client.get("/metrics").text
    assert 'polyfuse_feedback_total{outcome="correct"} 1.0' in metrics
    records = [json.loads(line) for line in log.read_text().splitlines()]
    logged = [r for r in records if "monitor" in r]
    assert len(logged) == 24
    monitor = logged[0]["monitor"]
    assert set(monitor) == {"probs", "statistics", "sketches", "unimodal", "without"}
    assert set(monitor["statistics"]) == {"image", "text"}  # never raw content
    assert "red" not in json.dumps(monitor) and "apple" not in json.dumps(monitor)


def test_manual_quarantine_hides_the_modality_until_lifted(served) -> None:  # type: ignore[no-untyped-def]
    client, _, data, _ = served
    r = client.post("/v1/monitor/quarantine", json={"modality": "text"})
    assert r.json() == {"modality": "text", "quarantined": True}
    answer = _predict(client, data, 3)
    assert answer["degraded"] is True
    assert answer["degraded_reasons"] == {"text": "quarantined: drift"}
    assert answer["modalities_used"] == ["image"]
    image_only = client.post(
        "/v1/predict", files={"image": ("3.png", (data / "img3.png").read_bytes())}
    ).json()
    assert answer["prediction"]["probabilities"] == image_only["prediction"]["probabilities"]
    assert 'polyfuse_monitor_quarantined{modality="text"} 1.0' in client.get("/metrics").text
    assert client.post("/v1/monitor/lift", json={"modality": "text"}).json()["lifted"] is True
    assert _predict(client, data, 3)["degraded"] is False
    assert client.post("/v1/monitor/lift", json={"modality": "video"}).status_code == 400


def test_monitor_log_reads_the_request_log(served, capsys) -> None:  # type: ignore[no-untyped-def]
    client, rt, data, log = served
    for i in range(20):
        _predict(client, data, i)
    art = rt.artifact.path
    code = main(["monitor", str(art), "--log", str(log), "--window", "10", "--json", "-q"])
    result = json.loads(capsys.readouterr().out)
    assert code in (0, 1)
    assert result["n"] == 20 and len(result["windows"]) == 2
    assert set(result["modalities"]) == {"image", "text"}


def test_sampling_caps_the_monitored_rate(trained: tuple[Path, Path]) -> None:
    from polyfuse.artifacts.classifier import load_artifact
    from polyfuse.serve.runtime.settings import RuntimeConfig
    from polyfuse.serve.runtime.watch import Watch

    watch = Watch.load(
        load_artifact(trained[0]), RuntimeConfig(monitor_rate=5.0, monitor_window=10)
    )
    assert watch is not None
    taken = sum(watch.sample() for _ in range(1000))  # a burst: the bucket holds one window
    assert 10 <= taken <= 12
    every = Watch.load(load_artifact(trained[0]), RuntimeConfig(monitor_rate=0.0))
    assert every is not None and all(every.sample() for _ in range(1000))


def test_monitoring_off_answers_not_found(trained: tuple[Path, Path]) -> None:
    from fastapi.testclient import TestClient

    from polyfuse.serve.http.app import create_app

    rt = ModelRuntime.load(trained[0], preprocess="thread", cache="none", monitor=False)
    with TestClient(create_app(rt), client=("127.0.0.1", 50000)) as client:
        r = client.get("/v1/monitor")
        assert r.status_code == 404 and "--no-monitor" in r.json()["error"]["hint"]
        assert "polyfuse_monitor_" not in client.get("/metrics").text


def test_multilabel_model_is_watched_and_takes_label_sets(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from polyfuse.core.config import Config
    from polyfuse.serve.http.app import create_app
    from polyfuse.train import Trainer
    from tests.conftest import relabel, write_manifest, write_synthetic
    from tests.serve.conftest import CONFIG

    rows = relabel(write_synthetic(tmp_path / "data", 24, missing=False), "multilabel")
    train = write_manifest(tmp_path / "data" / "train.jsonl", rows[:18])
    val = write_manifest(tmp_path / "data" / "val.jsonl", rows[18:])
    Trainer(
        Config.from_dict({**CONFIG, "task": "multilabel"}), tmp_path / "art", progress=False
    ).fit(train, val)
    rt = ModelRuntime.load(
        tmp_path / "art", preprocess="thread", cache="none", monitor_window=10, monitor_rate=0
    )
    with TestClient(create_app(rt), client=("127.0.0.1", 50000)) as client:
        answers = [_predict(client, tmp_path / "data", i) for i in range(12)]
        rt.live_monitor().wait()
        assert client.get("/v1/monitor").json()["windows"] == 1
        first = answers[0]
        said = first["prediction"]["label"]
        assert isinstance(said, list)
        r = client.post("/v1/feedback", json={"request_id": first["request_id"], "label": said})
        assert r.json()["outcome"] == "correct"
        other = [lab for lab in ("c0", "c1", "c2", "even") if lab not in said][:1]
        r = client.post(
            "/v1/feedback", json={"request_id": answers[1]["request_id"], "label": other}
        )
        assert r.json()["outcome"] == (
            "correct" if answers[1]["prediction"]["label"] == other else "wrong"
        )
        bad = client.post("/v1/feedback", json={"request_id": "x", "label": ["c0", "nope"]})
        assert bad.status_code == 400 and "nope" in bad.json()["error"]["message"]
