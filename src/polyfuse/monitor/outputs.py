"""How a classifier's probabilities read: one label (softmax) or several (sigmoids).

Every detector and estimator of the monitor asks the same few questions of a model's
outputs: what was answered, do two outputs give the same answer, was the answer right,
how confident is the model that the whole answer is right, and how does temperature
scaling change the probabilities. `Outputs` answers them for both kinds of classifier, so
the rest of the monitor never branches on the task.

For a multi-label model the answer is the set of labels at or above the threshold, it is
right when the whole set is right (subset accuracy, what `polyfuse evaluate` reports as
``accuracy``), and the confidence in it is the product over labels of the probability
that each label's decision is right. That product treats labels as independent given the
input; labels whose errors go together make it too low, never too high (no false
comfort).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


def _log(p: FloatArray) -> FloatArray:
    out: FloatArray = np.log(np.clip(p, 1e-12, 1.0))
    return out


@dataclass(frozen=True)
class Outputs:
    """The reading of ``(n, K)`` probabilities.

    Attributes:
        multilabel: sigmoid outputs, one independent decision per label (else softmax).
        threshold: a label is answered when its probability is at least this (multi-label).
    """

    multilabel: bool = False
    threshold: float = 0.5

    def predicted(self, probs: FloatArray) -> NDArray[np.int64] | BoolArray:
        """The answer: ``(n,)`` class index, or ``(n, K)`` label set as booleans."""
        if self.multilabel:
            on: BoolArray = probs >= self.threshold
            return on
        out: NDArray[np.int64] = probs.argmax(axis=1).astype(np.int64)
        return out

    def agree(self, a: FloatArray, b: FloatArray) -> BoolArray:
        """Per sample: ``a`` and ``b`` give the same answer."""
        if self.multilabel:
            same: BoolArray = ((a >= self.threshold) == (b >= self.threshold)).all(axis=1)
            return same
        out: BoolArray = a.argmax(axis=1) == b.argmax(axis=1)
        return out

    def correct(self, probs: FloatArray, labels: NDArray[np.int64]) -> BoolArray:
        """Per sample: the answer equals ``labels`` (class index, or ``(n, K)`` 0/1)."""
        if self.multilabel:
            right: BoolArray = ((probs >= self.threshold) == (labels > 0)).all(axis=1)
            return right
        out: BoolArray = probs.argmax(axis=1) == labels
        return out

    def labelled(self, labels: NDArray[np.int64]) -> BoolArray:
        """Per sample: the label is known (``-1`` marks unknown)."""
        if labels.ndim == 2:
            known: BoolArray = np.asarray((labels >= 0).all(axis=1))
            return known
        out: BoolArray = np.asarray(labels >= 0)
        return out

    def confidence(self, probs: FloatArray) -> FloatArray:
        """Per sample: the probability the model gives its whole answer."""
        if self.multilabel:
            each = np.where(probs >= self.threshold, probs, 1.0 - probs)
            prod: FloatArray = np.prod(each, axis=1)
            return prod
        out: FloatArray = probs.max(axis=1)
        return out

    def uninformative(self, n: int, k: int) -> FloatArray:
        """Outputs that say nothing: uniform classes, or 0.5 per label."""
        return np.full((n, k), 0.5 if self.multilabel else 1.0 / max(k, 1))

    def scale(self, probs: FloatArray, temperature: float) -> FloatArray:
        """Temperature scaling applied to probabilities (logits divided by ``temperature``)."""
        if self.multilabel:
            p = np.clip(probs, 1e-12, 1.0 - 1e-12)
            z = np.log(p / (1.0 - p)) / temperature
            sig: FloatArray = 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))
            return sig
        z = _log(probs) / temperature
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        out: FloatArray = e / e.sum(axis=1, keepdims=True)
        return out

    def fit_temperature(self, probs: FloatArray, labels: NDArray[np.int64]) -> float:
        """The temperature minimising the negative log-likelihood of ``labels`` (one for
        every label of a multi-label model)."""
        from scipy.optimize import minimize_scalar

        if len(labels) == 0:
            return 1.0
        if self.multilabel:
            p = np.clip(probs, 1e-12, 1.0 - 1e-12)
            logit = np.log(p / (1.0 - p))
            y = (labels > 0).astype(np.float64)

            def nll(log_t: float) -> float:
                z = logit / np.exp(log_t)
                # -log sigmoid(z) for positives, -log sigmoid(-z) for negatives
                return float(np.mean(np.logaddexp(0.0, -z) * y + np.logaddexp(0.0, z) * (1 - y)))

        else:
            logp = _log(probs)

            def nll(log_t: float) -> float:
                z = logp / np.exp(log_t)
                z = z - z.max(axis=1, keepdims=True)
                lse = np.log(np.exp(z).sum(axis=1))
                return float(np.mean(lse - z[np.arange(len(labels)), labels]))

        res = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
        return float(np.exp(res.x))


#: The reading of single-label classifiers (the default).
SINGLE_LABEL = Outputs()
