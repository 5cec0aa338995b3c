"""Task metrics computed from probabilities and targets (no scikit-learn needed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from polyfuse.tasks import MulticlassTask, MultilabelTask, Task


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """``(K, K)`` counts; rows are true classes, columns predictions."""
    idx = target.long() * num_classes + pred.long()
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def _prf(tp: Tensor, fp: Tensor, fn: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    precision = tp / (tp + fp).clamp_min(1)
    recall = tp / (tp + fn).clamp_min(1)
    f1 = 2 * tp / (2 * tp + fp + fn).clamp_min(1)
    return precision, recall, f1


def multiclass_metrics(probs: Tensor, target: Tensor, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro/micro F1, per-class precision/recall/F1, log loss, confusion matrix.

    Macro averages run over classes with support or predictions (absent
    classes neither help nor hurt).
    """
    k = len(labels)
    pred = probs.argmax(1)
    cm = confusion_matrix(pred, target, k).double()
    tp = cm.diag()
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    precision, recall, f1 = _prf(tp, fp, fn)
    active = (cm.sum(0) + cm.sum(1)) > 0
    p_true = probs.gather(1, target.long()[:, None]).squeeze(1).clamp_min(1e-12)
    n = int(target.numel())
    return {
        "n": n,
        "accuracy": float(tp.sum() / max(n, 1)),
        "macro_f1": float(f1[active].mean()) if bool(active.any()) else 0.0,
        "micro_f1": float(tp.sum() / max(n, 1)),
        "log_loss": float(-p_true.log().mean()) if n else 0.0,
        "per_class": {
            labels[i]: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(cm[i].sum()),
            }
            for i in range(k)
        },
        "labels": list(labels),
        "confusion_matrix": cm.long().tolist(),
    }


def multilabel_metrics(
    probs: Tensor, target: Tensor, labels: Sequence[str], threshold: float = 0.5
) -> dict[str, Any]:
    """Subset accuracy (as ``accuracy``), label accuracy, micro/macro F1, per-label P/R/F1."""
    pred = probs >= threshold
    truth = target >= 0.5
    tp = (pred & truth).sum(0).double()
    fp = (pred & ~truth).sum(0).double()
    fn = (~pred & truth).sum(0).double()
    precision, recall, f1 = _prf(tp, fp, fn)
    _, _, micro = _prf(tp.sum(), fp.sum(), fn.sum())
    active = (tp + fp + fn) > 0
    n = int(target.shape[0])
    bce = torch.nn.functional.binary_cross_entropy(
        probs.double().clamp(1e-12, 1 - 1e-12), truth.double()
    )
    return {
        "n": n,
        "accuracy": float((pred == truth).all(1).double().mean()) if n else 0.0,
        "label_accuracy": float((pred == truth).double().mean()) if n else 0.0,
        "micro_f1": float(micro),
        "macro_f1": float(f1[active].mean()) if bool(active.any()) else 0.0,
        "log_loss": float(bce) if n else 0.0,
        "per_class": {
            labels[i]: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(truth[:, i].sum()),
            }
            for i in range(len(labels))
        },
        "labels": list(labels),
    }


def regression_metrics(pred: Tensor, target: Tensor) -> dict[str, Any]:
    """MAE, RMSE, R^2 (and ``neg_rmse`` for early stopping)."""
    err = pred.double() - target.double()
    rmse = float(err.pow(2).mean().sqrt()) if err.numel() else 0.0
    var = float((target.double() - target.double().mean(0)).pow(2).mean()) if err.numel() else 0.0
    return {
        "n": int(target.shape[0]),
        "mae": float(err.abs().mean()) if err.numel() else 0.0,
        "rmse": rmse,
        "neg_rmse": -rmse,
        "r2": 1.0 - float(err.pow(2).mean()) / var if var > 0 else 0.0,
    }


def task_metrics(task: Task, probs: Tensor, target: Tensor) -> dict[str, Any]:
    """The metric set of ``task`` for predictions ``probs`` (`Task.probabilities` output)."""
    if isinstance(task, MulticlassTask):
        return multiclass_metrics(probs, target, task.labels)
    if isinstance(task, MultilabelTask):
        return multilabel_metrics(probs, target, task.labels, task.threshold)
    return regression_metrics(probs, target)


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """Scalar metrics only (drops per-class tables and matrices)."""
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}
