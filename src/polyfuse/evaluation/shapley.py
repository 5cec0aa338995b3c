"""Exact Shapley values over modalities, and the value functions they explain.

With M modalities every coalition S is one fusion pass over a `FeatureBank`
(absent modalities masked exactly as the model handles missing input; the empty
coalition is the model's prior). The Shapley value of modality m for one sample is

    phi_m = sum_{S not containing m} |S|! (M - |S| - 1)! / M! * (v(S + m) - v(S)),

which satisfies efficiency, sum_m phi_m = v(all) - v(none), up to float64 rounding.
A modality a sample lacks gets phi = 0 (it changes no coalition's value).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from polyfuse.heads.tasks import MulticlassTask, MultilabelTask, Task

Coalition = frozenset[str]


def coalitions(players: Sequence[str]) -> list[Coalition]:
    """Every subset of ``players`` (2^M, the empty one first)."""
    return [
        frozenset(c) for r in range(len(players) + 1) for c in itertools.combinations(players, r)
    ]


def shapley_values(values: Mapping[Coalition, Tensor], players: Sequence[str]) -> Tensor:
    """Exact per-sample Shapley values.

    Args:
        values: coalition -> ``(N,)`` value of every sample; must cover all 2^M coalitions.
        players: modality order of the output columns.

    Returns:
        ``(N, M)`` float64.
    """
    m = len(players)
    missing = [set(c) for c in coalitions(players) if c not in values]
    if missing:
        raise ValueError(f"value function misses coalitions {missing[:3]}")
    n = int(next(iter(values.values())).shape[0])
    phi = torch.zeros(n, m, dtype=torch.float64)
    for j, p in enumerate(players):
        others = [q for q in players if q != p]
        for s in coalitions(others):
            weight = math.factorial(len(s)) * math.factorial(m - len(s) - 1) / math.factorial(m)
            phi[:, j] += weight * (values[s | {p}].double() - values[s].double())
    return phi


def value_functions(task: Task, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Per-sample values of a prediction: what a Shapley value apportions.

    * multi-class: ``log_prob`` (log-probability of the true class) and ``accuracy``;
    * multi-label: ``log_prob`` (mean Bernoulli log-likelihood) and ``accuracy``
      (all labels right);
    * regression: ``neg_squared_error``.
    """
    if isinstance(task, MulticlassTask):
        logp = torch.log_softmax(logits.double(), 1)
        t = target.long()
        return {
            "log_prob": logp.gather(1, t[:, None]).squeeze(1),
            "accuracy": (logits.argmax(1) == t).double(),
        }
    if isinstance(task, MultilabelTask):
        truth = (target >= 0.5).double()
        z = logits.double()
        ll = truth * torch.nn.functional.logsigmoid(z) + (
            1 - truth
        ) * torch.nn.functional.logsigmoid(-z)
        return {
            "log_prob": ll.mean(1),
            "accuracy": ((torch.sigmoid(z) >= task.threshold) == (truth > 0)).all(1).double(),
        }
    n = logits.shape[0]
    err = (logits.double().reshape(n, -1) - target.double().reshape(n, -1)).pow(2)
    return {"neg_squared_error": -err.mean(1)}


def shares(phi: Tensor, players: Sequence[str]) -> dict[str, float]:
    """Each modality's share of the Shapley mass: sum |phi_m| / sum |phi| over samples."""
    mass = phi.abs().sum(0)
    total = float(mass.sum())
    return {p: float(mass[j]) / total if total > 0 else 0.0 for j, p in enumerate(players)}


def summarise(
    phi: Tensor, players: Sequence[str], groups: Tensor | None = None
) -> dict[str, object]:
    """Mean Shapley value and mass share per modality, overall or per group id."""
    if groups is None:
        return {
            "mean": {
                p: float(phi[:, j].mean()) if len(phi) else 0.0 for j, p in enumerate(players)
            },
            "share": shares(phi, players),
            "n": int(phi.shape[0]),
        }
    out: dict[str, Any] = {}
    for g in torch.unique(groups).tolist():
        sel = groups == g
        out[str(g)] = summarise(phi[sel], players)
    return out
