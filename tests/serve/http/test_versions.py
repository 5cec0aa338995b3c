"""Several versions through a real uvicorn server on loopback: answers name their version
(REST, OIP, request log), sticky routing by header, ``/v1/versions``, admin keys on the
operator's routes, delayed labels per version, the shadow's records and the metrics
against the catalogue."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from polyfuse.ops.catalogue import METRICS
from polyfuse.release.canary import CanarySettings
from polyfuse.serve.config import ServeConfig, ShadowSettings, hash_key
from polyfuse.serve.http.app import create_app
from polyfuse.serve.versions.runtime import VersionedRuntime, load_versions
from polyfuse.serve.versions.sources import VersionSource
from tests.serve.fakes import LiveServer
from tests.serve.versions.trained import Models

OPTIONS: dict[str, Any] = {"preprocess": "thread", "max_batch": 1, "trace": False}
USER, ADMIN = "user-key", "admin-key"


@pytest.fixture(scope="module")
def served(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    log = tmp_path_factory.mktemp("log") / "requests.jsonl"
    versions = load_versions(
        VersionSource(str(models.champion), models.champion),
        canary=VersionSource(str(models.worse), models.worse),
        shadow=VersionSource(str(models.worse), models.worse),
        weight=0.5,
        settings=CanarySettings(min_samples=1000),  # no automatic decision in this module
        shadow_settings=ShadowSettings(queue=1000),
        **OPTIONS,
    )
    config = ServeConfig(
        api_key_hashes=(hash_key(USER), hash_key(ADMIN)),
        admin_key_hashes=(hash_key(ADMIN),),
        request_log=str(log),
        gc_freeze=False,
    )
    with LiveServer(create_app(versions, config)) as server:
        yield {"url": server.url, "versions": versions, "log": log}


def post(url: str, path: str, key: str = USER, **kwargs: Any) -> httpx.Response:
    headers = {"X-API-Key": key, **kwargs.pop("headers", {})}
    return httpx.post(url + path, headers=headers, timeout=30, **kwargs)


def predict(served: dict[str, Any], models: Models, i: int, caller: str) -> dict[str, Any]:
    row = models.rows[i]
    files = {"image": (models.data / row["image"]).read_bytes()}
    response = post(
        served["url"],
        "/v1/predict",
        files=files,
        data={"text": row["text"]},
        headers={"X-Polyfuse-Route": caller, "X-Request-ID": f"req-{caller}-{i}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_answers_name_their_version_and_callers_stick(
    served: dict[str, Any], models: Models
) -> None:
    versions: VersionedRuntime = served["versions"]
    names = {v.role: v.name for v in versions.versions}
    seen: dict[str, set[str]] = {}
    for caller in (f"user-{u}" for u in range(12)):
        for i in range(3):
            body = predict(served, models, i, caller)
            assert (body["role"], body["version"]) in {
                ("champion", names["champion"]),
                ("canary", names["canary"]),
            }
            seen.setdefault(caller, set()).add(body["version"])
    assert all(len(v) == 1 for v in seen.values())  # sticky
    assert len(set().union(*seen.values())) == 2  # both versions answer someone


def test_versions_route_shows_roles_counts_and_the_judgement(served: dict[str, Any]) -> None:
    state = httpx.get(served["url"] + "/v1/versions", headers={"X-API-Key": USER}).json()
    roles = [v["role"] for v in state["versions"]]
    assert roles == ["champion", "canary", "shadow"]
    # sources given as folders are shown by name: no server path in the answer
    assert [v["source"] for v in state["versions"]] == [
        Path(v.source.given).name for v in served["versions"].versions
    ]
    assert state["canary"]["weight"] == 0.5 and not state["canary"]["rolled_back"]
    assert set(state["canary"]["judgement"]["signals"]) == {
        "errors",
        "degraded",
        "latency",
        "slow",
        "estimated_accuracy",
        "accuracy",
    }
    # the canary and the shadow are the same build: their stages run once
    assert any(len(users) == 2 for users in state["shared_stages"].values())


def test_operator_routes_need_an_admin_key(served: dict[str, Any]) -> None:
    url = served["url"]
    refused = post(url, "/v1/versions/weight", json={"weight": 0.25})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert post(url, "/v1/versions/weight", ADMIN, json={"weight": 2}).status_code == 400
    done = post(url, "/v1/versions/weight", ADMIN, json={"weight": 0.25})
    assert done.status_code == 200 and done.json()["weight"] == 0.25
    assert served["versions"].weight == 0.25
    promote = post(url, "/v1/versions/promote", ADMIN, json={})
    assert promote.status_code == 400 and "force" in promote.json()["error"]["hint"]
    post(url, "/v1/versions/weight", ADMIN, json={"weight": 0.5})


def test_feedback_reaches_the_version_that_answered(served: dict[str, Any], models: Models) -> None:
    body = predict(served, models, 5, "feedback-user")
    answer = post(
        served["url"],
        "/v1/feedback",
        json={"request_id": body["request_id"], "label": models.label(5)},
    ).json()
    assert answer["known"] and answer["outcome"] in ("correct", "wrong")
    versions: VersionedRuntime = served["versions"]
    mine = next(v for v in versions.versions if v.name == body["version"])
    assert sum(mine.ledger.feedback.values()) >= 1


def test_oip_answers_name_each_items_version(served: dict[str, Any], models: Models) -> None:
    rows = models.rows[:2]
    images = [base64.b64encode((models.data / r["image"]).read_bytes()).decode() for r in rows]
    payload = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [2],
                "data": images,
                "parameters": {"content_type": "base64"},
            },
            {"name": "text", "datatype": "BYTES", "shape": [2], "data": [r["text"] for r in rows]},
        ]
    }
    name = served["versions"].info()["name"]
    response = post(
        served["url"],
        f"/v2/models/{name}/infer",
        json=payload,
        headers={"X-Polyfuse-Route": "oip-user"},
    )
    assert response.status_code == 200, response.text
    versions = response.json()["parameters"]["versions"]
    assert len(versions) == 2 and len(set(versions)) == 1  # one caller, one version


def test_request_log_names_versions_and_holds_the_shadows_answers(
    served: dict[str, Any],
) -> None:
    versions: VersionedRuntime = served["versions"]
    deadline = time.monotonic() + 20
    while versions.runner.stats()["queue_depth"] and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    records = [json.loads(line) for line in Path(served["log"]).read_text().splitlines()]
    answered = [r for r in records if r.get("route") == "/v1/predict"]
    shadow = [r for r in records if r.get("route") == "shadow"]
    assert answered and all(r["role"] in ("champion", "canary") for r in answered)
    champion_ids = {r["request_id"] for r in answered if r["role"] == "champion"}
    assert shadow and {r["request_id"] for r in shadow} <= champion_ids
    assert all(r["version"] == versions.versions[2].name for r in shadow)


def test_metrics_are_catalogued_with_their_labels(served: dict[str, Any]) -> None:
    text = httpx.get(served["url"] + "/metrics").text
    families = [
        m
        for m in METRICS
        if m.name.startswith(("polyfuse_version", "polyfuse_canary", "polyfuse_shadow"))
    ]
    for metric in families:
        if metric.name in (
            "polyfuse_version_estimated_accuracy",
            "polyfuse_version_observed_accuracy",
            "polyfuse_version_drift",
            "polyfuse_version_errors_total",
        ):
            continue  # after the first monitor window / the first error only
        series = metric.series[0]
        found = re.search(rf"^{series}(\{{([^}}]*)\}})? ", text, re.M)
        assert found is not None, series
        names = {p.split("=")[0] for p in (found[2] or "").split(",") if p} - {"le"}
        assert names == set(metric.labels), (metric.name, names)


def test_one_version_services_answer_versions_but_have_no_canary(models: Models) -> None:
    from polyfuse.serve.runtime.model import ModelRuntime

    runtime = ModelRuntime.load(models.champion, **OPTIONS)
    with LiveServer(create_app(runtime, ServeConfig(gc_freeze=False))) as server:
        state = httpx.get(server.url + "/v1/versions").json()
        assert state == {"champion": "champion", "canary": None, "shadow": None}
        response = httpx.post(server.url + "/v1/versions/rollback")
        assert response.status_code == 404 and "--canary" in response.json()["error"]["hint"]
