"""What the service returns: every route's texts under the policy's ``outputs`` section
(caption, search with its stored metadata, consistency, predict's and OIP's labels) and
no server file path in any answer or error. The alignment artifacts and the runtime are
faked (the boundary); the real captioner, index and Presidio are in
``tests/serve/runtime/test_align.py``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from polyfuse.guard.engine import Guard
from polyfuse.guard.policy import DEFAULT_POLICY, Policy
from polyfuse.serve.config import ServeConfig
from polyfuse.serve.http.app import create_app
from polyfuse.serve.http.outputs import public_path, scrub, scrub_paths
from polyfuse.serve.types import ServeError, ServeRequest, ServeResult
from tests.guard.fakes import RegexDetector
from tests.serve.fakes import Client, FakeRuntime

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
EMAIL, CARD = "jane.doe@example.com", "4111 1111 1111 1111"
VALUES = (EMAIL, CARD, "1111", "example")


class FakeAlign:
    """`AlignServices` as the service sees it: answers that hold PII and server paths."""

    routes = ("search", "consistency", "caption")

    def __init__(self, caption: str = f"a sign saying {EMAIL}") -> None:
        self.caption_text = caption

    def require(self, route: str) -> None:
        """Every route is served."""

    def modalities(self, route: str) -> tuple[str, ...]:
        return ("image",) if route == "caption" else ("image", "text")

    def info(self) -> dict[str, Any]:
        return {"routes": list(self.routes)}

    async def search(self, inputs: Any, k: int) -> dict[str, Any]:
        meta = {"image": "/srv/data/images/0001.png", "text": [f"card {CARD}", "a dog"]}
        hits = [{"id": "/srv/data/images/0001.png", "score": 0.9, "metadata": meta}]
        return {"query": "text", "searched": "image", "hits": hits[:k]}

    async def consistency(self, inputs: Any) -> dict[str, Any]:
        return {"score": 0.1, "contradiction": True, "explanation": f"the text names {EMAIL}"}

    async def caption(self, inputs: Any, beam: int) -> dict[str, Any]:
        return {"caption": self.caption_text, "beam": beam}

    def close(self) -> None:
        """Nothing to stop."""


class Blank:
    """An image scanner that finds nothing (inputs are not what these tests are about)."""

    def scan(self, data: bytes) -> list[Any]:
        return []


class MailLabels(FakeRuntime):
    """A classifier one of whose labels is an e-mail address."""

    labels = ("cat", "ops@example.com")

    async def predict(self, request: ServeRequest) -> ServeResult:
        result = await super().predict(request)
        rename = {"dog": "ops@example.com"}
        return dataclasses.replace(
            result,
            label=rename.get(result.label, result.label),
            probabilities={rename.get(k, k): v for k, v in result.probabilities.items()},
        )


def guard(outputs: dict[str, Any] | None = None, audit: Path | None = None) -> Guard:
    """The default policy (plus ``outputs``), its PII found by regex detectors."""
    detectors = [
        RegexDetector(r"[\w.]+@[\w.]+\.\w+", "EMAIL_ADDRESS"),
        RegexDetector(r"\d{4} \d{4} \d{4} \d{4}", "CREDIT_CARD"),
    ]
    policy = {**DEFAULT_POLICY, **({"outputs": outputs} if outputs is not None else {})}
    return Guard(
        Policy.from_dict(policy), text_detectors=detectors, image_scanner=Blank(), audit=audit
    )


def make(guard: Guard | None = None, runtime: FakeRuntime | None = None, **config: Any) -> Client:
    app = create_app(
        runtime or FakeRuntime(), ServeConfig(**config), guard=guard, align=FakeAlign()
    )  # type: ignore[arg-type]
    return Client(app)


def clean(text: str) -> bool:
    return not any(v in text for v in VALUES) and "/srv" not in text


# ------------------------------------------------------------------ paths
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/srv/data/img 1.png", "img 1.png"),
        ("cannot read '/srv/models/a/model.safetensors'", "cannot read 'model.safetensors'"),
        ("file:///etc/passwd", "passwd"),
        ("see ~/runs/index/index.json", "see index.json"),
        ("C:\\data\\cat.png", "cat.png"),
        ("see /docs or POST /v1/scan and /v2/models/m/infer", None),
        ("start it with --review sqlite:///var/lib/review.db", None),
        ("http://host/a/b and redis://h:6379/0", None),
        ("and/or 24/7 km/h, images/0001.png", None),
    ],
)
def test_server_paths_become_file_names(text: str, expected: str | None) -> None:
    assert scrub_paths(text) == (text if expected is None else expected)


def test_scrub_walks_json_and_public_path_keeps_the_name() -> None:
    assert scrub({"a": ["/x/y.png", 3, {"/k/v": None}]}) == {"a": ["y.png", 3, {"v": None}]}
    assert public_path("/srv/data/") == "data" and public_path("/") == ""


# ------------------------------------------------------------------ routes
def test_caption_comes_back_redacted_with_the_redactions_reported(tmp_path: Path) -> None:
    client = make(guard(audit=tmp_path / "audit.jsonl"), request_log=str(tmp_path / "r.jsonl"))
    r = client.post("/v1/caption", files={"image": ("x.png", PNG)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["caption"] == "a sign saying <EMAIL_ADDRESS>"
    assert body["output_scan"]["action"] == "redact"
    assert body["output_scan"]["redacted"] == {"EMAIL_ADDRESS": 1}
    assert body["output_scan"]["findings"][0]["field"] == "caption"
    assert clean(r.text)
    metrics = client.get("/metrics").text
    assert (
        'polyfuse_firewall_output_findings_total{action="redact",type="EMAIL_ADDRESS"} 1.0'
        in metrics
    )
    audit = (tmp_path / "audit.jsonl").read_text()
    assert '"output": {"name": "/v1/caption ' in audit and EMAIL not in audit
    (log,) = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert log["output_findings"] == ["EMAIL_ADDRESS"] and log["output_action"] == "redact"


def test_search_results_and_stored_metadata_come_back_redacted_without_paths() -> None:
    r = make(guard()).post("/v1/search?k=1", files={"text": (None, "a dog")})
    assert r.status_code == 200, r.text
    body = r.json()
    (hit,) = body["hits"]
    assert hit["id"] == "0001.png" and hit["metadata"]["image"] == "0001.png"
    assert hit["metadata"]["text"] == ["card <CREDIT_CARD>", "a dog"]
    assert body["output_scan"]["redacted"] == {"CREDIT_CARD": 1}
    assert body["output_scan"]["findings"][0]["field"] == "hits[0].metadata.text[0]"
    assert clean(r.text)


def test_consistency_explanation_comes_back_redacted() -> None:
    files = {"image": ("x.png", PNG), "text": (None, "a dog")}
    r = make(guard()).post("/v1/consistency", files=files)
    assert r.status_code == 200, r.text
    assert r.json()["explanation"] == "the text names <EMAIL_ADDRESS>"
    assert clean(r.text)


def test_without_a_firewall_paths_still_never_go_out() -> None:
    r = make().post("/v1/search?k=1", files={"text": (None, "a dog")})
    assert r.status_code == 200 and "/srv" not in r.text and "output_scan" not in r.json()


def test_outputs_turned_off_or_blocking() -> None:
    off = make(guard({"enabled": False})).post("/v1/caption", files={"image": ("x.png", PNG)})
    assert off.json()["caption"] == f"a sign saying {EMAIL}" and "output_scan" not in off.json()
    blocking = make(guard({"entities": {"EMAIL_ADDRESS": "block"}}))
    r = blocking.post("/v1/caption", files={"image": ("x.png", PNG)})
    assert r.status_code == 422 and r.json()["error"]["code"] == "blocked_by_policy"
    found = r.json()["error"]["details"]["output_findings"]
    assert [(f["type"], f["action"]) for f in found] == [("EMAIL_ADDRESS", "block")]
    assert clean(r.text)


def test_predict_and_info_name_a_pii_label_redacted() -> None:
    client = make(guard(), MailLabels())
    assert client.get("/v1/info").json()["labels"] == ["cat", "<EMAIL_ADDRESS>"]
    r = client.post("/v1/predict", json={"inputs": {"text": "a dog"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["prediction"]["label"] == "<EMAIL_ADDRESS>"
    assert set(body["prediction"]["probabilities"]) == {"cat", "<EMAIL_ADDRESS>"}
    assert body["output_scan"]["redacted"] == {"EMAIL_ADDRESS": 1}
    assert "ops@example.com" not in r.text
    plain = make(guard()).post("/v1/predict", json={"inputs": {"text": "a cat"}}).json()
    assert plain["prediction"]["label"] == "cat"
    assert plain["output_scan"] == {"action": "allow", "redacted": {}, "findings": []}


def test_oip_labels_come_back_redacted() -> None:
    client = make(guard(), MailLabels())
    request = {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["a cat", "a dog"]}]
    }
    r = client.post("/v2/models/fake/infer", json=request)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["outputs"][0]["data"] == ["cat", "<EMAIL_ADDRESS>"]
    assert body["outputs"][1]["data"] == pytest.approx([0.9, 0.1, 0.2, 0.8])
    assert body["parameters"] == {"output_action": "redact", "output_redacted": "EMAIL_ADDRESS:1"}
    meta = client.get("/v2/models/fake").json()
    assert meta["parameters"]["labels"] == ["cat", "<EMAIL_ADDRESS>"]
    assert "ops@example.com" not in r.text


@pytest.mark.parametrize("path", ["/v1/predict", "/v2/models/fake/infer"])
def test_error_messages_never_hold_server_paths(path: str) -> None:
    error = ServeError(
        "invalid_input",
        "cannot read /srv/models/digits/model.safetensors",
        hint="check /srv/models/digits",
        details={"file": "/srv/models/digits/x.png"},
    )
    client = make(runtime=FakeRuntime(error=error))
    payload: dict[str, Any] = (
        {"json": {"inputs": {"text": "x"}}}
        if path == "/v1/predict"
        else {
            "json": {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}
        }
    )
    r = client.post(path, **payload)
    assert r.status_code == 400 and "/srv" not in r.text and "model.safetensors" in r.text
