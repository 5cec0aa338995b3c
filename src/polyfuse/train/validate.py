"""``polyfuse validate``: find every problem in a manifest before a long run does."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyfuse.core.errors import ConfigError, PolyfuseError
from polyfuse.core.progress import bar
from polyfuse.data.manifest import Manifest, read_from
from polyfuse.modalities import CONTRACTS, ModalityContract, create_contract
from polyfuse.modalities.base import AbsentInputError


@dataclass
class ValidationReport:
    """What `validate_manifest` found.

    Attributes:
        path: the manifest.
        rows: number of parsed rows.
        modalities: modality name -> kind checked.
        coverage: modality -> rows that carry it.
        patterns: "image+audio" style presence pattern -> rows.
        labels: label value -> rows (missing labels under ``<none>``).
        bad_rows: list of ``{"row", "id", "modality", "path", "reason"}``.
        metadata: other columns seen (available for slicing).
        sync: video modalities' sound/picture sync (`SyncSummary`), when checked.
    """

    path: Path
    rows: int
    modalities: dict[str, str]
    coverage: dict[str, int]
    patterns: dict[str, int]
    labels: dict[str, int]
    bad_rows: list[dict[str, Any]] = field(default_factory=list)
    metadata: list[str] = field(default_factory=list)
    sync: SyncSummary | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        extra = {} if self.sync is None else {"sync": self.sync.to_dict()}
        return {
            **extra,
            "path": str(self.path),
            "rows": self.rows,
            "modalities": self.modalities,
            "coverage": self.coverage,
            "patterns": self.patterns,
            "labels": self.labels,
            "metadata": self.metadata,
            "bad_rows": self.bad_rows,
            "ok": not self.bad_rows,
        }

    def render(self) -> str:
        """Human-readable report."""
        out = [f"manifest: {self.path}", f"rows: {self.rows}", "modality coverage:"]
        for m, kind in self.modalities.items():
            n = self.coverage.get(m, 0)
            out.append(f"  {m:<16} {kind:<11} {n:>7} rows ({n / max(self.rows, 1):.0%})")
        out.append("presence patterns:")
        out += [f"  {p:<30} {n:>7}" for p, n in sorted(self.patterns.items(), key=lambda x: -x[1])]
        out.append(f"labels ({len(self.labels)}):")
        out += [
            f"  {lab:<30} {n:>7}"
            for lab, n in sorted(self.labels.items(), key=lambda x: -x[1])[:30]
        ]
        if self.metadata:
            out.append(f"metadata columns: {', '.join(self.metadata)}")
        if self.sync is not None:
            out += self.sync.render()
        if self.bad_rows:
            out.append(f"PROBLEMS: {len(self.bad_rows)} bad rows")
            for b in self.bad_rows[:20]:
                where = f" [{b['modality']}]" if b.get("modality") else ""
                out.append(f"  row {b['row']} (id {b['id']}){where}: {b['reason']}")
            if len(self.bad_rows) > 20:
                out.append(f"  ... {len(self.bad_rows) - 20} more (use --json for all)")
        else:
            out.append("OK: every row is readable")
        return "\n".join(out)


@dataclass
class SyncSummary:
    """Sound/picture sync of a manifest's videos (a warning, not a bad row).

    Attributes:
        method: ``signal`` or ``learned``.
        threshold_ms: offsets at or above it are out of sync.
        checked: videos with a soundtrack whose offset was estimated.
        no_sound: videos without an audio stream (a missing soundtrack, not a problem).
        offsets: ``{"row", "id", "modality", "av_offset_ms", "confidence", "desync"}`` per
            checked video.
    """

    method: str
    threshold_ms: float
    checked: int = 0
    no_sound: int = 0
    offsets: list[dict[str, Any]] = field(default_factory=list)

    @property
    def out_of_sync(self) -> list[dict[str, Any]]:
        """The videos whose sound is off its picture by the threshold or more."""
        return [o for o in self.offsets if o["desync"]]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        import statistics

        median = (
            statistics.median(abs(o["av_offset_ms"]) for o in self.offsets)
            if self.offsets
            else None
        )
        return {
            "method": self.method,
            "threshold_ms": self.threshold_ms,
            "checked": self.checked,
            "no_sound": self.no_sound,
            "median_abs_offset_ms": median,
            "out_of_sync": len(self.out_of_sync),
            "offsets": self.offsets,
        }

    def render(self) -> list[str]:
        """Report lines."""
        bad = self.out_of_sync
        out = [
            f"sync ({self.method}): {self.checked} videos checked, {self.no_sound} without "
            f"sound, {len(bad)} out of sync (>= {self.threshold_ms:g} ms)"
        ]
        for o in bad[:20]:
            sign = "late" if o["av_offset_ms"] > 0 else "early"
            out.append(
                f"  row {o['row']} (id {o['id']}) [{o['modality']}]: sound "
                f"{abs(o['av_offset_ms']):.0f} ms {sign} (confidence {o['confidence']:.2f})"
            )
        if len(bad) > 20:
            out.append(f"  ... {len(bad) - 20} more (use --json for all)")
        return out


def _contracts(
    config: str | Path | None, declared: Sequence[str], columns: Sequence[str]
) -> tuple[dict[str, ModalityContract], str]:
    if config is not None:
        from polyfuse.core.config import Config
        from polyfuse.models.build import build_contracts

        cfg = Config.from_file(config)
        return build_contracts(cfg), cfg.label
    if declared:
        out = {}
        for item in declared:
            name, sep, kind = item.partition("=")
            if not sep:
                raise ConfigError(f"--modality {item}", "expected NAME=KIND, e.g. photo=image")
            out[name] = create_contract(name, kind)
        return out, "label"
    guessed = {c: create_contract(c, c) for c in columns if c in CONTRACTS}
    if not guessed:
        raise ConfigError(
            "--config",
            "cannot tell which columns are modalities",
            hint=f"pass --config or --modality NAME=KIND (kinds: {', '.join(CONTRACTS.list())})",
        )
    return guessed, "label"


def validate_manifest(
    path: str | Path,
    *,
    config: str | Path | None = None,
    modalities: Sequence[str] = (),
    progress: bool = True,
    sync: bool = True,
    sync_model: str | Path | None = None,
) -> ValidationReport:
    """Load every value of every row through its modality contract and report.

    Modalities come from ``config``, from ``modalities`` (``NAME=KIND``), or,
    failing both, from columns named like a kind (``image``, ``audio``,
    ``text``, ``timeseries``, ``video``). With ``sync`` (the default), every readable
    video file's soundtrack offset is estimated (`polyfuse.modalities.sync.clip_offset`,
    the signal baseline, or the learned model saved in ``sync_model``) and reported.
    """
    path = Path(path)
    probe = Manifest.load(path, [])
    contracts, label_key = _contracts(config, modalities, probe.columns())
    manifest = Manifest.load(path, list(contracts), label_key)
    coverage: Counter[str] = Counter()
    patterns: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    bad = [
        {
            "row": p.index + 1,
            "id": str(p.index),
            "modality": None,
            "path": None,
            "reason": p.message,
        }
        for p in manifest.problems
    ]
    videos = [m for m, c in contracts.items() if c.kind == "video"] if sync else []
    summary, method = _sync_method(sync_model) if videos else (None, None)
    keys = {m: c.manifest_key for m, c in contracts.items() if c.manifest_key != m}
    for row in bar(read_from(manifest.rows, keys), enabled=progress, desc="validating"):
        labels[str(row.label) if row.label is not None else "<none>"] += 1
        present = [m for m in contracts if m in row.values]
        patterns["+".join(present) or "<no modality>"] += 1
        if not present:
            bad.append(
                {
                    "row": row.line,
                    "id": row.id,
                    "modality": None,
                    "path": None,
                    "reason": f"row has none of the modalities {', '.join(contracts)}",
                }
            )
        for m in present:
            try:
                contracts[m].load(row.values[m], field=m, base_dir=manifest.base_dir)
                coverage[m] += 1
                if summary is not None and m in videos:
                    _check_sync(summary, method, row, m, manifest.base_dir)
            except AbsentInputError:  # e.g. a video without a soundtrack: missing, not bad
                continue
            except PolyfuseError as err:
                bad.append(
                    {
                        "row": row.line,
                        "id": row.id,
                        "modality": m,
                        "path": getattr(err, "path", None),
                        "reason": getattr(err, "reason", err.message),
                    }
                )
    bad.sort(key=lambda b: int(b["row"] or 0))
    metadata = [c for c in manifest.columns() if c not in contracts and c not in ("id", label_key)]
    return ValidationReport(
        path,
        len(manifest.rows),
        {m: c.kind for m, c in contracts.items()},
        dict(coverage),
        dict(patterns),
        dict(labels),
        bad,
        metadata,
        summary,
    )


def _sync_method(model: str | Path | None) -> tuple[SyncSummary, Any]:
    from polyfuse.models.sync import load_sync_method

    method = load_sync_method(model)
    return SyncSummary("signal" if model is None else "learned", method.threshold_ms), method


def _check_sync(summary: SyncSummary, method: Any, row: Any, modality: str, base: Path) -> None:
    """Estimate one video's offset (a file value; arrays of frames carry no sound)."""
    from polyfuse.modalities.io import read_source
    from polyfuse.modalities.sync import clip_offset

    value = row.values[modality]
    if not isinstance(value, str | bytes | Path):
        return
    src = read_source(value, modality=modality, field=modality, base_dir=base, max_bytes=1 << 40)
    est = clip_offset(src.data, method, name=modality)
    if est is None:
        summary.no_sound += 1
        return
    summary.checked += 1
    d = est.to_dict()
    summary.offsets.append(
        {
            "row": row.line,
            "id": row.id,
            "modality": modality,
            "av_offset_ms": d["av_offset_ms"],
            "confidence": d["confidence"],
            "desync": d["desync"],
        }
    )
