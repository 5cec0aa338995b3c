"""What every analysis shares: the typed-result base, the context and the scoring helpers.

An analysis is a small serializable config (a frozen dataclass holding only its own
parameters) with ``calculate(context) -> Result``. The `AnalysisContext` holds what all of
them share: the predictor, the encoded `FeatureBank`, the fused outputs, labels and task,
and lazily the coalition logits and Shapley values that several analyses reuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from polyfuse.data.dataset import MultimodalDataset
from polyfuse.data.manifest import Manifest, Row
from polyfuse.evaluation import shapley as shap
from polyfuse.evaluation.bank import FeatureBank, Fused, fuse_bank
from polyfuse.evaluation.failures import failure_analysis
from polyfuse.evaluation.metrics import headline, task_metrics
from polyfuse.heads.tasks import MulticlassTask, MultilabelTask, Task

if TYPE_CHECKING:
    from polyfuse.inference.predict import Predictor
    from polyfuse.models.multimodal import MultimodalModel


class Result:
    """Base of typed analysis results: ``to_dict`` is the JSON form; ``r["key"]`` reads a field.

    Fields that are ``None`` are left out of the JSON form (an optional part not computed).
    """

    def to_dict(self) -> dict[str, Any]:
        """JSON form: one key per field that is set."""
        return {
            f.name: v
            for f in fields(self)  # type: ignore[arg-type]
            if (v := getattr(self, f.name)) is not None
        }

    def __getitem__(self, key: str) -> Any:
        """Field by its JSON key (the report reads results like their JSON form)."""
        if key not in {f.name for f in fields(self)}:  # type: ignore[arg-type]
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        """Whether the field is set (as a key of the JSON form)."""
        return isinstance(key, str) and getattr(self, key, None) is not None

    def get(self, key: str, default: Any = None) -> Any:
        """Field by its JSON key, or ``default`` when it is unset or unknown."""
        value = getattr(self, key, None)
        return default if value is None else value


class AnalysisSpec(Protocol):
    """One analysis: a config with a name and a ``calculate``."""

    @property
    def name(self) -> str:
        """Key of the result in `Analysis` (``ablation``, ``slices`` ...)."""
        ...

    def calculate(self, context: AnalysisContext) -> Any:
        """Compute this analysis over the shared context."""
        ...


@dataclass
class AnalysisContext:
    """What every analysis shares: computed once by `analyze`, read by each `calculate`.

    Attributes:
        predictor: the loaded predictor (model, contracts, device).
        manifest: the labelled manifest.
        dataset: the dataset over it (bad rows skipped).
        bank: encoder outputs of every evaluated row (bank position -> manifest row).
        full: the fused outputs with every fed modality.
        target: labels in bank order.
        rows: manifest rows in bank order.
        seed: seed of bootstrap, permutations, corruptions and clustering.
        progress: progress bars.
    """

    predictor: Predictor
    manifest: Manifest
    dataset: MultimodalDataset
    bank: FeatureBank
    full: Fused
    target: Tensor
    rows: list[Row]
    seed: int = 0
    progress: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def model(self) -> MultimodalModel:
        """The artifact's model."""
        return self.predictor.artifact.model

    @property
    def task(self) -> Task:
        """The artifact's task."""
        return self.predictor.artifact.task

    @property
    def names(self) -> list[str]:
        """The model's modalities, in model order."""
        return list(self.model.modalities)

    @property
    def ids(self) -> list[str]:
        """Row ids in bank order."""
        return [r.id for r in self.rows]

    @cached_property
    def probs(self) -> Tensor:
        """Fused probabilities (N, C)."""
        return self.task.probabilities(self.full.logits)

    @cached_property
    def coalition_logits(self) -> dict[frozenset[str], Tensor]:
        """Fused logits of every modality subset (the empty one included)."""
        every = len(self.names)
        return {
            c: self.full.logits if len(c) == every else fuse_bank(self.model, self.bank, c).logits
            for c in shap.coalitions(self.names)
        }

    @cached_property
    def values(self) -> dict[str, dict[frozenset[str], Tensor]]:
        """Value function name -> coalition -> per-sample value (N,)."""
        per = {
            c: shap.value_functions(self.task, v, self.target)
            for c, v in self.coalition_logits.items()
        }
        return {vf: {c: v[vf] for c, v in per.items()} for vf in per[frozenset(self.names)]}

    @cached_property
    def shapley(self) -> dict[str, Tensor]:
        """Value function name -> per-sample Shapley values (N, M)."""
        return {vf: shap.shapley_values(v, self.names) for vf, v in self.values.items()}

    @cached_property
    def failures(self) -> dict[str, Any] | None:
        """Categorised and clustered errors (multi-class only; rows are bank positions)."""
        task = self.task
        if not isinstance(task, MulticlassTask):
            return None
        full = self.full
        return failure_analysis(
            full.logits.argmax(1),
            self.target,
            {m: full.unimodal[m].argmax(1) for m in self.names},
            full.present,
            full.embedding,
            task.labels,
            self.ids,
            seed=self.seed,
        )


def is_regression(task: Task) -> bool:
    """Whether the task predicts numbers (no probabilities)."""
    return not isinstance(task, MulticlassTask | MultilabelTask)


def headline_metric(task: Task) -> str:
    """Headline metric of curves and gaps (higher is better)."""
    return "neg_rmse" if is_regression(task) else "accuracy"


def score(task: Task, logits: Tensor, target: Tensor) -> dict[str, Any]:
    """Headline metrics of some logits."""
    return headline(task_metrics(task, task.probabilities(logits), target))


def late_reference(
    task: Task, full: Fused, shown: frozenset[str], target: Tensor, metric: str
) -> float:
    """Metric of the mean of the unimodal heads' probabilities over the shown, present ones."""
    names = sorted(shown)
    if is_regression(task):
        stacked = torch.stack([full.unimodal[m] for m in names])
    else:
        stacked = torch.stack([task.probabilities(full.unimodal[m]) for m in names])
    mask = torch.stack([full.present[m] for m in names]).float()
    mask = mask.view(*mask.shape, *([1] * (stacked.dim() - 2)))
    mean = (stacked * mask).sum(0) / mask.sum(0).clamp_min(1)
    if isinstance(task, MulticlassTask):
        logits = mean.clamp_min(1e-12).log()
    elif isinstance(task, MultilabelTask):
        p = mean.clamp(1e-6, 1 - 1e-6)
        logits = (p / (1 - p)).log()
    else:
        logits = mean
    return float(score(task, logits, target)[metric])
