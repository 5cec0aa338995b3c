"""Label-free accuracy: how accurate is the model on data nobody has labelled yet?

Three estimators, all fitted on the labelled reference profile:

- **CBPE** (confidence-based performance estimation): the mean of the calibrated top-class
  probability. Calibration is temperature scaling fitted on the reference.
- **ATC** (average thresholded confidence, Garg et al., ICLR 2022): the confidence
  threshold above which the reference's share of samples equals its accuracy; the estimate
  is the current share above it.
- **Agreement**: a logistic model of P(correct) from the calibrated confidence and, per
  modality, whether the modality is present, whether its own head agrees with the fusion,
  and that head's confidence. When one modality turns to noise its head starts to disagree
  with the fusion; no single-modality tool has this signal.

- **Cross-modal** (only for a drifted modality ``m`` whose own head has stopped agreeing
  with the model's answer without ``m``, i.e. ``m`` turned inconsistent with the rest): the
  leave-``m``-out output does not read the drifted input, so its calibration still holds.
  The fused answer is right where it agrees with that output and that output is right
  (its calibrated confidence), and where they disagree only if that output is wrong and
  the fusion hits the truth (the reference's rate of that). Confidence-based estimators
  cannot see this case: a noise input that steers the fusion confidently looks like
  comfort to them.

The reported estimate is the lowest of them, so a shift that fools one estimator into
comfort is still caught by the others (the issue asks for no false comfort).
Estimates with a modality left out use the leave-one-out fused outputs, calibrated the
same way, so the monitor can say what accuracy the model would have without it.

For a multi-label model "accuracy" is subset accuracy and "confidence" the probability of
the whole label set (`polyfuse.monitor.outputs.Outputs`); temperature scaling uses one
temperature for every label's sigmoid.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from polyfuse.monitor.observe import ModalityView, Observations
from polyfuse.monitor.outputs import SINGLE_LABEL, Outputs

FloatArray = NDArray[np.float64]

#: Estimators combined by `AccuracyEstimate.value` (the minimum).
ESTIMATORS = ("cbpe", "atc", "agreement")


#: ATC's threshold is the reference confidence quantile at its error rate; with fewer
#: reference errors than this it sits in the extreme tail, decided by a handful of
#: samples, and ATC is left out of the estimate.
MIN_ATC_ERRORS = 30


def atc_threshold(confidence: FloatArray, correct: NDArray[np.bool_]) -> float | None:
    """The threshold with ``mean(confidence > t) == mean(correct)`` on the reference, or
    None when the reference has fewer than `MIN_ATC_ERRORS` errors to place it."""
    if len(confidence) == 0 or int((~correct).sum()) < MIN_ATC_ERRORS:
        return None
    return float(np.quantile(confidence, 1.0 - float(correct.mean())))


@dataclass(frozen=True)
class OutputCalibration:
    """Temperature and ATC threshold of one output (fused, or fused without a modality);
    ``threshold`` is None when the reference has too few errors for ATC.

    Multi-label outputs also get ``set_map``: a logistic map from the product of the
    label decisions' probabilities (and whether the answer is the empty set) to the
    probability that the whole set is right, fitted on the reference. The product alone
    assumes labels independent, and they are not: an image model that sees none of the
    concepts is wrong more often than the product says (a photo usually shows one of
    them), one that names some is right more often.
    """

    temperature: float
    threshold: float | None
    outputs: Outputs = SINGLE_LABEL
    set_map: FloatArray | None = None

    def confidence(self, probs: FloatArray) -> FloatArray:
        """Calibrated probability of the whole answer per sample (the top class's, or the
        label set's)."""
        return self.probability_of(probs, self.outputs.predicted(probs))

    def probability_of(self, probs: FloatArray, answer: NDArray[Any]) -> FloatArray:
        """Calibrated probability, under the output ``probs``, that ``answer`` (class
        indices, or label sets) is right."""
        scaled = self.outputs.scale(probs, self.temperature)
        if not self.outputs.multilabel:
            out: FloatArray = np.asarray(scaled[np.arange(len(scaled)), answer])
            return out
        product: FloatArray = np.prod(np.where(answer, scaled, 1.0 - scaled), axis=1)
        if self.set_map is None:
            return product
        mapped: FloatArray = sigmoid(_set_features(product, answer) @ self.set_map)
        return mapped

    @classmethod
    def fit(
        cls, probs: FloatArray, labels: NDArray[np.int64], outputs: Outputs = SINGLE_LABEL
    ) -> OutputCalibration:
        """Fit on labelled reference outputs."""
        t = outputs.fit_temperature(probs, labels)
        correct = outputs.correct(probs, labels)
        fitted = cls(t, None, outputs)
        if outputs.multilabel and 0 < correct.sum() < len(correct):
            said = outputs.predicted(probs)
            product = fitted.probability_of(probs, said)  # no set map yet: the product
            x = _set_features(product, said)
            fitted = replace(fitted, set_map=fit_logistic(x, correct.astype(np.float64)))
        return replace(fitted, threshold=atc_threshold(fitted.confidence(probs), correct))


def _set_features(product: FloatArray, answer: NDArray[Any]) -> FloatArray:
    """1, logit of a label set's product probability, and whether the set is empty."""
    p = np.clip(product, 1e-6, 1.0 - 1e-6)
    empty = ~np.asarray(answer, dtype=bool).any(axis=1)
    return np.stack([np.ones(len(p)), np.log(p / (1.0 - p)), empty.astype(np.float64)], axis=1)


@dataclass(frozen=True)
class AccuracyEstimate:
    """Label-free accuracy estimates of one set of samples.

    Attributes:
        cbpe: mean calibrated confidence (of the whole answer).
        atc: share above the reference ATC threshold (None when the reference had too
            few errors to place it, see `MIN_ATC_ERRORS`).
        agreement: mean P(correct) of the agreement model (None for one-modality models).
        n: samples.
        cross_modal: modality -> the cross-modal estimate, for the suspect modalities.
    """

    cbpe: float
    atc: float | None
    agreement: float | None
    n: int
    cross_modal: dict[str, float] | None = None

    @property
    def value(self) -> float:
        """The reported estimate: the lowest of the estimators (no false comfort)."""
        vals = [v for v in (self.cbpe, self.atc, self.agreement) if v is not None]
        vals += list((self.cross_modal or {}).values())
        return float(min(vals))

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "value": self.value,
            "cbpe": self.cbpe,
            "atc": self.atc,
            "agreement": self.agreement,
            "n": self.n,
            **({"cross_modal": self.cross_modal} if self.cross_modal else {}),
        }


@dataclass(frozen=True)
class Calibration:
    """Everything the estimators fit on the labelled reference.

    Attributes:
        fused: calibration of the fused output.
        without: modality -> calibration of the fused output with that modality left out.
        agreement: coefficients of the agreement model (intercept first), or None.
        modalities: modality order of the agreement features.
        consistency: modality -> reference share of samples (carrying it) whose own head
            agrees with the leave-it-out output.
        rescue: modality -> reference rate at which the fusion is right where it disagrees
            with a wrong leave-it-out output (single-label models only).
    """

    fused: OutputCalibration
    without: dict[str, OutputCalibration]
    agreement: FloatArray | None
    modalities: tuple[str, ...]
    consistency: dict[str, float] = field(default_factory=dict)
    rescue: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(cls, reference: Observations) -> Calibration:
        """Fit on the labelled rows of ``reference``."""
        if reference.labels is None:
            raise ValueError("calibration needs labels")
        out = reference.outputs
        keep = out.labelled(reference.labels)
        ref = reference.take(np.flatnonzero(keep))
        labels = np.asarray(ref.labels)
        fused = OutputCalibration.fit(ref.probs, labels, out)
        without = {
            m: OutputCalibration.fit(v.without, labels, out) for m, v in ref.modalities.items()
        }
        mods = tuple(ref.modalities)
        coef = None
        correct = out.correct(ref.probs, labels)
        if len(mods) > 1:
            x = _agreement_features(ref, fused, mods)
            if 0 < correct.sum() < len(correct):
                coef = fit_logistic(x, correct.astype(np.float64))
        consistency, rescue = {}, {}
        if len(mods) > 1:
            for m, v in ref.modalities.items():
                consistency[m] = _consistency(v, out)[0]
                if out.multilabel:
                    continue  # a yes/no label needs no rescue rate (see `cross_modal`)
                hard = ~out.agree(ref.probs, v.without) & ~out.correct(v.without, labels)
                right = correct[hard]
                rescue[m] = float(right.mean()) if hard.any() else 0.5
        return cls(fused, without, coef, mods, consistency, rescue)

    def suspects(
        self, current: Observations, drifted: Collection[str], alpha: float = 0.01
    ) -> list[str]:
        """Drifted modalities whose own head agrees with the rest significantly less often
        than on the reference (one-sided binomial test at ``alpha``)."""
        from scipy.stats import binomtest

        out = []
        for m in drifted:
            if m not in self.consistency or m not in current.modalities:
                continue
            _, hits, n = _consistency(current.modalities[m], current.outputs)
            if n and binomtest(hits, n, self.consistency[m], alternative="less").pvalue < alpha:
                out.append(m)
        return out

    def cross_modal(self, current: Observations, modality: str) -> float:
        """The cross-modal estimate of the fused accuracy when ``modality`` is not trusted."""
        cal = self.without[modality]
        loo = current.modalities[modality].without
        if not len(loo):
            return float("nan")
        out = current.outputs
        if out.multilabel:
            # each label is a yes/no decision: where the fusion and the leave-out output
            # differ, the fusion is right exactly when that output is wrong, so the fused
            # set is right with the probability the calibrated output gives that set
            return float(cal.probability_of(loo, current.predicted).mean())
        conf = cal.confidence(loo)
        agree = out.agree(current.probs, loo)
        q = self.rescue.get(modality, 0.5)
        return float(np.mean(np.where(agree, conf, (1.0 - conf) * q)))

    def estimate(self, current: Observations, drifted: Collection[str] = ()) -> AccuracyEstimate:
        """Estimates of the fused model's accuracy on ``current``.

        Args:
            drifted: modalities a drift assessment flagged; those that also turned
                inconsistent with the others (`suspects`) get the cross-modal estimate.
        """
        conf = self.fused.confidence(current.probs)
        agree = None
        if self.agreement is not None and len(current):
            x = _agreement_features(current, self.fused, self.modalities)
            agree = float(sigmoid(x @ self.agreement).mean())
        suspects = self.suspects(current, drifted) if drifted and len(current) else []
        return AccuracyEstimate(
            cbpe=float(conf.mean()) if len(conf) else float("nan"),
            atc=_share_above(conf, self.fused.threshold),
            agreement=agree,
            n=len(current),
            cross_modal={m: self.cross_modal(current, m) for m in suspects} or None,
        )

    def estimate_without(self, current: Observations, modality: str) -> AccuracyEstimate:
        """Estimates of the accuracy the model would have on ``current`` without ``modality``."""
        cal = self.without[modality]
        conf = cal.confidence(current.modalities[modality].without)
        return AccuracyEstimate(
            cbpe=float(conf.mean()) if len(conf) else float("nan"),
            atc=_share_above(conf, cal.threshold),
            agreement=None,
            n=len(current),
        )


def _share_above(confidence: FloatArray, threshold: float | None) -> float | None:
    if threshold is None or len(confidence) == 0:
        return None
    return float((confidence > threshold).mean())


def _consistency(view: ModalityView, outputs: Outputs) -> tuple[float, int, int]:
    """Share (and count, of how many) of present samples whose own head agrees with the
    leave-this-modality-out output."""
    p = view.present
    n = int(p.sum())
    hits = int(outputs.agree(view.probs[p], view.without[p]).sum())
    return (hits / n if n else 1.0), hits, n


def _agreement_features(
    obs: Observations, fused: OutputCalibration, modalities: tuple[str, ...]
) -> FloatArray:
    """Per sample: 1, logit of the calibrated confidence, then per modality present,
    head agrees with the fusion, head confidence (both 0 when absent)."""
    conf = np.clip(fused.confidence(obs.probs), 1e-6, 1 - 1e-6)
    cols = [np.ones(len(obs)), np.log(conf / (1 - conf))]
    out = obs.outputs
    for m in modalities:
        view = obs.modalities[m]
        present = view.present.astype(np.float64)
        cols.append(present)
        cols.append(present * out.agree(view.probs, obs.probs))
        cols.append(present * out.confidence(view.probs))
    return np.stack(cols, axis=1)


def sigmoid(z: FloatArray) -> FloatArray:
    """Logistic function, clipped against overflow."""
    out: FloatArray = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
    return out


def fit_logistic(x: FloatArray, y: FloatArray, l2: float = 1.0) -> FloatArray:
    """L2-regularised logistic regression by Newton's method (intercept not penalised)."""
    w = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(50):
        p = sigmoid(x @ w)
        grad = x.T @ (p - y) + penalty * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w
