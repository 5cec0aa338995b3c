"""Metrics per slice of the data (any metadata column) and the worst-slice gap."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor


def slice_columns(
    metadata: Sequence[Mapping[str, Any]], max_values: int = 50, min_size: int = 2
) -> list[str]:
    """Metadata columns worth slicing on: categorical-looking, not an id.

    A column qualifies when it has 2..``max_values`` distinct values and its
    typical slice holds at least ``min_size`` rows.
    """
    keys = sorted({k for row in metadata for k in row})
    out = []
    for key in keys:
        values = [row.get(key) for row in metadata if row.get(key) is not None]
        if not values or any(isinstance(v, dict | list) for v in values):
            continue
        distinct = {str(v) for v in values}
        if 2 <= len(distinct) <= max_values and len(values) / len(distinct) >= min_size:
            out.append(key)
    return out


def slice_metrics(
    metadata: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    compute: Callable[[Tensor], dict[str, Any]],
    metric: str = "accuracy",
    gap_threshold: float = 0.05,
    min_size: int = 10,
) -> dict[str, Any]:
    """Per-slice metrics and, per column, the worst-slice gap.

    Args:
        metadata: one mapping per evaluated sample (row order of the outputs).
        columns: metadata keys to slice on; rows without a value form no slice.
        compute: boolean row selection ``(N,)`` -> metrics of those rows.
        metric: the metric the gap is measured on (higher is better).
        gap_threshold: a gap (overall minus worst slice) above this is flagged.
        min_size: slices smaller than this are reported but never flagged.

    Returns:
        column -> ``{"slices": {value: metrics}, "worst", "gap", "flagged"}``.
    """
    n = len(metadata)
    overall = compute(torch.ones(n, dtype=torch.bool))[metric] if n else 0.0
    out: dict[str, Any] = {}
    for col in columns:
        values = [None if row.get(col) is None else str(row.get(col)) for row in metadata]
        groups: dict[str, Any] = {}
        for v in sorted({v for v in values if v is not None}):
            sel = torch.tensor([x == v for x in values], dtype=torch.bool)
            groups[v] = compute(sel)
        sized = {v: m for v, m in groups.items() if m["n"] >= min_size}
        worst = min(sized, key=lambda v: sized[v][metric]) if sized else None
        gap = float(overall - sized[worst][metric]) if worst is not None else 0.0
        out[col] = {
            "slices": groups,
            "worst": worst,
            "gap": gap,
            "flagged": worst is not None and gap > gap_threshold,
            "metric": metric,
            "overall": overall,
        }
    return out
