"""Resumable output: numbered Parquet parts, each holding a fixed range of manifest rows.

Part ``k`` holds rows ``k * part_rows`` to ``(k + 1) * part_rows - 1`` (manifest row
indices, bad rows included with their error). A part is written once its last row has
arrived, to a temporary name renamed into place, so a part file on disk is always
complete; a rerun with the same folder, artifact, manifest and settings (``_layout.json``)
computes only the parts that are missing. The folder reads as one table with pyarrow,
pandas or Ray Data (``read_parquet(folder)``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyfuse.core.errors import ConfigError, PolyfuseError

LAYOUT = "_layout.json"


def part_name(part: int) -> str:
    """File name of part ``part``."""
    return f"part-{part:05d}.parquet"


def digest(path: Path) -> str:
    """sha256 of a file (the manifest, the artifact's ``artifact.json``)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Layout:
    """What a folder of parts holds; a rerun must match it to resume.

    Attributes:
        job: ``predict`` or ``embed``.
        artifact: artifact folder and sha256 of its ``artifact.json`` (which lists
            every file's digest).
        manifest: manifest path and its sha256.
        records: manifest rows, unparseable ones included.
        part_rows: rows per part.
        modalities: modalities read.
    """

    job: str
    artifact: tuple[str, str]
    manifest: tuple[str, str]
    records: int
    part_rows: int
    modalities: tuple[str, ...]

    @property
    def parts(self) -> int:
        """Number of parts."""
        return -(-self.records // self.part_rows)

    def part_of(self, row: int) -> int:
        """The part that holds manifest row ``row``."""
        return row // self.part_rows

    def size(self, part: int) -> int:
        """Rows in part ``part``."""
        return min(self.part_rows, self.records - part * self.part_rows)

    def to_json(self) -> str:
        """JSON text of the layout."""
        return json.dumps(dataclasses.asdict(self), indent=2)

    def differences(self, other: dict[str, Any]) -> list[str]:
        """Keys whose value differs from a stored layout."""
        mine = json.loads(self.to_json())
        return [k for k in mine if mine[k] != other.get(k)]


def prepare(out: Path, layout: Layout) -> list[int]:
    """Check or write ``out``'s layout; the parts still to compute.

    Raises:
        ConfigError: ``out`` is a file, or holds parts of another run.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError("--out", f"'{out}' is a file", hint="give a folder, e.g. preds.parquet")
    stored = out / LAYOUT
    if stored.is_file():
        changed = layout.differences(json.loads(stored.read_text(encoding="utf-8")))
        if changed:
            raise ConfigError(
                "--out",
                f"'{out}' holds parts of another run ({', '.join(changed)} differ)",
                hint="give a new --out folder, or delete this one to start over",
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        stored.write_text(layout.to_json(), encoding="utf-8")
    return [k for k in range(layout.parts) if not (out / part_name(k)).is_file()]


class PartWriter:
    """Collects output rows in any order and writes each part when it is complete.

    Args:
        out: the parts folder.
        layout: its layout.
        pending: parts to write.
        schema: the parts' Arrow schema (a ``pyarrow.Schema``).
    """

    def __init__(self, out: Path, layout: Layout, pending: Iterable[int], schema: Any) -> None:
        self.out = out
        self.layout = layout
        self.schema = schema
        self.waiting = {k: layout.size(k) for k in pending}
        self.buffers: dict[int, list[dict[str, Any]]] = {k: [] for k in self.waiting}
        self.written: list[int] = []

    def add(self, record: dict[str, Any]) -> None:
        """One output row (with its ``row``); writes its part if it was the last."""
        part = self.layout.part_of(int(record["row"]))
        if part not in self.waiting:
            raise PolyfuseError(f"row {record['row']} of part {part} was not asked for")
        self.buffers[part].append(record)
        if len(self.buffers[part]) == self.waiting[part]:
            self._write(part)

    def _write(self, part: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = sorted(self.buffers.pop(part), key=lambda r: int(r["row"]))
        del self.waiting[part]
        final = self.out / part_name(part)
        tmp = final.with_name(f".{final.name}.tmp")
        pq.write_table(pa.Table.from_pylist(rows, schema=self.schema), tmp)
        tmp.replace(final)
        self.written.append(part)

    def finish(self) -> None:
        """Check that every part was written.

        Raises:
            PolyfuseError: rows never came back (a stage dropped them).
        """
        if self.waiting:
            missing = {k: self.waiting[k] - len(self.buffers[k]) for k in self.waiting}
            raise PolyfuseError(
                f"{sum(missing.values())} rows of parts {sorted(missing)} never came back",
                hint="rerun with the same --out: finished parts are kept",
            )


def read_parts(out: Path, columns: list[str] | None = None) -> Any:
    """Every part of ``out`` as one ``pyarrow.Table``, in row order.

    Raises:
        ConfigError: ``out`` holds no parts.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(out.glob("part-*.parquet"))
    if not files:
        raise ConfigError("--out", f"'{out}' holds no parts", hint="run the job first")
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files])
