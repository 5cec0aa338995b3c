"""Batch jobs in process (`LocalRunner`): predictions equal to the `Predictor`, embeddings
equal to `collect`'s pooled features, resuming from parts, refusing another run's folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polyfuse.batch import jobs
from polyfuse.batch.jobs import JobSettings
from polyfuse.batch.parts import part_name, read_parts
from polyfuse.batch.runners import LocalRunner
from polyfuse.core.errors import ConfigError, ManifestError
from polyfuse.data.manifest import Manifest
from polyfuse.inference.collect import collect
from polyfuse.inference.predict import Predictor
from tests.batch.conftest import assert_same_predictions

SETTINGS = JobSettings(batch_size=4, part_rows=8)


def test_predictions_equal_the_predictor(classifier: Path, manifest: Path, tmp_path: Path) -> None:
    run = Predictor.load(classifier, "cpu").predict_manifest(manifest, progress=False)
    out = tmp_path / "preds.parquet"
    result = jobs.predict(classifier, manifest, out, LocalRunner(), SETTINGS)
    assert (result.parts, result.written, result.rows) == (3, 3, 21)
    assert sorted(out.glob("part-*.parquet")) == [out / part_name(k) for k in range(3)]
    table = read_parts(out).to_pylist()
    assert [r["row"] for r in table] == list(range(21))  # bad rows keep their place
    got = [json.loads(r["prediction"]) for r in table if r["prediction"] is not None]
    assert_same_predictions(got, [p.to_dict() for p in run.predictions])
    assert [json.loads(r["label"]) for r in table if r["label"]] == [g["label"] for g in got]
    # the same bad rows: the unreadable image and the broken line
    assert len(result.bad) == len(run.bad_rows) == 2
    assert any("row 5 (id s4)" in b for b in result.bad)
    assert any(b.startswith("row 10:") and "invalid JSON" in b for b in result.bad)
    lines = tmp_path / "preds.jsonl"
    assert jobs.predictions_jsonl(out, lines) == len(run.predictions)
    assert_same_predictions([json.loads(x) for x in lines.read_text().splitlines()], got)


def test_rerun_computes_only_missing_parts(
    classifier: Path, manifest: Path, tmp_path: Path
) -> None:
    out = tmp_path / "emb"
    jobs.embed(classifier, manifest, out, LocalRunner(), SETTINGS)
    before = {k: (out / part_name(k)).stat().st_mtime_ns for k in range(3)}
    first = read_parts(out).to_pylist()
    (out / part_name(1)).unlink()  # as if the job was stopped before part 1 was written
    again = jobs.embed(classifier, manifest, out, LocalRunner(), SETTINGS)
    assert again.written == 1 and again.parts == 3
    for k in (0, 2):
        assert (out / part_name(k)).stat().st_mtime_ns == before[k]
    for got, was in zip(read_parts(out).to_pylist(), first, strict=True):
        assert (got["row"], got["id"], got["error"]) == (was["row"], was["id"], was["error"])
        for m in ("image", "text", "series"):
            assert (got[m] is None) == (was[m] is None)
            assert got[m] is None or got[m] == pytest.approx(was[m], abs=1e-5)
    with pytest.raises(ConfigError, match="part_rows differ") as err:
        jobs.embed(classifier, manifest, out, LocalRunner(), JobSettings(part_rows=5))
    assert err.value.hint is not None and "new --out" in err.value.hint


def test_embeddings_equal_collected_pooled_features(
    classifier: Path, manifest: Path, tmp_path: Path
) -> None:
    predictor = Predictor.load(classifier, "cpu")
    rows = Manifest.load(manifest, predictor.modalities)
    ds = predictor.dataset(rows)
    model = predictor.artifact.model
    expected = collect(model, predictor.loader(ds), predictor.device, pooled=True)
    jobs.embed(classifier, manifest, tmp_path / "e", LocalRunner(), SETTINGS)
    table = {r["row"]: r for r in read_parts(tmp_path / "e").to_pylist()}
    for j, position in enumerate(expected.indices):
        for m in predictor.modalities:
            got = table[rows.rows[position].index][m]
            if not bool(expected.present[m][j]):
                assert got is None
                continue
            torch.testing.assert_close(torch.tensor(got), expected.pooled[m][j], atol=1e-5, rtol=0)


def test_bad_row_fails_the_job_when_asked(classifier: Path, manifest: Path, tmp_path: Path) -> None:
    strict = JobSettings(batch_size=4, part_rows=8, on_bad_row="fail")
    with pytest.raises(ManifestError, match="invalid JSON"):
        jobs.predict(classifier, manifest, tmp_path / "p", LocalRunner(), strict)
    good = tmp_path / "good.jsonl"
    good.write_text(manifest.read_text().splitlines()[0] + "\n")
    (tmp_path / "missing.png").write_bytes(b"")
    bad_image = tmp_path / "bad.jsonl"
    bad_image.write_text(json.dumps({"id": "x", "image": "missing.png", "text": "red"}) + "\n")
    with pytest.raises(ManifestError, match=r"row 1 \(id x\)"):
        jobs.predict(classifier, bad_image, tmp_path / "q", LocalRunner(), strict)


def test_a_classifier_job_refuses_an_alignment_kind(classifier: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a alignment"):
        jobs.index(classifier, tmp_path / "m.jsonl", tmp_path / "db", LocalRunner())
