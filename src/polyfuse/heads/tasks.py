"""Prediction tasks: label encoding, loss, probabilities and decoding.

A task is fitted on the training labels (it learns the label map) and saved
with the artifact.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.nn import functional as F

from polyfuse.core.errors import ConfigError, InvalidInputError


def _label_key(label: str) -> tuple[int, float | str]:
    """Numeric labels sort numerically, others alphabetically."""
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


def _as_label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Task(ABC):
    """Base class of tasks.

    Args:
        labels: class names (classification) or target names (regression).
    """

    name: ClassVar[str]

    def __init__(self, labels: Sequence[str]) -> None:
        if not labels:
            raise ConfigError("task", "no labels: the training manifest has no usable label values")
        self.labels: tuple[str, ...] = tuple(labels)
        self.index = {label: i for i, label in enumerate(self.labels)}

    @property
    def num_outputs(self) -> int:
        """Width of the logits."""
        return len(self.labels)

    @classmethod
    @abstractmethod
    def fit(cls, values: Sequence[Any]) -> Task:
        """Build the label map from training label values."""

    @abstractmethod
    def encode(self, value: Any) -> Tensor:
        """Target tensor of one raw label; `InvalidInputError` on unknown labels."""

    @abstractmethod
    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Per-sample loss ``(B,)``."""

    @abstractmethod
    def probabilities(self, logits: Tensor) -> Tensor:
        """Probabilities (classification) or values (regression), ``(B, K)``."""

    @abstractmethod
    def decode(self, probs: Tensor) -> Any:
        """Human label(s) for one row of `probabilities`."""

    def prior_logits(self, targets: Tensor) -> Tensor:
        """Logits that predict the training prior (the answer with no input at all)."""
        return torch.zeros(self.num_outputs)

    def default_metric(self) -> str:
        """Metric used for early stopping by default."""
        return "macro_f1"

    def to_dict(self) -> dict[str, Any]:
        """Serialisable form."""
        return {"task": self.name, "labels": list(self.labels)}


class MulticlassTask(Task):
    """One label per sample; softmax cross-entropy."""

    name = "multiclass"

    @classmethod
    def fit(cls, values: Sequence[Any]) -> MulticlassTask:
        """Sorted distinct labels."""
        return cls(sorted({_as_label(v) for v in values if v is not None}, key=_label_key))

    def encode(self, value: Any) -> Tensor:
        """Class index."""
        key = _as_label(value)
        if key not in self.index:
            raise InvalidInputError(
                "label",
                f"unknown label '{key}'; known: {', '.join(self.labels[:20])}",
                field="label",
            )
        return torch.tensor(self.index[key], dtype=torch.long)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Cross-entropy per sample."""
        return F.cross_entropy(logits.float(), targets, reduction="none")

    def probabilities(self, logits: Tensor) -> Tensor:
        """Softmax."""
        return torch.softmax(logits.float(), dim=-1)

    def decode(self, probs: Tensor) -> str:
        """Most probable label."""
        return self.labels[int(probs.argmax())]

    def prior_logits(self, targets: Tensor) -> Tensor:
        """Log class frequencies (add-one smoothed)."""
        counts = torch.bincount(targets.long(), minlength=self.num_outputs).float() + 1.0
        return torch.log(counts / counts.sum())


class MultilabelTask(Task):
    """Any number of labels per sample; independent sigmoids.

    Label values are lists (JSON) or ``|``-separated strings (CSV).

    Args:
        threshold: probability above which a label is predicted.
    """

    name = "multilabel"

    def __init__(self, labels: Sequence[str], threshold: float = 0.5) -> None:
        super().__init__(labels)
        self.threshold = threshold

    @staticmethod
    def split(value: Any) -> list[str]:
        """Labels of one raw value."""
        if value is None:
            return []
        if isinstance(value, str):
            return [v.strip() for v in value.split("|") if v.strip()]
        if isinstance(value, list | tuple):
            return [_as_label(v) for v in value]
        return [_as_label(value)]

    @classmethod
    def fit(cls, values: Sequence[Any]) -> MultilabelTask:
        """Every label seen."""
        seen = {label for v in values for label in cls.split(v)}
        return cls(sorted(seen, key=_label_key))

    def encode(self, value: Any) -> Tensor:
        """Multi-hot vector."""
        target = torch.zeros(self.num_outputs)
        for label in self.split(value):
            if label not in self.index:
                raise InvalidInputError("label", f"unknown label '{label}'", field="label")
            target[self.index[label]] = 1.0
        return target

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Mean binary cross-entropy over labels."""
        return F.binary_cross_entropy_with_logits(
            logits.float(), targets.float(), reduction="none"
        ).mean(1)

    def probabilities(self, logits: Tensor) -> Tensor:
        """Sigmoid."""
        return torch.sigmoid(logits.float())

    def decode(self, probs: Tensor) -> list[str]:
        """Labels above threshold."""
        return [self.labels[i] for i in (probs >= self.threshold).nonzero().flatten().tolist()]

    def prior_logits(self, targets: Tensor) -> Tensor:
        """Log-odds of label frequencies."""
        freq = (targets.float().sum(0) + 1.0) / (targets.shape[0] + 2.0)
        return torch.log(freq / (1 - freq))

    def to_dict(self) -> dict[str, Any]:
        """Serialisable form."""
        return {**super().to_dict(), "threshold": self.threshold}


class RegressionTask(Task):
    """Real-valued targets (one or several); mean squared error.

    Label values are numbers or lists of numbers.
    """

    name = "regression"

    @classmethod
    def fit(cls, values: Sequence[Any]) -> RegressionTask:
        """Target names ``y`` or ``y0..yN``."""
        first = next((v for v in values if v is not None), None)
        width = len(first) if isinstance(first, list | tuple) else 1
        return cls(["y"] if width == 1 else [f"y{i}" for i in range(width)])

    def encode(self, value: Any) -> Tensor:
        """Float vector."""
        vals = value if isinstance(value, list | tuple) else [value]
        try:
            out = torch.tensor([float(v) for v in vals])
        except (TypeError, ValueError):
            raise InvalidInputError("label", f"not a number: {value!r}", field="label") from None
        if out.numel() != self.num_outputs or not bool(torch.isfinite(out).all()):
            raise InvalidInputError(
                "label", f"expected {self.num_outputs} finite numbers, got {value!r}", field="label"
            )
        return out

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Squared error per sample."""
        return (logits.float() - targets.float()).pow(2).mean(1)

    def probabilities(self, logits: Tensor) -> Tensor:
        """Predicted values."""
        return logits.float()

    def decode(self, probs: Tensor) -> float | list[float]:
        """The value(s)."""
        vals = [float(v) for v in probs]
        return vals[0] if len(vals) == 1 else vals

    def prior_logits(self, targets: Tensor) -> Tensor:
        """Training mean."""
        return targets.float().mean(0)

    def default_metric(self) -> str:
        """Negative RMSE (higher is better)."""
        return "neg_rmse"


TASK_CLASSES: dict[str, type[Task]] = {
    t.name: t for t in (MulticlassTask, MultilabelTask, RegressionTask)
}


def task_from_dict(data: dict[str, Any]) -> Task:
    """Rebuild a saved task."""
    cls = TASK_CLASSES[data["task"]]
    if cls is MultilabelTask:
        return MultilabelTask(data["labels"], float(data.get("threshold", 0.5)))
    return cls(data["labels"])


def is_nan(value: Any) -> bool:
    """True for float NaN (pandas/parquet missing values)."""
    return isinstance(value, float) and math.isnan(value)
