"""``polyfuse serve``: flags -> config, the safe-by-default check, runtime loading and
uvicorn start-up (uvicorn and the runtime module are faked; the port check binds and
releases a socket, and the audit test serves the app on loopback)."""

from __future__ import annotations

import json
import socket
import sys
import types
from pathlib import Path
from typing import Any

import httpx
import pytest

from polyfuse import cli
from polyfuse.serve.config import hash_key
from tests.serve.fakes import FakeRuntime, LiveServer


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Fakes ModelRuntime.load and uvicorn.run; returns what they were called with."""
    calls: dict[str, Any] = {}

    class ModelRuntime:
        @staticmethod
        def load(artifact: str, **options: Any) -> FakeRuntime:
            calls["artifact"] = artifact
            calls["options"] = options
            return FakeRuntime()

    module = types.ModuleType("polyfuse.serve.runtime.model")
    module.ModelRuntime = ModelRuntime  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "polyfuse.serve.runtime.model", module)
    import uvicorn

    def run(app: Any, **kwargs: Any) -> None:
        calls["app"] = app
        calls.update(kwargs)

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.delenv("POLYFUSE_API_KEYS", raising=False)
    return calls


def test_serve_defaults_to_loopback_and_prints_the_url(
    started: dict[str, Any], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    assert cli.main(["serve", "art"]) == cli.EXIT_OK
    assert started["artifact"] == "art" and started["options"] == {"torch_threads": "auto"}
    assert (started["host"], started["port"]) == ("127.0.0.1", 8000)
    assert "http://127.0.0.1:8000" in capsys.readouterr().out
    assert "loopback clients only" in caplog.text


def test_serve_threads_flag(started: dict[str, Any]) -> None:
    assert cli.main(["serve", "art", "--threads", "3", "--device", "cpu"]) == cli.EXIT_OK
    assert started["options"] == {"torch_threads": 3, "device": "cpu"}


def test_serve_refuses_public_address_without_keys(
    started: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["serve", "art", "--host", "0.0.0.0"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "refusing" in err and "--insecure" in err
    assert "artifact" not in started  # refused before loading the model


def test_serve_public_address_with_insecure_or_keys(
    started: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.main(["serve", "art", "--host", "0.0.0.0", "--insecure"]) == cli.EXIT_OK
    keys = tmp_path / "keys"
    keys.write_text("k1\n")
    monkeypatch.setenv("POLYFUSE_API_KEYS", "k2")
    argv = ["serve", "art", "--host", "::", "--port", "9001", "--api-keys", str(keys)]
    argv += ["--device", "cpu"]
    assert cli.main(argv) == cli.EXIT_OK
    config = started["app"].state.service.config
    assert config.api_key_hashes == (hash_key("k2"), hash_key("k1"))
    assert started["port"] == 9001 and started["options"] == {
        "torch_threads": "auto",
        "device": "cpu",
    }


def test_serve_flags_override_the_config_file(started: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text("port: 9000\nrate_limit: 5\nmax_items: 4\n")
    argv = ["serve", "art", "--config", str(path), "--port", "9100", "--cors-origin", "https://a"]
    assert cli.main([*argv, "--request-log", str(tmp_path / "r.jsonl")]) == cli.EXIT_OK
    config = started["app"].state.service.config
    assert (config.port, config.rate_limit, config.max_items) == (9100, 5.0, 4)
    assert config.cors_origins == ("https://a",)
    assert config.request_log == str(tmp_path / "r.jsonl")


def test_serve_with_policy_builds_the_firewall(started: dict[str, Any], tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nentities:\n  US_SSN: block\n")
    assert cli.main(["serve", "art", "--policy", str(policy)]) == cli.EXIT_OK
    guard = started["app"].state.service.guard
    assert guard.policy.rule("US_SSN", "text").action == "block"


def test_serve_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    out = capsys.readouterr().out
    for flag in (
        "--host",
        "--port",
        "--policy",
        "--api-keys",
        "--insecure",
        "--request-log",
        "--otel",
    ):
        assert flag in out


def test_serve_refuses_a_busy_port_before_loading(
    started: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert cli.main(["serve", "art", "--port", str(port)]) == cli.EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) <= 2 and "--port" in err[0] and str(port) in err[0], err
    assert "Traceback" not in "\n".join(err)
    assert "artifact" not in started  # refused before loading the model


def test_serve_audit_needs_a_policy(
    started: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", "art", "--audit", str(tmp_path / "audit.jsonl")]
    assert cli.main(argv) == cli.EXIT_ERROR
    assert "--audit" in capsys.readouterr().err and "artifact" not in started


def test_serve_audit_logs_a_blocked_request(started: dict[str, Any], tmp_path: Path) -> None:
    policy, audit = tmp_path / "policy.yaml", tmp_path / "audit.jsonl"
    policy.write_text("version: 1\nentities:\n  US_SSN: block\n")
    argv = ["serve", "art", "--policy", str(policy), "--audit", str(audit)]
    assert cli.main(argv) == cli.EXIT_OK
    with LiveServer(started["app"]) as server:
        text = "my ssn is 219-09-9999"
        answer = httpx.post(f"{server.url}/v1/predict", json={"inputs": {"text": text}})
    assert answer.status_code == 422, answer.text
    lines = [json.loads(x) for x in audit.read_text().splitlines()]
    assert [x["action"] for x in lines if x["input"]["path"] == "text"] == ["block"]
    assert len(lines) == 1  # the firewall's warm-up at start-up is not audited
    assert "219-09" not in audit.read_text()


def test_serve_takes_a_registered_model_and_names_it(
    started: dict[str, Any],
    mlflow_store: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``serve models:/NAME@ALIAS`` loads the verified cached copy of the alias's version and
    names the model NAME in the OIP routes; an unknown alias fails before loading anything."""
    from polyfuse.release.registry import ModelRegistry
    from tests.release.test_registry import artifact

    monkeypatch.setenv("POLYFUSE_CACHE", str(tmp_path / "cache"))
    ModelRegistry().register(artifact(tmp_path / "a"), "fraud", alias="champion")
    assert cli.main(["serve", "models:/fraud@nope"]) == cli.EXIT_ERROR
    assert "has no alias 'nope'" in capsys.readouterr().err and "artifact" not in started
    assert cli.main(["serve", "models:/fraud@champion"]) == cli.EXIT_OK
    folder = Path(started["artifact"])
    assert folder.parts[-2:] == ("fraud", "1") and (folder / "artifact.json").is_file()
    assert started["app"].state.service.config.model_name == "fraud"
    assert "polyfuse serving models:/fraud@champion" in capsys.readouterr().out


def test_serve_review_flags_open_the_queue(
    started: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = f"sqlite://{tmp_path / 'review.db'}"
    argv = ["serve", "art", "--review", uri, "--review-inputs", "--review-threshold", "0.3"]
    assert cli.main(argv) == cli.EXIT_OK
    service = started["app"].state.service
    assert service.config.review == uri and service.review.keep_inputs
    assert service.review.router.policy.threshold == 0.3
    assert (tmp_path / "review.db").exists()
    monkeypatch.chdir(tmp_path)
    assert cli.main(["serve", "art", "--review"]) == cli.EXIT_OK  # alone: the default file
    assert (tmp_path / "polyfuse-review.db").exists()
    assert cli.main(["serve", "art", "--review-inputs"]) == cli.EXIT_ERROR
    assert "--review-inputs" in capsys.readouterr().err
