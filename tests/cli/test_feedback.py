"""``polyfuse feedback export``: the reviewed samples of a store as a training manifest."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from polyfuse.cli import main
from polyfuse.serve.review.queue import ReviewQueue
from polyfuse.serve.review.routing import Router, RoutingPolicy
from polyfuse.serve.review.store import SQLiteStore
from tests.serve.review.test_queue import LABELS, PNG, result


def reviewed_store(path: Path, keep: bool) -> str:
    store = SQLiteStore(path)
    queue = ReviewQueue(Router(RoutingPolicy()), store, LABELS, keep_inputs=keep)
    asyncio.run(queue.consider(result("r1", 0.4), {"image": PNG, "text": "hi"}))
    asyncio.run(queue.resolve("r1", "dog", "ana"))
    store.close()
    return f"sqlite://{path}"


def test_export_writes_the_manifest_and_says_what(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = reviewed_store(tmp_path / "kept.db", keep=True)
    out = tmp_path / "m.jsonl"
    assert main(["feedback", "export", "--out", str(out), "--store", uri]) == 0
    assert "1 training rows" in capsys.readouterr().out
    row = json.loads(out.read_text())
    assert row["label"] == "dog" and row["text"] == "hi" and row["image"].endswith(".png")


def test_export_without_kept_inputs_explains_the_hashes_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYFUSE_REVIEW", reviewed_store(tmp_path / "digests.db", keep=False))
    out = tmp_path / "m.jsonl"
    assert main(["feedback", "export", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "0 training rows" in said and "--review-inputs" in said and "hashes.jsonl" in said
    assert main(["feedback", "export", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 0 and summary["without_inputs"] == 1


def test_a_bad_store_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["feedback", "export", "--out", str(tmp_path / "m.jsonl"), "--store", "x://y"])
    assert code == 2 and "unknown review store" in capsys.readouterr().err
