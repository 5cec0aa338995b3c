"""Robustness summaries of performance curves, as MultiBench defines them.

A curve is a model's performance at increasing imperfection levels, level 0 first
(for missing modalities: the mean over subsets with 0, 1, ... modalities removed;
for corruptions: severity 0, 1, ...). Levels are spread evenly over [0, 1].

* relative robustness: the area under the curve (trapezoid rule);
* effective robustness: how much better the curve holds up than a reference
  curve shifted to start at the same clean performance,
  sum_l (f_l - (r_l + f_0 - r_0)). MultiBench's reference is late fusion; ours is
  the late fusion of the model's own unimodal heads, computed in the same pass.

(Liang et al., "MultiBench: Multiscale Benchmarks for Multimodal Representation
Learning", NeurIPS 2021 Datasets and Benchmarks.)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence


def relative_robustness(curve: Sequence[float]) -> float:
    """Trapezoid area under ``curve`` with levels evenly spaced over [0, 1]."""
    if len(curve) < 2:
        return float(curve[0]) if curve else 0.0
    step = 1.0 / (len(curve) - 1)
    return float(sum((a + b) * step / 2 for a, b in itertools.pairwise(curve)))


def effective_robustness(curve: Sequence[float], reference: Sequence[float]) -> float:
    """Sum over levels of ``curve`` minus ``reference`` shifted to ``curve[0]``."""
    if len(curve) != len(reference):
        raise ValueError("curve and reference need the same levels")
    if not curve:
        return 0.0
    shift = curve[0] - reference[0]
    return float(sum(f - (r + shift) for f, r in zip(curve, reference, strict=True)))
