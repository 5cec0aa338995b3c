"""The ``sync`` section of an evaluation: how far each video's sound is off its picture,
and how the model does on videos in sync and out of sync."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from polyfuse.core.errors import PolyfuseError
from polyfuse.evaluation.analyses.base import AnalysisContext, Result
from polyfuse.evaluation.metrics import headline, task_metrics


@dataclass
class SyncResult(Result):
    """Sound/picture sync of the evaluated videos.

    Attributes:
        method: ``signal`` (the baseline) or ``learned``.
        threshold_ms: offsets at or above it are out of sync.
        checked: videos whose offset was estimated.
        no_sound: videos without an audio stream.
        median_abs_offset_ms: over the checked videos.
        out_of_sync: how many are out of sync.
        in_sync_metrics: headline metrics of the rows whose videos are in sync.
        out_of_sync_metrics: the same for rows with a video out of sync (when any).
        rows: ``{"row", "id", "modality", "av_offset_ms", "desync"}`` per checked video.
    """

    method: str
    threshold_ms: float
    checked: int
    no_sound: int
    median_abs_offset_ms: float | None
    out_of_sync: int
    in_sync_metrics: dict[str, Any] | None = None
    out_of_sync_metrics: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Sync:
    """Estimate each video's sound/picture offset and compare the model on videos in and
    out of sync. Models without a video modality get no result.

    Attributes:
        model: a learned sync model folder (`polyfuse.train.sync`); None: the signal baseline.
    """

    model: str | None = None
    name: str = "sync"

    def calculate(self, context: AnalysisContext) -> SyncResult | None:
        """The section, or None when no modality of the model is a video."""
        from polyfuse.modalities.io import read_source
        from polyfuse.modalities.sync import clip_offset

        contracts = context.predictor.artifact.contracts
        videos = [m for m in context.names if contracts[m].kind == "video"]
        if not videos:
            return None
        from polyfuse.models.sync import load_sync_method

        method = load_sync_method(self.model)
        threshold = float(method.threshold_ms)
        base = context.manifest.base_dir
        rows: list[dict[str, Any]] = []
        desync = torch.zeros(len(context.rows), dtype=torch.bool)
        checked_rows = torch.zeros(len(context.rows), dtype=torch.bool)
        no_sound = 0
        for pos, row in enumerate(context.rows):
            for m in videos:
                value = row.values.get(m)
                if not isinstance(value, str | bytes | Path):
                    continue
                try:
                    src = read_source(value, modality=m, field=m, base_dir=base, max_bytes=1 << 40)
                    est = clip_offset(src.data, method, name=m)
                except PolyfuseError:
                    continue  # the dataset reports unreadable rows
                if est is None:
                    no_sound += 1
                    continue
                checked_rows[pos] = True
                desync[pos] |= est.desync
                rows.append(
                    {
                        "row": pos,
                        "id": row.id,
                        "modality": m,
                        "av_offset_ms": round(est.offset_ms, 1),
                        "desync": est.desync,
                    }
                )

        def metrics(sel: torch.Tensor) -> dict[str, Any] | None:
            if not bool(sel.any()):
                return None
            return headline(task_metrics(context.task, context.probs[sel], context.target[sel]))

        offsets = [abs(r["av_offset_ms"]) for r in rows]
        return SyncResult(
            method="signal" if self.model is None else "learned",
            threshold_ms=threshold,
            checked=len(rows),
            no_sound=no_sound,
            median_abs_offset_ms=statistics.median(offsets) if offsets else None,
            out_of_sync=sum(r["desync"] for r in rows),
            in_sync_metrics=metrics(checked_rows & ~desync),
            out_of_sync_metrics=metrics(desync),
            rows=rows,
        )
