"""Reviewed samples as a training manifest (``polyfuse feedback export``).

Every reviewed item whose inputs were kept (``--review-inputs``) becomes one row of a JSONL
manifest of the shape ``polyfuse train`` reads: ``id``, one key per modality (text inline,
files written beside the manifest in ``<stem>-inputs/`` and named by a path relative to it),
``label`` (the reviewer's), and metadata for slicing (``reviewer``, ``reviewed``,
``reasons``, ``predicted``, ``model_version``). The inputs are the ones the firewall let
through (redacted where it redacted).

Reviewed items without kept inputs (the default, or a request the firewall blocked) cannot be
training rows: their labels and input digests go to ``<stem>.hashes.jsonl`` beside the
manifest, to be joined with the operator's own copy of the data by SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from polyfuse.core.errors import ConfigError
from polyfuse.serve.review.store import ReviewItem, ReviewStore

#: Sniffed format -> file extension of an exported input.
EXTENSIONS = {"jpeg": "jpg", "tiff": "tif"}


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote.

    Attributes:
        manifest: the training manifest.
        rows: its rows (reviewed items with kept inputs).
        hashes: the file of labels and digests of the other reviewed items (None: none).
        without_inputs: how many reviewed items went there.
    """

    manifest: Path
    rows: int
    hashes: Path | None
    without_inputs: int

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``polyfuse feedback export --json``)."""
        return {
            "manifest": str(self.manifest),
            "rows": self.rows,
            "hashes": None if self.hashes is None else str(self.hashes),
            "without_inputs": self.without_inputs,
        }


def export_manifest(store: ReviewStore, out: str | Path) -> ExportSummary:
    """Write the reviewed items of ``store`` as a training manifest at ``out`` (see the
    module docstring)."""
    out = Path(out)
    if out.suffix not in (".jsonl", ".ndjson"):
        raise ConfigError("--out", f"'{out}' is not a .jsonl file", hint="e.g. reviewed.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = out.parent / f"{out.stem}-inputs"
    hashes = out.with_name(f"{out.stem}.hashes.jsonl")
    rows = others = 0
    with out.open("w", encoding="utf-8") as manifest, hashes.open("w", encoding="utf-8") as digests:
        for item in store.all_items("reviewed"):
            row = training_row(store, item, folder, out.parent)
            if row is not None:
                manifest.write(json.dumps(row) + "\n")
                rows += 1
            else:
                digests.write(json.dumps(hash_row(item)) + "\n")
                others += 1
    if not others:
        hashes.unlink()
    return ExportSummary(out, rows, hashes if others else None, others)


def _metadata(item: ReviewItem) -> dict[str, Any]:
    predicted = item.prediction
    if isinstance(predicted, list):
        predicted = "|".join(map(str, predicted))
    stamp = None
    if item.reviewed is not None:
        stamp = datetime.fromtimestamp(item.reviewed, UTC).isoformat(timespec="seconds")
    return {
        "reviewer": item.reviewer,
        "reviewed": stamp,
        "reasons": "|".join(item.reasons),
        "predicted": predicted,
        "model_version": item.model.get("version"),
    }


def training_row(
    store: ReviewStore, item: ReviewItem, folder: Path, base: Path
) -> dict[str, Any] | None:
    """The manifest row of a reviewed item (its kept inputs written under ``folder``,
    named relative to ``base``), or None when none of its inputs was kept."""
    values: dict[str, Any] = {}
    for m, described in item.inputs.items():
        data = store.payload(item.request_id, m) if described.stored else None
        if data is None:
            continue
        if described.format == "text":
            values[m] = data.decode("utf-8")
            continue
        ext = EXTENSIONS.get(described.format or "", described.format or "bin")
        path = folder / hashlib.sha256(item.request_id.encode()).hexdigest()[:16] / f"{m}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        values[m] = path.relative_to(base).as_posix()
    if not values:
        return None
    return {"id": item.request_id, **values, "label": item.label, **_metadata(item)}


def hash_row(item: ReviewItem) -> dict[str, Any]:
    """A reviewed item without kept inputs: its label and its inputs' digests."""
    return {
        "id": item.request_id,
        "label": item.label,
        "inputs": {m: {"sha256": i.sha256, "size": i.size} for m, i in item.inputs.items()},
        "firewall": item.firewall,
        **_metadata(item),
    }
