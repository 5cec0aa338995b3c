"""Metrics of groups of rows and of corrupted inputs: detailed metrics with intervals,
slices by metadata column, and corruption robustness curves."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from polyfuse.core.errors import PolyfuseError
from polyfuse.core.progress import bar
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.evaluation import shapley as shap
from polyfuse.evaluation.analyses.base import (
    AnalysisContext,
    Result,
    headline_metric,
    late_reference,
    score,
)
from polyfuse.evaluation.bank import FeatureBank, encode_bank, fuse_bank
from polyfuse.evaluation.corruptions import SEVERITIES, Corruption, corruptions_for
from polyfuse.evaluation.metrics import (
    classification_extras,
    confidence_intervals,
    headline,
    task_metrics,
)
from polyfuse.evaluation.robustness import effective_robustness, relative_robustness
from polyfuse.evaluation.slices import slice_columns, slice_metrics


@dataclass(frozen=True)
class Metrics:
    """The task's metrics plus ROC AUC, calibration and bootstrap confidence intervals.

    Attributes:
        bootstrap: resamples for the 95% intervals (0: none).
    """

    bootstrap: int = 1000
    name: str = "metrics"

    def calculate(self, context: AnalysisContext) -> dict[str, Any]:
        """Task metrics (the evaluation's headline) with the classification extras."""
        task, probs, target = context.task, context.probs, context.target
        metrics = task_metrics(task, probs, target)
        extras = classification_extras(task, probs, target)
        if extras:
            metrics.update(extras)
            metrics["confidence_intervals"] = confidence_intervals(
                task, probs, target, self.bootstrap, seed=context.seed
            )
        return metrics


@dataclass
class SlicesResult(Result):
    """Metadata column -> ``{"slices": {value: metrics}, "worst", "gap", "flagged", ...}``."""

    columns: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """JSON form: one key per column."""
        return dict(self.columns)

    def __getitem__(self, key: str) -> Any:
        """The slices of one column."""
        return self.columns[key]

    def __contains__(self, key: object) -> bool:
        """Whether this column was sliced."""
        return key in self.columns

    def __iter__(self) -> Iterator[str]:
        """The sliced columns."""
        return iter(self.columns)

    def __len__(self) -> int:
        """Number of sliced columns."""
        return len(self.columns)

    def items(self) -> ItemsView[str, dict[str, Any]]:
        """(column, slices) pairs."""
        return self.columns.items()


@dataclass(frozen=True)
class Slices:
    """Metrics and mean Shapley values per value of metadata columns; flags worst-slice gaps.

    Attributes:
        columns: metadata columns to slice on; ``None``: every categorical-looking column.
        gap: worst-slice gap (below overall) that gets flagged.
    """

    columns: tuple[str, ...] | None = None
    gap: float = 0.05
    name: str = "slices"

    def calculate(self, context: AnalysisContext) -> SlicesResult:
        """Slice metrics; an unknown column is an error naming the columns that exist."""
        metadata = [r.metadata for r in context.rows]
        cols = list(self.columns) if self.columns is not None else slice_columns(metadata)
        unknown = [c for c in cols if not any(c in m for m in metadata)]
        if unknown:
            raise PolyfuseError(
                f"no row has the slice column(s) {unknown}",
                hint=f"metadata columns are {sorted({k for m in metadata for k in m})}",
            )
        task, probs, target, names = context.task, context.probs, context.target, context.names
        phis = context.shapley
        phi = phis.get("log_prob", next(iter(phis.values())))

        def compute(sel: Tensor) -> dict[str, Any]:
            res = headline(task_metrics(task, probs[sel], target[sel]))
            res["shapley"] = shap.summarise(phi[sel], names)["mean"]
            return res

        metric = headline_metric(task)
        return SlicesResult(slice_metrics(metadata, cols, compute, metric, self.gap))


@dataclass
class RobustnessResult(Result):
    """Metric curves under corruption.

    Attributes:
        metric: headline metric of the curves.
        curves: corruption -> modality, severities (0 = clean), metric values, late-fusion
            reference and the two robustness scores.
    """

    metric: str
    curves: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Robustness:
    """Metric under each corruption of each modality, re-encoding only that modality.

    Attributes:
        severities: corruption severities (1..5) of the curves.
    """

    severities: tuple[int, ...] = SEVERITIES
    name: str = "robustness"

    def calculate(self, context: AnalysisContext) -> RobustnessResult:
        """One curve per corruption; severity 0 is the clean score."""
        predictor, bank, target = context.predictor, context.bank, context.target
        model, task, contracts = context.model, context.task, predictor.artifact.contracts
        every = frozenset(model.modalities)
        metric = headline_metric(task)
        clean_score = float(score(task, context.full.logits, target)[metric])
        clean_ref = late_reference(task, context.full, every, target, metric)
        jobs = [
            (m, name, s)
            for m in model.modalities
            if bool(bank.present[m].any())
            for name in corruptions_for(contracts[m].kind)
            for s in self.severities
        ]
        curves: dict[str, dict[str, Any]] = {}
        for m, name, s in bar(jobs, enabled=context.progress, desc="corruptions", leave=False):
            fused = fuse_bank(model, corrupted_bank(context, m, name, s))
            entry = curves.setdefault(
                name,
                {"modality": m, "severities": [0], metric: [clean_score], "reference": [clean_ref]},
            )
            entry["severities"].append(s)
            entry[metric].append(float(score(task, fused.logits, target)[metric]))
            entry["reference"].append(late_reference(task, fused, every, target, metric))
        for entry in curves.values():
            entry["relative_robustness"] = relative_robustness(entry[metric])
            entry["effective_robustness"] = effective_robustness(entry[metric], entry["reference"])
        return RobustnessResult(metric, curves)


def corrupted_bank(
    context: AnalysisContext, modality: str, corruption: str, severity: int
) -> FeatureBank:
    """The context's feature bank with one modality encoded again from corrupted inputs
    (the corrupted inputs meet the quality gate serving runs); fuse it with `fuse_bank`."""
    predictor, bank, model = context.predictor, context.bank, context.model
    contracts = predictor.artifact.contracts
    ds = MultimodalDataset(
        context.manifest,
        {modality: contracts[modality]},
        None,
        on_bad_row="skip",
        require_label=False,
        allow_empty=True,
        transforms={modality: Corruption(corruption, severity, context.seed)},
        gates=predictor.gates,
    )
    sub = encode_bank(model, predictor.loader(ds), predictor.device)
    return bank.replace(modality, sub)
