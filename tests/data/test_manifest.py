"""Manifests: JSONL/CSV/Parquet, missing values, metadata, broken rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyfuse.core.errors import ManifestError
from polyfuse.data import Manifest


def test_jsonl_rows_split_into_values_label_metadata(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(
        '{"id": "a", "image": "x.png", "text": null, "label": 3, "speaker": "bo"}\n'
        '\n{"image": "y.png", "text": "hi", "label": "4"}\n'
    )
    m = Manifest.load(path, ["image", "text"])
    assert [r.id for r in m.rows] == ["a", "1"]
    assert m.rows[0].values == {"image": "x.png"}, "null means missing"
    assert m.rows[0].metadata == {"speaker": "bo"} and m.rows[0].label == 3
    assert m.rows[1].values == {"image": "y.png", "text": "hi"}
    assert m.base_dir == tmp_path


def test_csv_empty_cells_are_missing(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("image,audio,label,site\nx.png,,1,A\n,y.wav,2,B\n")
    m = Manifest.load(path, ["image", "audio"])
    assert [r.values for r in m.rows] == [{"image": "x.png"}, {"audio": "y.wav"}]
    assert m.rows[1].metadata == {"site": "B"}


def test_parquet_with_nulls(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"image": ["x.png", None], "label": [1, 2], "weight": [0.5, float("nan")]})
    pq.write_table(table, tmp_path / "m.parquet")
    m = Manifest.load(tmp_path / "m.parquet", ["image"])
    assert [r.values for r in m.rows] == [{"image": "x.png"}, {}]


def test_broken_json_line_is_a_row_problem_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"image": "a.png", "label": 1}\n{"image": broken\n[1, 2]\n')
    m = Manifest.load(path, ["image"])
    assert len(m.rows) == 1
    assert [p.index for p in m.problems] == [1, 2]
    assert "invalid JSON" in m.problems[0].message


def test_non_utf8_bytes_survive_loading_for_the_contract_to_report(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(b"text,label\ncaf\xe9,1\nok,2\n")
    m = Manifest.load(path, ["text"])
    assert len(m.rows) == 2 and m.rows[0].values["text"].startswith("caf")


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="unknown manifest format"):
        Manifest.load(tmp_path / "m.xlsx", ["image"])
    with pytest.raises(ManifestError, match="not found"):
        Manifest.load(tmp_path / "absent.jsonl", ["image"])
