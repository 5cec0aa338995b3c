"""How likely a served answer is wrong: the features, and the error model fitted on the
reference profile.

Each feature reads what the service has for an answer under ``--review`` (the fused
output, the leave-one-out outputs, each present modality's own head, which modalities
were used, which were refused by their quality gate), so the live service and the
benchmark (`benchmarks/review_routing.py`) compute them with this one code:

- ``confidence``: logit of the calibrated probability that the whole answer is right;
- ``margin``: calibrated top-1 minus top-2 probability (multi-label: twice the smallest
  distance of a label's calibrated probability from the decision threshold);
- ``entropy``: entropy of the calibrated output over its maximum (multi-label: the mean
  over labels of each decision's entropy);
- ``contradiction``: the strongest calibrated confidence of a leave-one-out output that
  answers otherwise (0 with fewer than two modalities present: without the only one,
  the model answers from its prior);
- ``dissent``: the strongest calibrated confidence of a present modality's own head that
  answers otherwise;
- ``missing``: the share of the model's modalities the answer went without (not sent, or
  refused by the modality's quality gate: a degraded input).

`ErrorModel` is an L2-regularised logistic regression of "the answer is wrong" on the
standardised features, fitted on the labelled reference profile (the artifact's
validation data, `polyfuse.monitor.profile`) and nothing else. The reference holds
complete samples only, yet served traffic lacks modalities: every reference sample with
two modalities present is also used as the request that only carried one of them (its
fused output with the other left out is exactly what the model answers then), so the
model sees what a missing modality does to the error rate. It is fitted at service start
(milliseconds) rather than stored, like the profile's calibration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from polyfuse.monitor.estimate import OutputCalibration, fit_logistic, sigmoid
from polyfuse.monitor.outputs import Outputs

if TYPE_CHECKING:
    from polyfuse.monitor.observe import Observations
    from polyfuse.serve.review.routing import Confidences

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

#: Feature names, in column order.
FEATURES = ("confidence", "margin", "entropy", "contradiction", "dissent", "missing")
#: Fewer reference errors than this and neither the error model (`ErrorModel.fit`) nor a
#: temperature (`polyfuse.serve.review.routing.Confidences.trusted`) is fitted.
MIN_ERRORS = 5


@dataclass(frozen=True)
class Answers:
    """What the features read of ``n`` answers of a model with modalities ``M``.

    Attributes:
        probs: ``(n, K)`` fused probabilities.
        without: modality -> ``(n, K)`` fused probabilities with it left out.
        unimodal: modality -> ``(n, K)`` its own head's probabilities (valid where present).
        present: modality -> ``(n,)`` the fusion used it.
        modalities: every modality of the model (the denominator of ``missing``).
    """

    probs: FloatArray
    without: Mapping[str, FloatArray]
    unimodal: Mapping[str, FloatArray]
    present: Mapping[str, BoolArray]
    modalities: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.probs)

    @classmethod
    def of(cls, obs: Observations) -> Answers:
        """The answers of monitoring `Observations` (a stream, or the reference)."""
        views = obs.modalities
        return cls(
            obs.probs,
            {m: v.without for m, v in views.items()},
            {m: v.probs for m, v in views.items()},
            {m: v.present for m, v in views.items()},
            tuple(views),
        )


def features(
    answers: Answers, confidences: Confidences, heads: Mapping[str, OutputCalibration]
) -> FloatArray:
    """``(n, F)`` features in `FEATURES` order (see the module docstring)."""
    out = confidences.outputs
    probs = answers.probs
    scaled = _calibrated(probs, confidences)  # (n, K)
    conf = np.clip(confidences.fused_confidence(probs), 1e-6, 1 - 1e-6)
    shown = _count(answers.present, len(answers))
    contradiction = np.zeros(len(answers))
    for m, rest in answers.without.items():
        against = answers.present[m] & (shown >= 2) & ~out.agree(probs, rest)
        strength = confidences.without_confidence(m, rest)
        contradiction = np.maximum(contradiction, np.where(against, strength, 0.0))
    dissent = np.zeros(len(answers))
    for m, head in answers.unimodal.items():
        against = answers.present[m] & ~out.agree(probs, head)
        cal = heads.get(m)
        strength = out.confidence(head) if cal is None else cal.confidence(head)
        dissent = np.maximum(dissent, np.where(against, strength, 0.0))
    missing = 1.0 - shown / max(1, len(answers.modalities))
    cols = [np.log(conf / (1 - conf)), _margin(scaled, out), _entropy(scaled, out)]
    return np.stack([*cols, contradiction, dissent, missing], axis=1)


def _count(present: Mapping[str, BoolArray], n: int) -> FloatArray:
    total = np.zeros(n)
    for p in present.values():
        total += p
    return total


def _calibrated(probs: FloatArray, confidences: Confidences) -> FloatArray:
    cal = confidences.fused
    return probs if cal is None else confidences.outputs.scale(probs, cal.temperature)


def _margin(scaled: FloatArray, out: Outputs) -> FloatArray:
    if out.multilabel:
        margin: FloatArray = 2.0 * np.abs(scaled - out.threshold).min(axis=1)
        return margin
    top = np.sort(scaled, axis=1)
    gap: FloatArray = top[:, -1] - (top[:, -2] if scaled.shape[1] > 1 else 0.0)
    return gap


def _entropy(scaled: FloatArray, out: Outputs) -> FloatArray:
    p = np.clip(scaled, 1e-12, 1.0)
    if out.multilabel:
        q = np.clip(1.0 - scaled, 1e-12, 1.0)
        each = -(p * np.log2(p) + q * np.log2(q))  # bits per yes/no decision
        mean: FloatArray = each.mean(axis=1)
        return mean
    k = max(2, scaled.shape[1])
    h: FloatArray = -(p * np.log(p)).sum(axis=1) / np.log(k)
    return h


@dataclass(frozen=True)
class ErrorModel:
    """P(the answer is wrong) from `features`, fitted on a labelled reference.

    Attributes:
        coef: logistic coefficients, intercept first, over standardised features.
        mean: per-feature mean on the fitting rows.
        scale: per-feature standard deviation on the fitting rows (1 where constant).
        heads: modality -> calibration of its own head's output.
        modalities: every modality of the model.
        rows: fitting rows (reference samples plus their one-modality requests).
        errors: wrong answers among them.
    """

    coef: FloatArray
    mean: FloatArray
    scale: FloatArray
    heads: Mapping[str, OutputCalibration]
    modalities: tuple[str, ...]
    rows: int
    errors: int

    def probability(self, answers: Answers, confidences: Confidences) -> FloatArray:
        """``(n,)`` predicted probability that each answer is wrong."""
        x = (features(answers, confidences, self.heads) - self.mean) / self.scale
        p: FloatArray = sigmoid(np.c_[np.ones(len(x)), x] @ self.coef)
        return p

    @classmethod
    def fit(cls, reference: Observations, confidences: Confidences) -> ErrorModel | None:
        """Fit on the labelled rows of ``reference`` and their one-modality requests
        (None: fewer than `MIN_ERRORS` errors, or no right answer, to fit on)."""
        if reference.labels is None:
            return None
        out = reference.outputs
        keep = np.flatnonzero(out.labelled(reference.labels))
        ref = reference.take(keep)
        labels = np.asarray(ref.labels)
        heads = {
            m: OutputCalibration.fit(v.probs[v.present], labels[v.present], out)
            for m, v in ref.modalities.items()
            if v.present.sum() >= 2
        }
        parts = [(Answers.of(ref), np.arange(len(ref))), *one_modality_requests(ref)]
        x = np.concatenate([features(a, confidences, heads) for a, _ in parts])
        wrong = np.concatenate([~out.correct(a.probs, labels[i]) for a, i in parts])
        wrong = wrong.astype(np.float64)
        if wrong.sum() < MIN_ERRORS or wrong.sum() == len(wrong):
            return None
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale = np.where(scale > 1e-9, scale, 1.0)
        z = (x - mean) / scale
        coef = fit_logistic(np.c_[np.ones(len(z)), z], wrong)
        return cls(coef, mean, scale, heads, tuple(ref.modalities), len(wrong), int(wrong.sum()))


def one_modality_requests(reference: Observations) -> list[tuple[Answers, NDArray[np.intp]]]:
    """Per modality ``m``: the reference samples carrying ``m`` and exactly one other
    modality, answered as the request that carried only the other one (fused output: the
    output with ``m`` left out), with their row indices. Samples with more modalities are
    not used: what the model would answer with two of them left out is not observed."""
    answers = Answers.of(reference)
    shown = _count(answers.present, len(answers))
    out = []
    for m in answers.modalities:
        rows = np.flatnonzero(answers.present[m] & (shown == 2))
        if not len(rows):
            continue
        present = {o: p[rows] & (o != m) for o, p in answers.present.items()}
        out.append(
            (
                Answers(
                    answers.without[m][rows],
                    {o: w[rows] for o, w in answers.without.items()},
                    {o: h[rows] for o, h in answers.unimodal.items()},
                    present,
                    answers.modalities,
                ),
                rows,
            )
        )
    return out
