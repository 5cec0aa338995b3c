"""What each modality does: metrics per modality subset, Shapley contributions and
permutation importance, all by fusing the stored features again."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from polyfuse.evaluation import shapley as shap
from polyfuse.evaluation.analyses.base import (
    AnalysisContext,
    Result,
    headline_metric,
    late_reference,
    score,
)
from polyfuse.evaluation.bank import fuse_bank
from polyfuse.evaluation.metrics import confidence_intervals
from polyfuse.evaluation.robustness import effective_robustness, relative_robustness
from polyfuse.heads.tasks import MulticlassTask
from polyfuse.inference.collect import subset_key


@dataclass
class AblationResult(Result):
    """Metrics per non-empty modality subset, curves by number removed, robustness scores.

    Attributes:
        metric: headline metric of the curves (``accuracy`` or ``neg_rmse``).
        subsets: subset key (``audio+image``) -> its modalities, headline metrics and
            (classification) ``confidence_intervals`` of accuracy, macro- and micro-F1.
        late_fusion_reference: subset key -> metric of the mean of its unimodal heads.
        curve: mean metric by number of modalities removed (0, 1, ...).
        reference_curve: the same for the late-fusion reference.
        relative_robustness: MultiBench relative robustness of ``curve``.
        effective_robustness: MultiBench effective robustness against the reference.
    """

    metric: str
    subsets: dict[str, dict[str, Any]]
    late_fusion_reference: dict[str, float]
    curve: list[float]
    reference_curve: list[float]
    relative_robustness: float
    effective_robustness: float


@dataclass(frozen=True)
class Ablation:
    """Metrics of every non-empty modality subset (MultiBench-style robustness curves).

    Attributes:
        bootstrap: resamples for each subset's 95% intervals (0: none).
    """

    bootstrap: int = 1000
    name: str = "ablation"

    def calculate(self, context: AnalysisContext) -> AblationResult:
        """Score each subset and its late-fusion reference; average by number removed."""
        task, target, full = context.task, context.target, context.full
        metric = headline_metric(task)
        subsets: dict[str, dict[str, Any]] = {}
        reference: dict[str, float] = {}
        for c, lg in context.coalition_logits.items():
            if c:
                key = subset_key(c)
                subsets[key] = {"modalities": sorted(c), **score(task, lg, target)}
                ci = confidence_intervals(
                    task, task.probabilities(lg), target, self.bootstrap, seed=context.seed
                )
                if ci:
                    subsets[key]["confidence_intervals"] = ci
                reference[key] = late_reference(task, full, c, target, metric)
        m = len(context.names)
        curve, ref_curve = [], []
        for removed in range(m):
            keys = [subset_key(c) for c in context.coalition_logits if c and len(c) == m - removed]
            curve.append(sum(subsets[k][metric] for k in keys) / len(keys))
            ref_curve.append(sum(reference[k] for k in keys) / len(keys))
        return AblationResult(
            metric=metric,
            subsets=subsets,
            late_fusion_reference=reference,
            curve=curve,
            reference_curve=ref_curve,
            relative_robustness=relative_robustness(curve),
            effective_robustness=effective_robustness(curve, ref_curve),
        )


@dataclass
class ContributionsResult(Result):
    """How much each modality contributes.

    Attributes:
        modalities: the model's modalities.
        value_functions: value function -> Shapley summary (mean, share, per class),
            ``efficiency_max_error``, ``v_all`` and ``v_none``.
        fusion_weights: the fusion's own mean weights or attention mass over samples with
            every modality present (``None`` when the fusion has none).
        permutation_importance: metric drop when one modality's features are shuffled.
    """

    modalities: list[str]
    value_functions: dict[str, dict[str, Any]]
    fusion_weights: dict[str, Any] | None
    permutation_importance: dict[str, Any]


@dataclass(frozen=True)
class Contributions:
    """Exact per-sample Shapley values of each modality plus permutation importance.

    Attributes:
        permutations: repeats of the permutation-importance shuffle.
    """

    permutations: int = 5
    name: str = "contributions"

    def calculate(self, context: AnalysisContext) -> ContributionsResult:
        """Summarise the Shapley values, the fusion weights and the permutation drops."""
        names, values = context.names, context.values
        every = frozenset(names)
        out: dict[str, dict[str, Any]] = {}
        for vf, phi in context.shapley.items():
            gap = values[vf][every] - values[vf][frozenset()]
            err = (phi.sum(1) - gap).abs()
            entry: dict[str, Any] = {
                **shap.summarise(phi, names),
                "efficiency_max_error": float(err.max()) if len(err) else 0.0,
                "v_all": float(values[vf][every].mean()),
                "v_none": float(values[vf][frozenset()].mean()),
            }
            task = context.task
            if isinstance(task, MulticlassTask):
                per_class = shap.summarise(phi, names, context.target.long())
                entry["per_class"] = {task.labels[int(k)]: v for k, v in per_class.items()}
            out[vf] = entry
        return ContributionsResult(names, out, _fusion_weights(context), self._permutation(context))

    def _permutation(self, context: AnalysisContext) -> dict[str, Any]:
        """Drop in the headline metric when one modality's features are shuffled across samples."""
        task, target, bank = context.task, context.target, context.bank
        metric = headline_metric(task)
        base = float(score(task, context.full.logits, target)[metric])
        gen = torch.Generator().manual_seed(context.seed)
        drop: dict[str, dict[str, float]] = {}
        for m in context.names:
            drops = []
            have = bank.present[m].nonzero().flatten()
            for _ in range(self.permutations):
                perm = torch.arange(len(bank))
                perm[have] = have[torch.randperm(len(have), generator=gen)]
                lg = fuse_bank(context.model, bank, permute={m: perm}).logits
                drops.append(base - float(score(task, lg, target)[metric]))
            mean = sum(drops) / max(1, len(drops))
            std = math.sqrt(sum((d - mean) ** 2 for d in drops) / max(1, len(drops) - 1))
            drop[m] = {"mean": mean, "std": std}
        return {"metric": metric, "baseline": base, "repeats": self.permutations, "drop": drop}


def _fusion_weights(context: AnalysisContext) -> dict[str, Any] | None:
    """Mean fusion weight per modality over the samples with every modality present."""
    full, names, fusion = context.full, context.names, context.model.fusion
    if full.weights is None:
        return None
    every_present = torch.stack([full.present[m] for m in names], 1).all(1)
    w = full.weights[every_present]
    order = list(fusion.modalities)
    return {
        "kind": "attention mass" if fusion.uses_tokens else "weights",
        "mean": {m: float(w[:, order.index(m)].mean()) if len(w) else 0.0 for m in names},
        "n": int(every_present.sum()),
    }
