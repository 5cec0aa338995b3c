"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from polyfuse.evaluation import (
    confusion_matrix,
    multiclass_metrics,
    multilabel_metrics,
    regression_metrics,
)


def test_multiclass_by_hand() -> None:
    # true: 0 0 1 2 ; predicted: 0 1 1 1
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3]])
    target = torch.tensor([0, 0, 1, 2])
    m = multiclass_metrics(probs, target, ["a", "b", "c"])
    assert m["n"] == 4 and m["accuracy"] == 0.5
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    # F1: a = 2/3 (p 1, r 1/2), b = 1/2 (p 1/3, r 1), c = 0  -> macro 7/18
    assert m["per_class"]["a"]["f1"] == pytest.approx(2 / 3)
    assert m["per_class"]["b"]["precision"] == pytest.approx(1 / 3)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert m["log_loss"] == pytest.approx(
        -(math.log(0.9) + math.log(0.2) + math.log(0.8) + math.log(0.3)) / 4
    )


def test_confusion_matrix_counts() -> None:
    cm = confusion_matrix(torch.tensor([1, 1, 0]), torch.tensor([1, 0, 0]), 2)
    assert cm.tolist() == [[1, 1], [0, 1]]


def test_multilabel_by_hand() -> None:
    probs = torch.tensor([[0.9, 0.2], [0.6, 0.7], [0.1, 0.1]])
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    m = multilabel_metrics(probs, target, ["x", "y"])
    assert m["accuracy"] == pytest.approx(1 / 3)  # exact-match rows: only the first
    assert m["label_accuracy"] == pytest.approx(4 / 6)
    # x: tp 2 fp 0 fn 0 -> f1 1 ; y: tp 0 fp 1 fn 1 -> f1 0 ; micro: tp 2 fp 1 fn 1 -> 2/3
    assert m["macro_f1"] == pytest.approx(0.5) and m["micro_f1"] == pytest.approx(2 / 3)


def test_regression_by_hand() -> None:
    m = regression_metrics(torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0], [3.0]]))
    assert m["mae"] == 0.5 and m["rmse"] == pytest.approx(math.sqrt(0.5))
    assert m["r2"] == pytest.approx(1 - 0.5 / 0.25)
