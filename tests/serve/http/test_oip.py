"""Open Inference Protocol v2: metadata, readiness, JSON and binary infer, and the real
``tritonclient[http]`` against a real uvicorn server."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest

from polyfuse.serve.config import ServeConfig, hash_key
from polyfuse.serve.http.app import create_app
from polyfuse.serve.types import ServeError
from tests.serve.fakes import Client, FakeRuntime, LiveServer

PNG = b"\x89PNG\r\n\x1a\n" + b"\xff" * 16


def make(runtime: FakeRuntime | None = None, **config: object) -> Client:
    return Client(create_app(runtime or FakeRuntime(), ServeConfig(**config)))  # type: ignore[arg-type]


def infer_json(*texts: str) -> dict[str, object]:
    return {
        "id": "req-1",
        "inputs": [
            {"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": list(texts)}
        ],
    }


def test_server_and_model_metadata() -> None:
    client = make()
    assert client.get("/v2").json()["name"] == "polyfuse"
    meta = client.get("/v2/models/fake").json()
    assert meta["name"] == "fake" and meta["versions"] == ["3"]
    assert [i["name"] for i in meta["inputs"]] == ["text", "image"]
    assert {i["datatype"] for i in meta["inputs"]} == {"BYTES"}
    assert meta["outputs"][1] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}
    assert client.get("/v2/models/fake/versions/3").status_code == 200


def test_health_and_model_ready() -> None:
    runtime = FakeRuntime()
    client = make(runtime)
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2/models/fake/ready").status_code == 200
    runtime.is_ready = False
    assert client.get("/v2/health/ready").status_code == 503
    assert client.get("/v2/models/fake/ready").status_code == 503


def test_when_model_unknown_then_404_with_string_error() -> None:
    response = make().get("/v2/models/other")
    assert response.status_code == 404
    body = response.json()
    assert isinstance(body["error"], str) and body["code"] == "not_found"
    assert make().get("/v2/models/fake/versions/9").status_code == 404


def test_infer_json_batch() -> None:
    response = make().post("/v2/models/fake/infer", json=infer_json("a cat", "a dog"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "req-1" and body["model_name"] == "fake"
    label, probs = body["outputs"]
    assert label == {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["cat", "dog"]}
    assert probs["shape"] == [2, 2]
    assert probs["data"] == pytest.approx([0.9, 0.1, 0.2, 0.8])


def test_infer_base64_content_type() -> None:
    runtime = FakeRuntime()
    request = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1],
                "data": [base64.b64encode(PNG).decode()],
                "parameters": {"content_type": "base64"},
            }
        ],
        "outputs": [{"name": "label"}],
    }
    response = make(runtime).post("/v2/models/fake/infer", json=request)
    assert response.status_code == 200, response.text
    assert runtime.requests[0].inputs == {"image": PNG}
    assert [o["name"] for o in response.json()["outputs"]] == ["label"]


def test_infer_binary_extension_in_and_out() -> None:
    runtime = FakeRuntime()
    raw = struct.pack("<I", len(PNG)) + PNG
    header = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1],
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header).encode()
    response = make(runtime).post(
        "/v2/models/fake/infer",
        content=head + raw,
        headers={
            "Inference-Header-Content-Length": str(len(head)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert response.status_code == 200, response.text
    assert runtime.requests[0].inputs == {"image": PNG}
    n = int(response.headers["inference-header-content-length"])
    meta = json.loads(response.content[:n])
    sizes = [o["parameters"]["binary_data_size"] for o in meta["outputs"]]
    label_raw = response.content[n : n + sizes[0]]
    probs = np.frombuffer(response.content[n + sizes[0] :], dtype="<f4")
    assert label_raw == struct.pack("<I", 3) + b"dog"
    assert probs.tolist() == pytest.approx([0.2, 0.8])


@pytest.mark.parametrize(
    "request_body",
    [
        {"inputs": [{"name": "audio", "datatype": "BYTES", "shape": [1], "data": ["x"]}]},
        {"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["x"]}]},
        {
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"]}],
            "outputs": [{"name": "logits"}],
        },
        {"inputs": []},
        {"nothing": 1},
    ],
)
def test_when_infer_request_is_bad_then_400_string_error(request_body: object) -> None:
    response = make().post("/v2/models/fake/infer", json=request_body)
    assert response.status_code == 400, response.text
    assert isinstance(response.json()["error"], str)


def test_when_runtime_overloaded_then_infer_is_503_with_retry_after() -> None:
    runtime = FakeRuntime(error=ServeError("overloaded", "queue full", retry_after=1.0))
    response = make(runtime).post("/v2/models/fake/infer", json=infer_json("x"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


# ------------------------------------------------------------------ real client, real server
@pytest.mark.integration
def test_tritonclient_http_against_uvicorn() -> None:
    httpclient = pytest.importorskip("tritonclient.http")
    from tritonclient.utils import InferenceServerException

    config = ServeConfig(api_key_hashes=(hash_key("k1"),))
    runtime = FakeRuntime()
    with LiveServer(create_app(runtime, config)) as server:
        client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")

        def auth() -> dict[str, str]:  # a fresh dict each call: infer() adds headers to it
            return {"Authorization": "Bearer k1"}

        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("fake", headers=auth())
        meta = client.get_model_metadata("fake", headers=auth())
        assert [i["name"] for i in meta["inputs"]] == ["text", "image"]

        text = httpclient.InferInput("text", [2], "BYTES")
        text.set_data_from_numpy(np.array([b"a cat", b"a dog"], dtype=object))
        image = httpclient.InferInput("image", [2], "BYTES")
        image.set_data_from_numpy(np.array([PNG, PNG], dtype=object), binary_data=True)
        result = client.infer("fake", [text, image], headers=auth())
        assert result.as_numpy("label").tolist() == [b"cat", b"dog"]
        probs = result.as_numpy("probabilities")
        assert probs.dtype == np.float32 and probs.shape == (2, 2)
        assert probs[0].tolist() == pytest.approx([0.9, 0.1])
        assert runtime.requests[0].inputs["image"] == PNG

        outputs = [httpclient.InferRequestedOutput("label", binary_data=False)]
        json_text = httpclient.InferInput("text", [1], "BYTES")
        json_text.set_data_from_numpy(np.array(["a cat"], dtype=object), binary_data=False)
        result = client.infer("fake", [json_text], outputs=outputs, headers=auth())
        assert result.as_numpy("label").tolist() == ["cat"]  # JSON outputs come back as str

        with pytest.raises(InferenceServerException) as err:
            client.infer("fake", [json_text])
        assert err.value.status() == "401"
        client.close()
    assert runtime.closed


@pytest.mark.integration
def test_v1_predict_over_a_real_socket() -> None:
    import httpx

    runtime = FakeRuntime()
    with LiveServer(create_app(runtime, ServeConfig())) as server:
        response = httpx.post(
            f"{server.url}/v1/predict",
            files={"image": ("a.png", PNG, "image/png")},
            data={"text": "a cat"},
            headers={"X-Request-ID": "live-1"},
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == "live-1"
        assert response.json()["prediction"]["label"] == "cat"
        assert httpx.get(f"{server.url}/readyz").status_code == 200
    assert runtime.closed
