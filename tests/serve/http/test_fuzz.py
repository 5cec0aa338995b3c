"""Bad input against the real app over a real `ModelRuntime` (a tiny trained image +
audio + text artifact): schemathesis over the OpenAPI spec, the firewall's corpus of
malformed files as every modality's part, and hand-made broken payloads. Every
answer is a typed 4xx (or a 200 where the content turns out readable), never a 5xx,
and the server stays healthy."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)

from polyfuse.serve.config import ServeConfig
from polyfuse.serve.http.app import create_app
from polyfuse.serve.runtime.model import ModelRuntime
from polyfuse.serve.types import ERROR_STATUS
from tests.serve.conftest import CONFIG, train_tiny
from tests.serve.fakes import Client, FakeRuntime, LiveServer

MALFORMED = Path(__file__).resolve().parents[2] / "data" / "malformed"
CORPUS = sorted(json.loads((MALFORMED / "MANIFEST.json").read_text()))
MODALITIES = ("image", "audio", "text")
EXAMPLES = 20  # per operation and mode
REFUSED = {
    "image": [
        "bomb-100000x100000.png",
        "bomb-50000x50000.bmp",
        "bad-zlib.png",
        "truncated.png",
        "truncated.jpg",
        "zero-bytes.png",
        "broken-xref.pdf",
    ],
    "audio": [
        "too-long.wav",
        "too-long.flac",
        "zero-rate.wav",
        "zero-channels.wav",
        "truncated.ogg",
    ],
    "text": ["invalid-utf8.txt", "over-char-limit.txt", "zero-bytes.png", "utf16.txt"],
}


def _config() -> dict[str, Any]:
    from tests.conftest import SMALL_CONFIG

    return {
        **CONFIG,
        "modalities": {m: SMALL_CONFIG["modalities"][m] for m in MODALITIES},
        "train": {**CONFIG["train"], "epochs": 1},
    }


@pytest.fixture(scope="module")
def trained_av(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return train_tiny(tmp_path_factory.mktemp("fuzz"), _config(), n=12)


def _app(artifact: Path) -> FastAPI:
    runtime = ModelRuntime.load(
        artifact,
        preprocess="thread",
        workers=2,
        max_batch=4,
        max_wait_ms=1,
    )
    config = ServeConfig(max_request_bytes=4 * 2**20, max_item_bytes=2 * 2**20)
    return create_app(runtime, config)


def assert_typed_error(response: Any, *, oip: bool) -> str:
    """The body of a >= 400 answer names a code whose status is the answer's."""
    body = response.json()
    code = body["code"] if oip else body["error"]["code"]
    assert code in ERROR_STATUS, body
    if response.status_code == 405:  # method not allowed keeps its own status
        assert code == "invalid_input"
    else:
        assert ERROR_STATUS[code] == response.status_code, body
    return str(code)


# ------------------------------------------------------------------ schemathesis
# every operation of the spec (the routes do not depend on the runtime), both modes
SPEC = create_app(FakeRuntime()).openapi()["paths"]
CASES = [
    (method.upper(), path, mode)
    for path, methods in SPEC.items()
    for method, spec in methods.items()
    # negative data needs something to break: a body or a query parameter (a string
    # path parameter has no invalid value)
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE
    or "requestBody" in spec
    or any(p["in"] == "query" for p in spec.get("parameters", []))
]


@pytest.fixture(scope="module")
def live(trained_av: tuple[Path, Path]) -> Iterator[LiveServer]:
    """The app on a real uvicorn server: its lifespan (and the runtime's close) is
    uvicorn's, not schemathesis' (whose ASGI transport starts and stops it per test)."""
    with LiveServer(_app(trained_av[0])) as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(live: LiveServer) -> Any:
    return schemathesis.openapi.from_url(f"{live.url}/openapi.json")


@pytest.fixture(scope="module")
def model_info(live: LiveServer) -> dict[str, Any]:
    return dict(httpx.get(f"{live.url}/v1/info").json())


# schemathesis' own pytest plugin (`schema.parametrize`) fails on pytest 9
# ('Function' object has no attribute '_nodeid'): its Hypothesis strategies are used
# directly, one test per operation and generation mode (negative where possible)
@pytest.mark.parametrize(
    ("method", "path", "mode"), CASES, ids=[f"{m} {p} {mode.value}" for m, p, mode in CASES]
)
def test_the_openapi_spec_never_gets_a_server_error(
    api_schema: Any, model_info: dict[str, Any], method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]
    fixed: dict[str, Any] = {}
    if mode is GenerationMode.POSITIVE and "{model}" in path:  # the served model, too
        fixed["path_parameters"] = {"model": model_info["name"]}
        if "{model_version}" in path:
            fixed["path_parameters"]["model_version"] = model_info["version"]
    checks = [
        not_a_server_error,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ]

    @given(case=operation.as_strategy(mode, **fixed))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        response = case.call_and_validate(checks=checks, timeout=30)  # never hang
        if response.status_code >= 400 and response.content:
            assert_typed_error(response, oip=path.startswith("/v2"))

    run()


def test_the_server_stays_healthy_after_the_fuzzing(
    live: LiveServer, trained_av: tuple[Path, Path]
) -> None:
    assert httpx.get(f"{live.url}/healthz").status_code == 200
    assert httpx.get(f"{live.url}/readyz").status_code == 200
    png = (trained_av[1] / "img0.png").read_bytes()
    ok = httpx.post(f"{live.url}/v1/predict", files={"image": ("x.png", png)}, data={"text": "red"})
    assert ok.status_code == 200 and ok.json()["modalities_used"] == ["image", "text"]


# ------------------------------------------------------------------ corpus + payloads
@pytest.fixture(scope="module")
def client(trained_av: tuple[Path, Path]) -> Client:
    return Client(_app(trained_av[0]))


@pytest.fixture(scope="module")
def model_name(client: Client) -> str:
    return str(client.get("/v1/info").json()["name"])


def _healthy(client: Client, png: bytes) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    ok = client.post("/v1/predict", files={"image": ("x.png", png)}, data={"text": "red apple"})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("modality", MODALITIES)
def test_malformed_files_as_any_part_get_typed_answers(
    client: Client, model_name: str, trained_av: tuple[Path, Path], modality: str
) -> None:
    seen: dict[str, int] = {}
    for name in CORPUS:
        data = (MALFORMED / name).read_bytes()
        multipart = client.post("/v1/predict", files={modality: (name, data)})
        oip = client.post(
            f"/v2/models/{model_name}/infer",
            json={
                "inputs": [
                    {
                        "name": modality,
                        "datatype": "BYTES",
                        "shape": [1],
                        "data": [base64.b64encode(data).decode()],
                        "parameters": {"content_type": "base64"},
                    }
                ]
            },
        )
        for response, is_oip in ((multipart, False), (oip, True)):
            assert response.status_code < 500, (name, response.text)
            if response.status_code != 200:
                assert_typed_error(response, oip=is_oip)
        seen[name] = multipart.status_code
    # some of the corpus is readable as some modality (a polyglot PNG, a WAV whose
    # header lies, text files): those may be answered; these never are
    assert {n: seen[n] for n in REFUSED[modality]} == dict.fromkeys(REFUSED[modality], 400)
    _healthy(client, (trained_av[1] / "img0.png").read_bytes())


def _oip(*inputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"json": {"inputs": list(inputs), **extra}}


def _text(**spec: Any) -> dict[str, Any]:
    return {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["red apple"], **spec}


JSON = {"Content-Type": "application/json"}
DEEP = b"[" * 100_000 + b"]" * 100_000
# (name, route, httpx keyword arguments): every one must get a typed 4xx
PAYLOADS: list[tuple[str, str, dict[str, Any]]] = [
    ("invalid json", "v1", {"content": b"{not json", "headers": JSON}),
    ("empty json body", "v1", {"content": b"", "headers": JSON}),
    ("no body, no type", "v1", {}),
    ("json without inputs", "v1", {"json": {"input": {"text": "x"}}}),
    ("inputs a list", "v1", {"json": {"inputs": ["text"]}}),
    ("inputs null", "v1", {"json": {"inputs": None}}),
    ("json is a string", "v1", {"json": "inputs"}),
    ("empty inputs", "v1", {"json": {"inputs": {}}}),
    ("wrong base64", "v1", {"json": {"inputs": {"image": {"base64": "!!not*base64"}}}}),
    ("base64 not a string", "v1", {"json": {"inputs": {"image": {"base64": 12}}}}),
    ("base64 of garbage", "v1", {"json": {"inputs": {"image": {"base64": "AAAA"}}}}),
    ("unknown modality", "v1", {"json": {"inputs": {"smell": "roses"}}}),
    ("unknown chosen modality", "v1-smell", {"json": {"inputs": {"text": "red"}}}),
    ("image as a path", "v1", {"json": {"inputs": {"image": "/etc/passwd"}}}),
    ("nested garbage", "v1", {"json": {"inputs": {"text": {"a": [1, {"b": None}]}}}}),
    ("number as text", "v1", {"json": {"inputs": {"text": 3.5}}}),
    ("deeply nested json", "v1", {"content": DEEP, "headers": JSON}),
    ("non-utf-8 json", "v1", {"content": b'{"inputs": {"text": "\xff\xfe"}}', "headers": JSON}),
    ("non-utf-8 text part", "v1", {"files": {"text": ("t.txt", b"\xff\xfe\xc3\x28 bad")}}),
    (
        "wrong content type",
        "v1",
        {"content": b"text=hi", "headers": {"Content-Type": "text/plain"}},
    ),
    ("xml", "v1", {"content": b"<inputs/>", "headers": {"Content-Type": "application/xml"}}),
    ("form urlencoded", "v1", {"data": {"text": "hi"}}),
    (
        "multipart without boundary",
        "v1",
        {"content": b"--x\r\n", "headers": {"Content-Type": "multipart/form-data"}},
    ),
    (
        "broken multipart",
        "v1",
        {"content": b"garbage", "headers": {"Content-Type": "multipart/form-data; boundary=b"}},
    ),
    ("part given twice", "v1", {"files": [("text", ("a", b"x")), ("text", ("b", b"y"))]}),
    ("empty part name", "v1", {"files": {"": ("a.png", b"x")}}),
    (
        "huge declared content-length",
        "v1",
        {"content": b"{}", "headers": {**JSON, "Content-Length": str(10**15)}},
    ),
    ("body over the limit", "v1", {"content": b" " * (4 * 2**20 + 1), "headers": JSON}),
    ("item over the limit", "v1", {"json": {"inputs": {"text": "a" * (2 * 2**20 + 1)}}}),
    (
        "bad timeout header",
        "v1",
        {"json": {"inputs": {"text": "x"}}, "headers": {"X-Request-Timeout": "soon"}},
    ),
    (
        "infinite timeout",
        "v1",
        {"json": {"inputs": {"text": "x"}}, "headers": {"X-Request-Timeout": "inf"}},
    ),
    ("oip invalid json", "v2", {"content": b"{", "headers": JSON}),
    ("oip empty body", "v2", {"content": b""}),
    ("oip inputs not a list", "v2", {"json": {"inputs": {"text": "x"}}}),
    ("oip deeply nested", "v2", {"content": DEEP, "headers": JSON}),
    ("oip input without name", "v2", _oip({"datatype": "BYTES", "shape": [1], "data": ["x"]})),
    ("oip input not an object", "v2", _oip("text")),
    ("oip unknown input", "v2", _oip(_text(name="smell"))),
    ("oip wrong datatype", "v2", _oip(_text(datatype="FP32", data=[1.0]))),
    ("oip wrong shape", "v2", _oip(_text(shape=[2]))),
    ("oip negative shape", "v2", _oip(_text(shape=[-1]))),
    ("oip shape not a list", "v2", _oip(_text(shape="1"))),
    ("oip zero batch", "v2", _oip(_text(shape=[0], data=[]))),
    ("oip numbers as bytes", "v2", _oip(_text(data=[1]))),
    ("oip data missing", "v2", _oip(_text(data=None))),
    ("oip bad base64", "v2", _oip(_text(data=["%%%"], parameters={"content_type": "base64"}))),
    ("oip parameters a list", "v2", _oip(_text(parameters=["binary_data_size", 4]))),
    ("oip parameters a string", "v2", _oip(_text(parameters="base64"))),
    ("oip request parameters a string", "v2", _oip(_text(), parameters="fast")),
    ("oip outputs a string", "v2", _oip(_text(), outputs="label")),
    ("oip unknown output", "v2", _oip(_text(), outputs=[{"name": "logits"}])),
    (
        "oip output parameters a string",
        "v2",
        _oip(_text(), outputs=[{"name": "label", "parameters": "binary"}]),
    ),
    (
        "oip batch sizes differ",
        "v2",
        _oip(_text(), _text(name="image", shape=[2], data=["a", "b"])),
    ),
    ("oip batch over max_items", "v2", _oip(_text(shape=[100], data=["x"] * 100))),
    ("oip image text not bytes", "v2", _oip(_text(name="image", data=["not a png"]))),
    (
        "oip binary size too big",
        "v2",
        {
            "content": json.dumps(
                {"inputs": [_text(data=None, parameters={"binary_data_size": 99})]}
            ).encode(),
            "headers": {"Inference-Header-Content-Length": "-1"},
        },
    ),
    (
        "oip header length past the body",
        "v2",
        {"content": b'{"inputs": []}', "headers": {"Inference-Header-Content-Length": "9999"}},
    ),
    (
        "oip truncated binary element",
        "v2",
        {
            "content": json.dumps(
                {"inputs": [_text(data=None, parameters={"binary_data_size": 6})]}
            ).encode()
            + b"\xff\xff\x00\x00ab",
            "headers": {"Inference-Header-Content-Length": None},
        },
    ),
    (
        "oip negative binary size",
        "v2",
        {
            "content": json.dumps(
                {"inputs": [_text(data=None, parameters={"binary_data_size": -4})]}
            ).encode()
            + b"abcd",
            "headers": {"Inference-Header-Content-Length": None},
        },
    ),
    ("oip wrong model", "v2-other", _oip(_text())),
    # issue 15: each of these was a 500
    ("oip outputs a number", "v2", _oip(_text(), outputs=5)),
    ("oip outputs an object", "v2", _oip(_text(), outputs={"name": "label"})),
    (
        "oip header length a superscript digit",
        "v2",
        # read as latin-1 "\u00b2": str.isdigit() says yes, int() raises
        {"content": b'{"inputs": []}', "headers": {"Inference-Header-Content-Length": b"\xb2"}},
    ),
]


# (name, route, httpx keyword arguments): odd but valid, answered 200
ODD_BUT_VALID: list[tuple[str, str, dict[str, Any]]] = [
    ("oip nested data", "v2", _oip(_text(shape=[1, 1], data=[["red apple"]]))),
    ("oip huge timeout", "v2", _oip(_text(), parameters={"timeout": 10**400})),
    (
        "huge timeout header",
        "v1",
        {"json": {"inputs": {"text": "x"}}, "headers": {"X-Request-Timeout": "1e300"}},
    ),
    ("modalities with spaces", "v1-spaces", {"json": {"inputs": {"text": "x"}}}),
    # issue 15: was a 500 (the "undefined" codec raises UnicodeError); read as latin-1
    (
        "multipart charset=undefined",
        "v1",
        {
            "content": b'--b\r\nContent-Disposition: form-data; name="text"\r\n\r\nhi\r\n--b--\r\n',
            "headers": {"Content-Type": "multipart/form-data; boundary=b; charset=undefined"},
        },
    ),
]


def _fix_header_length(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Fill in ``Inference-Header-Content-Length: None`` as the JSON header's length."""
    headers = dict(kwargs.get("headers") or {})
    if HEADER in headers and headers[HEADER] is None:
        content: bytes = kwargs["content"]
        headers[HEADER] = str(content.index(b"}]}") + 3)
    return {**kwargs, "headers": headers} if headers else kwargs


HEADER = "Inference-Header-Content-Length"


@pytest.mark.parametrize(("what", "route", "kwargs"), PAYLOADS, ids=[p[0] for p in PAYLOADS])
def test_broken_payloads_get_a_typed_4xx(
    client: Client, model_name: str, what: str, route: str, kwargs: dict[str, Any]
) -> None:
    response = client.post(_url(route, model_name), **_fix_header_length(kwargs))
    assert 400 <= response.status_code < 500, (what, response.status_code, response.text)
    assert_typed_error(response, oip=route.startswith("v2"))
    assert response.headers["x-request-id"]


def _url(route: str, model_name: str) -> str:
    return {
        "v1": "/v1/predict",
        "v1-smell": "/v1/predict?modalities=smell",
        "v1-spaces": "/v1/predict?modalities=%20text%20,,",
        "v2": f"/v2/models/{model_name}/infer",
        "v2-other": "/v2/models/other/infer",
    }[route]


@pytest.mark.parametrize(
    ("what", "route", "kwargs"), ODD_BUT_VALID, ids=[p[0] for p in ODD_BUT_VALID]
)
def test_odd_but_valid_payloads_are_answered(
    client: Client, model_name: str, what: str, route: str, kwargs: dict[str, Any]
) -> None:
    response = client.post(_url(route, model_name), **kwargs)
    assert response.status_code == 200, (what, response.text)


def test_the_server_stays_healthy_after_the_payloads(
    client: Client, trained_av: tuple[Path, Path]
) -> None:
    _healthy(client, (trained_av[1] / "img0.png").read_bytes())
    metrics = client.get("/metrics").text
    errors = [line for line in metrics.splitlines() if line.startswith("polyfuse_errors_total")]
    assert errors and not [line for line in errors if 'code="internal"' in line]
