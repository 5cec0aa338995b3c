"""API keys, rate limits, CORS and the safe-by-default start check."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyfuse.core.errors import ConfigError
from polyfuse.serve.config import (
    ServeConfig,
    env_key_hashes,
    hash_key,
    is_loopback,
    read_key_hashes,
    read_keys_file,
)
from polyfuse.serve.http.app import create_app
from polyfuse.serve.http.auth import KeyStore, RateLimiter
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


# --- per-key rate limits ------------------------------------------------------------


def test_keys_file_with_per_key_limits(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(
        "# batch client, web front end\n"
        "batch-key rate=50 burst=100\n"
        f"sha256:{hash_key('web-key').upper()}   rate=5  # hashed\n"
        "plain\n"
        "\n"
        "free rate=0\n"
        "bursty burst=3\n"
    )
    hashes, limits = read_keys_file(path)
    names = ("batch-key", "web-key", "plain", "free", "bursty")
    assert hashes == tuple(hash_key(n) for n in names)
    assert limits == {
        hash_key("batch-key"): (50.0, 100),
        hash_key("web-key"): (5.0, None),
        hash_key("free"): (0.0, None),
        hash_key("bursty"): (None, 3),
    }
    assert read_key_hashes(path) == hashes  # the old reader still gives hashes only


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("k2 rate=fast", "rate=fast is not a number >= 0"),
        ("k2 rate=-1", "rate=-1 is not a number >= 0"),
        ("k2 rate=nan", "rate=nan is not a number >= 0"),
        ("k2 burst=0", "burst=0 is not an integer >= 1"),
        ("k2 burst=2.5", "burst=2.5 is not an integer >= 1"),
        ("k2 rate=1 rate=2", "rate= given twice"),
        ("k2 speed=3", "word 2 is not rate=... or burst=..."),
        ("my secret phrase", "unexpected word 2 after the key"),
        ("sha256:abc rate=1", "not a SHA-256 hex digest"),
    ],
)
def test_keys_file_refuses_bad_lines(tmp_path: Path, line: str, says: str) -> None:
    path = tmp_path / "keys"
    path.write_text(f"k1 rate=1\n{line}\n")
    with pytest.raises(ConfigError) as err:
        read_keys_file(path)
    text = str(err.value)
    assert err.value.key == "--api-keys"
    assert f"{path}, line 2: {says}" in text
    assert "KEY or sha256:HEX" in text and "rate=FLOAT" in text and "burst=INT" in text
    assert "secret" not in text and "phrase" not in text  # a key is never echoed


def limited_client(tmp_path: Path, keys_file: str, **config: object) -> Client:
    """An app whose keys (and their limits) come from ``keys_file``'s text."""
    path = tmp_path / "keys"
    path.write_text(keys_file)
    hashes, limits = read_keys_file(path)
    cfg = ServeConfig(api_key_hashes=hashes, key_limits=limits, **config)  # type: ignore[arg-type]
    cfg.check()
    return Client(create_app(FakeRuntime(), cfg))


def statuses(client: Client, key: str, n: int) -> list[int]:
    return [
        client.post("/v1/predict", headers={"X-API-Key": key}, **BODY).status_code  # type: ignore[arg-type]
        for _ in range(n)
    ]


def test_two_keys_with_different_limits_through_the_app(tmp_path: Path) -> None:
    # slow refill (one token per 100 s) so a loaded machine cannot earn a token mid-test
    client = limited_client(
        tmp_path,
        "batch-secret rate=0.01 burst=4\nweb-secret rate=0.02 burst=1\nother-secret\n",
        rate_limit=0.01,
        rate_burst=2,
    )
    assert statuses(client, "web-secret", 2) == [200, 429]
    web = client.post("/v1/predict", headers={"X-API-Key": "web-secret"}, **BODY)  # type: ignore[arg-type]
    assert web.status_code == 429
    assert web.headers["retry-after"] == "50"  # 1 token at 0.02/s
    assert "more than 0.02 requests a second (burst 1)" in web.json()["error"]["message"]
    # the batch key still passes after the web key is limited, up to its own burst of 4
    assert statuses(client, "batch-secret", 5) == [200, 200, 200, 200, 429]
    batch = client.post("/v1/predict", headers={"X-API-Key": "batch-secret"}, **BODY)  # type: ignore[arg-type]
    assert batch.headers["retry-after"] == "100"
    assert "more than 0.01 requests a second (burst 4)" in batch.json()["error"]["message"]
    # a key without its own limit gets --rate-limit / rate_burst (burst 2)
    assert statuses(client, "other-secret", 3) == [200, 200, 429]
    # neither the 429 nor the metrics name a key or its full hash
    seen = web.text + batch.text + client.get("/metrics").text
    for key in ("batch-secret", "web-secret", "other-secret"):
        assert key not in seen and hash_key(key) not in seen


def test_rate_zero_key_is_unlimited_while_the_default_limits(tmp_path: Path) -> None:
    client = limited_client(
        tmp_path, "free-secret rate=0\ncapped-secret\n", rate_limit=0.01, rate_burst=1
    )
    assert statuses(client, "free-secret", 25) == [200] * 25
    assert statuses(client, "capped-secret", 2) == [200, 429]


def test_own_limit_also_applies_when_the_default_is_unlimited(tmp_path: Path) -> None:
    client = limited_client(tmp_path, "web-secret rate=0.01 burst=2\nfree-secret\n")
    assert statuses(client, "web-secret", 3) == [200, 200, 429]
    assert statuses(client, "free-secret", 10) == [200] * 10


def test_rate_limiter_per_key_overrides_with_a_fake_clock() -> None:
    now = [0.0]
    fast, free, half = hash_key("fast"), hash_key("free"), hash_key("half")
    limiter = RateLimiter(
        rate=0.5,
        burst=1,
        clock=lambda: now[0],
        limits={fast: (4.0, 2), free: (0.0, None), half.upper(): (None, 3)},
    )
    assert limiter.limit(fast[:12]) == (4.0, 2)  # full hashes are mapped to key ids
    assert limiter.limit(free[:12]) == (0.0, 1)
    assert limiter.limit(half[:12]) == (0.5, 3)  # None takes the default rate
    assert limiter.limit("client:127.0.0.1") == (0.5, 1)
    for key_id in (fast[:12], fast[:12], "other", half[:12], half[:12], half[:12]):
        limiter.check(key_id)
    for _ in range(50):
        limiter.check(free[:12])
    with pytest.raises(ServeError) as err:
        limiter.check(fast[:12])
    assert err.value.retry_after == 1.0  # ceil(0.25 s)
    assert "more than 4 requests a second (burst 2)" in err.value.message
    with pytest.raises(ServeError) as err:
        limiter.check("other")
    assert err.value.retry_after == 2.0
    assert "more than 0.5 requests a second (burst 1)" in err.value.message
    with pytest.raises(ServeError) as err:
        limiter.check(half[:12])
    assert "(burst 3)" in err.value.message
    now[0] = 0.25  # one token for the 4/s key, a quarter of one for the default
    limiter.check(fast[:12])
    with pytest.raises(ServeError):
        limiter.check("other")


def test_config_file_api_keys_as_mappings(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text(
        "rate_limit: 2\n"
        "api_keys:\n"
        "  - plain\n"
        "  - {key: batch, rate: 50, burst: 100}\n"
        f"  - {{sha256: {hash_key('web')}, rate: 5}}\n"
        "  - {key: free, rate: 0}\n"
        "  - {key: bursty, burst: 7}\n"
        "  - {key: nothing-own}\n"
    )
    config = ServeConfig.from_file(path)
    names = ("plain", "batch", "web", "free", "bursty", "nothing-own")
    assert config.api_key_hashes == tuple(hash_key(n) for n in names)
    assert config.key_limits == {
        hash_key("batch"): (50.0, 100),
        hash_key("web"): (5.0, None),
        hash_key("free"): (0.0, None),
        hash_key("bursty"): (None, 7),
    }
    config.check()


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("{key: a, sha256: " + "0" * 64 + "}", "needs exactly one of key or sha256"),
        ("{rate: 5}", "needs exactly one of key or sha256"),
        ("{key: a, rate: -1}", "rate must be a number >= 0, got -1"),
        ("{key: a, rate: fast}", "rate must be a number >= 0, got 'fast'"),
        ("{key: a, rate: true}", "rate must be a number >= 0, got True"),
        ("{key: a, burst: 0}", "burst must be an integer >= 1, got 0"),
        ("{key: a, burst: 1.5}", "burst must be an integer >= 1, got 1.5"),
        ("{key: a, rte: 5}", "1 unknown field(s)"),
        ("{sha256: abc}", "sha256 is not a SHA-256 hex digest"),
        ("'sha256:xyz'", "not a SHA-256 hex digest"),
    ],
)
def test_config_file_refuses_bad_api_key_entries(tmp_path: Path, entry: str, says: str) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text(f"api_keys:\n  - k1\n  - {entry}\n")
    with pytest.raises(ConfigError) as err:
        ServeConfig.from_file(path)
    assert err.value.key == "api_keys[1]"
    assert says in str(err.value)
    assert "{key: KEY, rate: R, burst: B}" in str(err.value.hint)


def test_config_file_refuses_api_keys_that_are_not_a_list(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text("api_keys:\n  k1: {rate: 5}\n")  # would silently drop the limit
    with pytest.raises(ConfigError, match="api_keys: must be a list"):
        ServeConfig.from_file(path)


@pytest.mark.parametrize(
    ("limit", "says"),
    [
        ((-1.0, None), "rate must be a finite number >= 0"),
        ((float("inf"), None), "rate must be a finite number >= 0"),
        ((None, 0), "burst must be >= 1"),
    ],
)
def test_check_refuses_bad_key_limits(limit: tuple[float | None, int | None], says: str) -> None:
    digest = hash_key("k")
    config = ServeConfig(api_key_hashes=(digest,), key_limits={digest: limit})
    with pytest.raises(ConfigError, match=says) as err:
        config.check()
    assert err.value.key == f"key_limits[{digest[:12]}]"


def test_check_refuses_a_limit_for_an_unknown_key() -> None:
    config = ServeConfig(api_key_hashes=(hash_key("k"),), key_limits={hash_key("x"): (1.0, 1)})
    with pytest.raises(ConfigError, match="not in api_key_hashes"):
        config.check()


def test_cli_merges_limits_of_config_file_and_keys_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polyfuse import cli
    from polyfuse.cli.serve import serve_config

    monkeypatch.setenv("POLYFUSE_API_KEYS", "env-key")
    yaml_path = tmp_path / "serve.yaml"
    yaml_path.write_text("api_keys:\n  - {key: yaml-key, rate: 3}\n  - {key: both, rate: 1}\n")
    keys = tmp_path / "keys"
    keys.write_text("file-key rate=50 burst=100\nboth burst=9\n")
    argv = ["serve", "art", "--config", str(yaml_path), "--api-keys", str(keys)]
    config = serve_config(cli.build_parser().parse_args([*argv, "--rate-limit", "2"]))
    names = ("yaml-key", "both", "env-key", "file-key")
    assert config.api_key_hashes == tuple(hash_key(n) for n in names)
    assert config.key_limits == {
        hash_key("yaml-key"): (3.0, None),
        hash_key("both"): (None, 9),  # the keys file wins
        hash_key("file-key"): (50.0, 100),
    }
    assert config.rate_limit == 2.0
    config.check()
