"""Evaluation: task metrics and evaluation runs over manifests."""

from polyfuse.evaluation.metrics import (
    confusion_matrix,
    headline,
    multiclass_metrics,
    multilabel_metrics,
    regression_metrics,
    task_metrics,
)
from polyfuse.evaluation.runner import EvaluationResult, evaluate

__all__ = [
    "EvaluationResult",
    "confusion_matrix",
    "evaluate",
    "headline",
    "multiclass_metrics",
    "multilabel_metrics",
    "regression_metrics",
    "task_metrics",
]
