"""Manifests: one sample per row, in JSONL, CSV or Parquet.

Keys are modality names (from the config), ``label``, an optional ``id``;
every other key is metadata kept for slicing. File modalities hold a path
relative to the manifest (absolute allowed); text holds the string. A missing
modality is an absent key, ``null``, NaN or an empty CSV cell.

Rows that cannot even be parsed (broken JSON) are kept as problems, not
fatal errors, so a long run can skip them and report.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from polyfuse.core.errors import ManifestError
from polyfuse.heads.tasks import is_nan

FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
RESERVED = ("id",)


@dataclass(frozen=True)
class Row:
    """One sample.

    Attributes:
        index: 0-based position in the manifest (CSV/JSONL line order).
        id: the ``id`` value, or the row number.
        values: modality name -> raw value, present modalities only.
        label: the raw target, or None.
        metadata: every other key.
    """

    index: int
    id: str
    values: dict[str, Any]
    label: Any
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def line(self) -> int:
        """1-based row number for messages."""
        return self.index + 1


@dataclass(frozen=True)
class RowProblem:
    """A row that could not be parsed at all."""

    index: int
    message: str


@dataclass
class Manifest:
    """A parsed manifest.

    Attributes:
        path: the manifest file.
        rows: parsed rows.
        problems: unparseable rows.
        modalities: the modality keys that were looked for.
        label_key: the key holding targets.
    """

    path: Path
    rows: list[Row]
    problems: list[RowProblem]
    modalities: tuple[str, ...]
    label_key: str = "label"

    @property
    def base_dir(self) -> Path:
        """Relative paths are resolved against this folder."""
        return self.path.parent

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    @classmethod
    def load(
        cls, path: str | Path, modalities: Iterable[str], label_key: str = "label"
    ) -> Manifest:
        """Read a manifest and split each record into modality values, label and metadata.

        Raises:
            ManifestError: the file is missing or of an unknown format.
        """
        path = Path(path)
        modalities = tuple(modalities)
        rows, problems = [], []
        for index, record in enumerate(read_records(path)):
            if isinstance(record, RowProblem):
                problems.append(record)
                continue
            rows.append(_to_row(index, record, modalities, label_key))
        return cls(path, rows, problems, modalities, label_key)

    def columns(self) -> list[str]:
        """Every key seen in any row (modalities, label, id, metadata)."""
        seen: dict[str, None] = {}
        for row in self.rows:
            for key in (*row.values, *row.metadata):
                seen.setdefault(key, None)
        return list(seen)


def read_records(path: Path) -> Iterator[dict[str, Any] | RowProblem]:
    """Raw records of a manifest file, with unparseable rows as `RowProblem`."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ManifestError(
            path, f"unknown manifest format '{path.suffix}'", hint="use .jsonl, .csv or .parquet"
        )
    if not path.is_file():
        raise ManifestError(path, "manifest file not found")
    if fmt == "parquet":
        yield from _read_parquet(path)
        return
    # surrogateescape keeps undecodable bytes so the text contract can report
    # the row, instead of the whole manifest failing to open
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    if fmt == "csv":
        yield from _read_csv(text)
    elif fmt == "json":
        yield from _read_json(path, text)
    else:
        yield from _read_jsonl(text)


def _read_jsonl(text: str) -> Iterator[dict[str, Any] | RowProblem]:
    index = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield RowProblem(index, f"invalid JSON: {exc.msg} at column {exc.colno}")
        else:
            if isinstance(record, dict):
                yield record
            else:
                yield RowProblem(index, f"expected a JSON object, got {type(record).__name__}")
        index += 1


def _read_json(path: Path, text: str) -> Iterator[dict[str, Any] | RowProblem]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(path, f"invalid JSON: {exc}") from exc
    if not isinstance(data, list):
        raise ManifestError(
            path,
            "a .json manifest must hold a list of objects",
            hint="or write one object per line as .jsonl",
        )
    for index, record in enumerate(data):
        yield record if isinstance(record, dict) else RowProblem(index, "not a JSON object")


def _read_csv(text: str) -> Iterator[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for record in reader:
        yield {k: (None if v == "" else v) for k, v in record.items() if k is not None}


def _read_parquet(path: Path) -> Iterator[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        from polyfuse.core.errors import DependencyError

        raise DependencyError("pyarrow", "Parquet manifests", "parquet") from exc
    yield from pq.read_table(path).to_pylist()


def _missing(value: Any) -> bool:
    return value is None or is_nan(value)


def _to_row(index: int, record: dict[str, Any], modalities: Sequence[str], label_key: str) -> Row:
    values = {m: record[m] for m in modalities if m in record and not _missing(record[m])}
    label = record.get(label_key)
    label = None if _missing(label) else label
    row_id = record.get("id")
    metadata = {
        k: v
        for k, v in record.items()
        if k not in modalities and k != label_key and k not in RESERVED
    }
    return Row(index, str(index) if _missing(row_id) else str(row_id), values, label, metadata)


def read_from(rows: Sequence[Row], keys: Mapping[str, str]) -> list[Row]:
    """``rows`` with modality ``m`` taking the value of manifest key ``keys[m]`` (a modality
    read from another key's file: the audio of ``video``, see the audio contract's
    ``source``); the key may be another modality or metadata. A row without that key
    lacks the modality."""
    if not keys:
        return list(rows)
    out = []
    for row in rows:
        values = dict(row.values)
        for m, key in keys.items():
            value = row.values.get(key, row.metadata.get(key))
            if value is None or _missing(value):
                values.pop(m, None)
            else:
                values[m] = value
        out.append(replace(row, values=values))
    return out


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write records as a JSONL manifest (UTF-8, one object per line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
