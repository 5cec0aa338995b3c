"""API keys, rate limits, CORS and the safe-by-default start check."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyfuse.errors import ConfigError
from polyfuse.serve.app import create_app
from polyfuse.serve.auth import KeyStore, RateLimiter
from polyfuse.serve.config import (
    ServeConfig,
    env_key_hashes,
    hash_key,
    is_loopback,
    read_key_hashes,
)
from polyfuse.serve.types import ServeError
from tests.serve.fakes import Client, FakeRuntime

BODY = {"json": {"inputs": {"text": "x"}}}


def keyed(**config: object) -> Client:
    cfg = ServeConfig(api_key_hashes=(hash_key("k1"), hash_key("k2")), **config)  # type: ignore[arg-type]
    return Client(create_app(FakeRuntime(), cfg))


def test_when_key_missing_then_401() -> None:
    response = keyed().post("/v1/predict", **BODY)  # type: ignore[arg-type]
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["x-request-id"]


def test_when_key_wrong_then_403() -> None:
    response = keyed().post("/v1/predict", headers={"X-API-Key": "nope"}, **BODY)  # type: ignore[arg-type]
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer k1"}, {"X-API-Key": "k2"}])
def test_when_key_right_then_200(headers: dict[str, str]) -> None:
    assert keyed().post("/v1/predict", headers=headers, **BODY).status_code == 200  # type: ignore[arg-type]


def test_health_and_metrics_need_no_key() -> None:
    client = keyed()
    assert client.get("/healthz").status_code == 200
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/v2/models/fake").status_code == 401


def test_when_rate_exceeded_then_429_with_retry_after_per_key() -> None:
    client = keyed(rate_limit=0.5, rate_burst=2)
    k1 = {"X-API-Key": "k1"}
    assert [client.post("/v1/predict", headers=k1, **BODY).status_code for _ in range(2)] == [  # type: ignore[arg-type]
        200,
        200,
    ]
    response = client.post("/v1/predict", headers=k1, **BODY)  # type: ignore[arg-type]
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert response.headers["retry-after"] == "2"
    assert client.post("/v1/predict", headers={"X-API-Key": "k2"}, **BODY).status_code == 200  # type: ignore[arg-type]


def test_token_bucket_refills_with_time() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=1, clock=lambda: now[0])
    limiter.check("a")
    with pytest.raises(ServeError) as err:
        limiter.check("a")
    assert err.value.code == "rate_limited" and err.value.retry_after == 1.0
    now[0] = 0.5
    limiter.check("a")


def test_key_store_names_keys_by_hash_prefix() -> None:
    store = KeyStore([hash_key("secret")])
    assert store.identify("secret") == hash_key("secret")[:12]
    assert store.identify("other") is None


def test_keys_file_and_env(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# team keys\nk1\n\nsha256:{hash_key('k2').upper()}  # hashed\n")
    assert read_key_hashes(path) == (hash_key("k1"), hash_key("k2"))
    assert env_key_hashes({"POLYFUSE_API_KEYS": "a, b,"}) == (hash_key("a"), hash_key("b"))
    path.write_text("sha256:zz\n")
    with pytest.raises(ConfigError, match="line 1"):
        read_key_hashes(path)


def test_without_keys_a_remote_client_is_refused() -> None:
    client = Client(create_app(FakeRuntime(), ServeConfig()), client=("10.0.0.7", 4000))
    response = client.post("/v1/predict", **BODY)  # type: ignore[arg-type]
    assert response.status_code == 403
    assert "loopback" in response.json()["error"]["message"]
    insecure = Client(
        create_app(FakeRuntime(), ServeConfig(insecure=True)), client=("10.0.0.7", 4000)
    )
    assert insecure.post("/v1/predict", **BODY).status_code == 200  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("config", "ok"),
    [
        (ServeConfig(host="127.0.0.1"), True),
        (ServeConfig(host="::1"), True),
        (ServeConfig(host="localhost"), True),
        (ServeConfig(host="0.0.0.0"), False),
        (ServeConfig(host="0.0.0.0", insecure=True), True),
        (ServeConfig(host="0.0.0.0", api_key_hashes=(hash_key("k"),)), True),
    ],
)
def test_safe_by_default_start_check(config: ServeConfig, ok: bool) -> None:
    if ok:
        config.check()
        return
    with pytest.raises(ConfigError) as err:
        config.check()
    assert err.value.key == "--host"
    assert "--insecure" in str(err.value.hint) and "--api-keys" in str(err.value.hint)


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.2") and is_loopback("[::1]") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")


def test_config_file_refuses_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text("port: 9000\napi_keys: [k1]\ncors_origins: [https://a.example]\n")
    config = ServeConfig.from_file(path)
    assert config.port == 9000 and config.api_key_hashes == (hash_key("k1"),)
    assert config.cors_origins == ("https://a.example",)
    path.write_text("prot: 9000\n")
    with pytest.raises(ConfigError, match="prot"):
        ServeConfig.from_file(path)


def test_cors_preflight_needs_no_key() -> None:
    client = keyed(cors_origins=("https://app.example",))
    response = client.request(
        "OPTIONS",
        "/v1/predict",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-API-Key",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"
