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
    """

    path: Path
    rows: int
    modalities: dict[str, str]
    coverage: dict[str, int]
    patterns: dict[str, int]
    labels: dict[str, int]
    bad_rows: list[dict[str, Any]] = field(default_factory=list)
    metadata: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
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
) -> ValidationReport:
    """Load every value of every row through its modality contract and report.

    Modalities come from ``config``, from ``modalities`` (``NAME=KIND``), or,
    failing both, from columns named like a kind (``image``, ``audio``,
    ``text``, ``timeseries``).
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
    )
