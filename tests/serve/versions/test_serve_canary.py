"""The issue's end to end: a real ``polyfuse serve CHAMPION --canary WORSE`` process on
loopback, callers sticky by header, delayed labels for their answers, the canary rolled
back automatically within a bounded number of requests, the decision on ``/v1/versions``,
``/metrics`` and in ``polyfuse canary status``; operator actions need the admin key."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import polyfuse
from polyfuse import cli
from tests.serve.versions.trained import Models

pytestmark = pytest.mark.slow

SOURCE = str(Path(polyfuse.__file__).resolve().parents[1])
USER, ADMIN = "user-key", "admin-key"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_worse_canary_is_rolled_back_through_a_real_server(
    models: Models, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "keys.txt").write_text(f"{USER}\n")
    (tmp_path / "admins.txt").write_text(f"{ADMIN}\n")
    (tmp_path / "serve.yaml").write_text(
        "preprocess: thread\nmax_batch: 1\ncanary_judge:\n  min_samples: 15\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        sys.executable, "-m", "polyfuse", "serve", str(models.champion),
        "--canary", str(models.worse), "--canary-weight", "0.5",
        "--api-keys", str(tmp_path / "keys.txt"), "--admin-keys", str(tmp_path / "admins.txt"),
        "--config", str(tmp_path / "serve.yaml"), "--port", str(port),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SOURCE, os.environ.get("PYTHONPATH", "")])}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            _wait(url, process, log)
            served = _drive(url, models)
            _check(url, served, capsys)
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"the server did not come up:\n{log.read_text(errors='replace')[-3000:]}")


def _drive(url: str, models: Models) -> list[dict[str, Any]]:
    """Requests from 40 callers, each answer labelled, until the canary is rolled back."""
    served = []
    with httpx.Client(base_url=url, headers={"X-API-Key": USER}, timeout=30) as client:
        for i in range(600):
            row = models.rows[i % len(models.rows)]
            response = client.post(
                "/v1/predict",
                files={"image": (models.data / row["image"]).read_bytes()},
                data={"text": row["text"]},
                headers={"X-Polyfuse-Route": f"caller-{i % 40}"},
            )
            assert response.status_code == 200, response.text
            body = response.json()
            served.append(body)
            label = client.post(
                "/v1/feedback", json={"request_id": body["request_id"], "label": row["label"]}
            )
            assert label.status_code == 200
            if client.get("/v1/versions").json()["canary"]["rolled_back"]:
                break
    return served


def _check(url: str, served: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    headers = {"X-API-Key": USER}
    state = httpx.get(url + "/v1/versions", headers=headers).json()
    canary = state["canary"]
    assert canary["rolled_back"] and canary["weight"] == 0.0
    (decision,) = state["decisions"]
    assert decision["by"] == "judge" and decision["signals"]
    assert len(served) < 400  # a bounded number of requests
    assert any(b["role"] == "canary" for b in served)  # it answered before its rollback
    after = httpx.post(
        url + "/v1/predict",
        headers={**headers, "X-Polyfuse-Route": "caller-1"},
        files={"image": b"x"},
    )
    assert (
        after.status_code == 400
        and after.json()["error"]["details"]["version"] == (state["champion"])
    )
    metrics = httpx.get(url + "/metrics").text
    assert f'polyfuse_canary_rolled_back{{version="{canary["name"]}"}} 1.0' in metrics
    assert "polyfuse_canary_rollbacks_total 1.0" in metrics

    assert cli.main(["canary", "status", "--url", url, "--key", USER]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "ROLLED BACK" in out and "rollback" in out and canary["name"] in out
    assert cli.main(["canary", "weight", "0.2", "--url", url, "--key", USER]) == cli.EXIT_ERROR
    assert "403" in capsys.readouterr().err
    assert cli.main(["canary", "weight", "0.2", "--url", url, "--key", ADMIN]) == cli.EXIT_OK
    assert "weight" in capsys.readouterr().out
    fresh = httpx.get(url + "/v1/versions", headers=headers).json()["canary"]
    assert fresh["weight"] == 0.2 and not fresh["rolled_back"]  # a fresh comparison
