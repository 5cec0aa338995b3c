"""The request service's sync check: a predict request carrying a video gets each video's
sound/picture offset in its answer and in the metrics; requests without video, and a
service with ``sync: false``, are untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyfuse.serve.config import ServeConfig
from polyfuse.serve.http.app import create_app
from tests.serve.fakes import Client, FakeRuntime
from tests.train.test_validate import write_videos


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return {k: p.read_bytes() for k, p in write_videos(tmp_path_factory.mktemp("v")).items()}


def post(client: Client, video: bytes) -> dict[str, object]:
    files = {"video": ("clip.mp4", video, "video/mp4")}
    r = client.post("/v1/predict", files=files, data={"text": "a cat"})
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def test_a_late_soundtrack_is_reported_in_the_answer_and_the_metrics(
    videos: dict[str, bytes],
) -> None:
    client = Client(create_app(FakeRuntime(("text", "video")), ServeConfig()))  # type: ignore[arg-type]
    late = post(client, videos["late"])["sync"]
    assert isinstance(late, dict)
    est = late["video"]
    assert est["desync"] is True and abs(est["av_offset_ms"] - 300) < 60, est
    assert est["method"] == "signal"
    in_sync = post(client, videos["in_sync"])["sync"]
    assert isinstance(in_sync, dict) and in_sync["video"]["desync"] is False
    assert post(client, videos["mute"])["sync"] == {"video": None}
    metrics = client.get("/metrics").text
    assert 'polyfuse_av_desync_total{modality="video"} 1.0' in metrics
    assert 'polyfuse_av_offset_ms_count{modality="video"} 2.0' in metrics
    plain = client.post("/v1/predict", json={"inputs": {"text": "a cat"}}).json()
    assert "sync" not in plain


def test_sync_off(videos: dict[str, bytes], tmp_path: Path) -> None:
    app = create_app(FakeRuntime(("text", "video")), ServeConfig(sync=False))  # type: ignore[arg-type]
    assert "sync" not in post(Client(app), videos["late"])


def test_explain_frames_asks_the_runtime_and_unknown_explanations_are_refused(
    videos: dict[str, bytes],
) -> None:
    client = Client(create_app(FakeRuntime(("text", "video")), ServeConfig(sync=False)))  # type: ignore[arg-type]
    files = {"video": ("clip.mp4", videos["late"], "video/mp4")}
    r = client.post("/v1/predict?explain=frames", files=files)
    assert r.status_code == 200, r.text
    frames = r.json()["frames"]["video"]["frames"]
    assert [f["t"] for f in frames] == [0.0, 0.5, 1.0, 1.5]
    assert "frames" not in client.post("/v1/predict", files=files).json()
    bad = client.post("/v1/predict?explain=pixels", files=files)
    assert bad.status_code == 400 and "explain= takes frames" in bad.text
