"""`Outputs`: one reading of single-label and multi-label probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from polyfuse.monitor.outputs import SINGLE_LABEL, Outputs

MULTI = Outputs(multilabel=True, threshold=0.5)


def test_single_label_reads_the_top_class() -> None:
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    assert SINGLE_LABEL.predicted(p).tolist() == [0, 2]
    assert SINGLE_LABEL.correct(p, np.array([0, 1])).tolist() == [True, False]
    assert SINGLE_LABEL.confidence(p).tolist() == [0.7, 0.6]
    assert SINGLE_LABEL.agree(p, p[::-1]).tolist() == [False, False]
    assert SINGLE_LABEL.labelled(np.array([1, -1])).tolist() == [True, False]
    assert SINGLE_LABEL.uninformative(2, 4).tolist() == [[0.25] * 4] * 2


def test_multilabel_answer_is_the_set_and_right_only_when_all_of_it_is() -> None:
    p = np.array([[0.9, 0.2, 0.6], [0.4, 0.8, 0.1]])
    assert MULTI.predicted(p).tolist() == [[True, False, True], [False, True, False]]
    labels = np.array([[1, 0, 1], [1, 1, 0]])
    assert MULTI.correct(p, labels).tolist() == [True, False]
    # P(every decision right) = product of each decision's probability
    assert MULTI.confidence(p) == pytest.approx([0.9 * 0.8 * 0.6, 0.6 * 0.8 * 0.9])
    assert MULTI.agree(p, np.array([[0.6, 0.4, 0.9], [0.6, 0.8, 0.1]])).tolist() == [True, False]
    assert MULTI.labelled(np.array([[1, 0, 0], [-1, -1, -1]])).tolist() == [True, False]
    assert MULTI.uninformative(1, 3).tolist() == [[0.5, 0.5, 0.5]]


def test_multilabel_temperature_is_recovered() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 2.0, (4000, 3))
    labels = (rng.random(z.shape) < 1.0 / (1.0 + np.exp(-z))).astype(np.int64)
    overconfident = 1.0 / (1.0 + np.exp(-3.0 * z))  # logits three times too large
    t = MULTI.fit_temperature(overconfident, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    scaled = MULTI.scale(overconfident, t)
    assert np.abs(scaled - 1.0 / (1.0 + np.exp(-z))).max() < 0.05


def test_single_label_temperature_is_recovered() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(0.0, 1.5, (4000, 4))
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(4, p=row) for row in p])
    sharp = np.exp(2.0 * z) / np.exp(2.0 * z).sum(axis=1, keepdims=True)
    assert SINGLE_LABEL.fit_temperature(sharp, labels) == pytest.approx(2.0, rel=0.1)
