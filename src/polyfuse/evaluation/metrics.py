"""Task metrics computed from probabilities and targets (no scikit-learn needed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from polyfuse.heads.tasks import MulticlassTask, MultilabelTask, Task


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


def roc_auc(scores: Tensor, positive: Tensor) -> float | None:
    """Binary ROC-AUC (Mann-Whitney U with average ranks for ties).

    Returns None when ``positive`` holds only one class (AUC undefined).
    """
    pos = positive.bool().flatten()
    n_pos = int(pos.sum())
    n_neg = int(pos.numel()) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    s = scores.double().flatten()
    order = torch.argsort(s)
    sorted_s = s[order]
    ranks = torch.empty_like(s)
    # average rank (1-based) of each run of tied scores
    _, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    avg = ends - (counts.double() - 1) / 2
    ranks[order] = avg[inverse]
    u = float(ranks[pos].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def roc_auc_ovr(probs: Tensor, truth: Tensor, labels: Sequence[str]) -> dict[str, Any]:
    """One-vs-rest ROC-AUC per class and their macro mean over defined classes.

    Args:
        probs: ``(N, K)`` scores.
        truth: ``(N, K)`` 0/1 membership (one-hot for multi-class).
    """
    per = {lab: roc_auc(probs[:, i], truth[:, i]) for i, lab in enumerate(labels)}
    defined = [v for v in per.values() if v is not None]
    return {"macro": sum(defined) / len(defined) if defined else None, "per_class": per}


def calibration(confidence: Tensor, correct: Tensor, bins: int = 15) -> dict[str, Any]:
    """Expected and maximum calibration error over equal-width confidence bins.

    ECE = sum_b (n_b / N) * |accuracy_b - confidence_b| (Guo et al., 2017).

    Args:
        confidence: ``(N,)`` predicted probability of the predicted outcome.
        correct: ``(N,)`` whether that outcome happened.
        bins: number of bins over [0, 1].

    Returns:
        ``ece``, ``mce`` and per-bin ``{lo, hi, n, confidence, accuracy}`` (the
        reliability diagram).
    """
    conf = confidence.double().flatten().clamp(0, 1)
    hit = correct.double().flatten()
    n = conf.numel()
    # bin b holds (lo, hi]; the first bin also holds 0
    idx = (conf * bins).ceil().long().clamp(1, bins) - 1
    count = torch.bincount(idx, minlength=bins).double()
    conf_sum = torch.bincount(idx, weights=conf, minlength=bins)
    hit_sum = torch.bincount(idx, weights=hit, minlength=bins)
    mean_conf = conf_sum / count.clamp_min(1)
    acc = hit_sum / count.clamp_min(1)
    gap = (acc - mean_conf).abs()
    filled = count > 0
    return {
        "ece": float((count * gap).sum() / max(n, 1)),
        "mce": float(gap[filled].max()) if bool(filled.any()) else 0.0,
        "bins": [
            {
                "lo": b / bins,
                "hi": (b + 1) / bins,
                "n": int(count[b]),
                "confidence": float(mean_conf[b]),
                "accuracy": float(acc[b]),
            }
            for b in range(bins)
        ],
    }


def resample_weights(n: int, samples: int, seed: int) -> Tensor:
    """``(samples, n)`` multinomial counts: how often each row is drawn in each resample.

    Two models scored with the same weights on the same rows give paired resamples (the
    difference of their metrics per resample is a paired bootstrap of the difference).
    """
    gen = torch.Generator().manual_seed(seed)
    weights = torch.zeros(samples, n, dtype=torch.float64)
    draws = torch.randint(0, n, (samples, n), generator=gen)
    return weights.scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))


def interval(x: Tensor, level: float = 0.95) -> dict[str, float]:
    """Percentile interval of resampled values ``x``: ``{"low", "high"}``."""
    q = torch.tensor([(1 - level) / 2, 1 - (1 - level) / 2], dtype=torch.float64)
    lo, hi = torch.quantile(x.double(), q).tolist()
    return {"low": lo, "high": hi}


def _f1(tp: Tensor, fp: Tensor, fn: Tensor) -> tuple[Tensor, Tensor]:
    """Per-resample micro and macro F1 from ``(S, K)`` counts (macro over active classes)."""
    micro = 2 * tp.sum(1) / (2 * tp.sum(1) + fp.sum(1) + fn.sum(1)).clamp_min(1)
    f1 = 2 * tp / (2 * tp + fp + fn).clamp_min(1)
    active = (tp + fp + fn) > 0
    return micro, (f1 * active).sum(1) / active.sum(1).clamp_min(1)


#: Metrics `resampled` computes in closed form from every resample at once.
RESAMPLED_METRICS = ("accuracy", "macro_f1", "micro_f1")


def resampled(task: Task, probs: Tensor, target: Tensor, weights: Tensor) -> dict[str, Tensor]:
    """Classification metrics of every resample at once: name -> ``(S,)`` values.

    ``weights`` are `resample_weights` counts over the rows; every resample is a few
    matrix products over a one-hot table (confusion cells for multi-class, per-label
    outcomes for multi-label). Regression tasks have none (empty dict).
    """
    n = int(target.shape[0])
    if n == 0 or not len(weights):
        return {}
    if isinstance(task, MulticlassTask):
        k = len(task.labels)
        cell = target.long() * k + probs.argmax(1).long()
        onehot = torch.zeros(n, k * k, dtype=torch.float64)
        onehot[torch.arange(n), cell] = 1
        cms = (weights @ onehot).view(len(weights), k, k)
        tp = cms.diagonal(dim1=1, dim2=2)
        micro, macro = _f1(tp, cms.sum(1) - tp, cms.sum(2) - tp)
        return {"accuracy": tp.sum(1) / n, "macro_f1": macro, "micro_f1": micro}
    if isinstance(task, MultilabelTask):
        pred, truth = probs >= task.threshold, target >= 0.5
        tp, fp, fn = (weights @ x.double() for x in (pred & truth, pred & ~truth, ~pred & truth))
        micro, macro = _f1(tp, fp, fn)
        exact = weights @ (pred == truth).all(1).double() / n
        return {"accuracy": exact, "macro_f1": macro, "micro_f1": micro}
    return {}


def confidence_intervals(
    task: Task,
    probs: Tensor,
    target: Tensor,
    samples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Percentile bootstrap intervals of accuracy, macro- and micro-F1 (classification only).

    Returns:
        ``{"accuracy": {"low", "high"}, "macro_f1": {...}, "micro_f1": {...}}``; empty for
        regression, no rows or ``samples <= 0``.
    """
    n = int(target.shape[0])
    if n == 0 or samples <= 0:
        return {}
    weights = resample_weights(n, samples, seed)
    return {k: interval(v, level) for k, v in resampled(task, probs, target, weights).items()}


def task_metrics(task: Task, probs: Tensor, target: Tensor) -> dict[str, Any]:
    """The metric set of ``task`` for predictions ``probs`` (`Task.probabilities` output)."""
    if isinstance(task, MulticlassTask):
        return multiclass_metrics(probs, target, task.labels)
    if isinstance(task, MultilabelTask):
        return multilabel_metrics(probs, target, task.labels, task.threshold)
    return regression_metrics(probs, target)


def classification_extras(task: Task, probs: Tensor, target: Tensor) -> dict[str, Any]:
    """ROC AUC (one-vs-rest per label) and calibration of the answers' confidence:
    ``{"roc_auc": {...}, "calibration": {...}}``; empty for regression. A multi-label
    answer's confidence is each label's probability of the decision taken on it."""
    if isinstance(task, MulticlassTask):
        conf, pred = probs.max(1)
        onehot = torch.nn.functional.one_hot(target.long(), len(task.labels))
        return {
            "roc_auc": roc_auc_ovr(probs, onehot, task.labels),
            "calibration": calibration(conf, pred == target.long()),
        }
    if isinstance(task, MultilabelTask):
        truth = target >= 0.5
        predicted = probs >= task.threshold
        conf = torch.where(predicted, probs, 1 - probs)
        return {
            "roc_auc": roc_auc_ovr(probs, truth, task.labels),
            "calibration": calibration(conf.flatten(), (predicted == truth).flatten()),
        }
    return {}


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """Scalar metrics only (drops per-class tables and matrices)."""
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}
