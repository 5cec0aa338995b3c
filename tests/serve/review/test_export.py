"""The training manifest of reviewed samples, read back by the manifest loader."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from polyfuse.core.errors import ConfigError
from polyfuse.data.manifest import Manifest
from polyfuse.serve.review.export import export_manifest
from polyfuse.serve.review.queue import ReviewQueue
from polyfuse.serve.review.routing import Router, RoutingPolicy
from polyfuse.serve.review.store import SQLiteStore
from tests.serve.review.test_queue import LABELS, PNG, result
from tests.serve.review.test_routing import RULES


def test_reviewed_samples_become_training_rows(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "review.db")
    kept = ReviewQueue(Router(RoutingPolicy(reasons=RULES)), store, LABELS, keep_inputs=True)
    digests = ReviewQueue(Router(RoutingPolicy(reasons=RULES)), store, LABELS)
    inputs = {"image": PNG, "text": "a [PERSON] and a cat"}
    asyncio.run(kept.consider(result("r1", 0.45), inputs))
    asyncio.run(kept.consider(result("r2", 0.40), inputs))  # stays pending
    asyncio.run(digests.consider(result("r3", 0.42), inputs))
    asyncio.run(kept.resolve("r1", "cat", "ana"))
    asyncio.run(digests.resolve("r3", "dog", "bo"))

    summary = export_manifest(store, tmp_path / "out" / "reviewed.jsonl")
    assert (summary.rows, summary.without_inputs) == (1, 1)
    manifest = Manifest.load(summary.manifest, ["image", "text"], "label")
    assert not manifest.problems and len(manifest.rows) == 1
    row = manifest.rows[0]
    assert row.id == "r1" and row.label == "cat"
    assert row.values["text"] == "a [PERSON] and a cat"
    image = manifest.base_dir / row.values["image"]
    assert image.suffix == ".png" and image.read_bytes() == PNG
    assert row.metadata["reviewer"] == "ana" and row.metadata["predicted"] == "cat"
    assert row.metadata["reasons"] == "low_confidence"
    assert summary.hashes is not None
    (other,) = [json.loads(x) for x in summary.hashes.read_text().splitlines()]
    assert other["id"] == "r3" and other["label"] == "dog"
    assert set(other["inputs"]) == {"image", "text"} and "a [PERSON]" not in json.dumps(other)


def test_nothing_reviewed_writes_an_empty_manifest(tmp_path: Path) -> None:
    summary = export_manifest(SQLiteStore(tmp_path / "r.db"), tmp_path / "m.jsonl")
    assert summary.rows == 0 and summary.hashes is None
    assert (tmp_path / "m.jsonl").read_text() == ""
    with pytest.raises(ConfigError, match="jsonl"):
        export_manifest(SQLiteStore(tmp_path / "r.db"), tmp_path / "m.csv")
