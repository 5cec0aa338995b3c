"""Put the detectors together: which modality drifted, when, and whether it hurts.

`assess` runs the detectors on one set of current samples against the reference and makes
one decision per modality (content), per modality's missing rate, and for the prediction.
The decisions share one false-alarm budget ``alpha`` (Bonferroni over the decisions, and
over the detector families inside each decision). A modality's content decision reads
only that modality's own evidence (its input statistics, its embeddings, its own head's
outputs), so a shift in one modality is not blamed on another.

A class-prior change moves every modality's inputs at once. When the label-shift test
fires and the reference is labelled, the reference is re-weighted by the estimated class
ratios (black-box shift estimation) and a modality keeps its flag only if it still
differs from the re-weighted reference: the change is then reported as a prediction /
label shift rather than as drift of every modality.

`monitor` runs `assess` on the whole current set and on consecutive windows, adds the
label-free accuracy estimate with and without each drifted modality, and returns a
`MonitorReport` whose ``to_dict`` is the ``polyfuse monitor --json`` object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from polyfuse.core.errors import InvalidInputError
from polyfuse.core.progress import bar
from polyfuse.monitor.detectors import (
    PREDICTION,
    DetectorResult,
    Detectors,
    EmbeddingMMD,
    InputStatistics,
    OutputShift,
    sample_weights,
)
from polyfuse.monitor.estimate import AccuracyEstimate
from polyfuse.monitor.observe import Observations
from polyfuse.monitor.profile import ReferenceProfile

#: Families of evidence a modality's content decision combines.
CONTENT = ("input_statistics", "embedding_mmd", "output_shift")
#: Families of the prediction decision.
PREDICTION_FAMILIES = ("output_shift", "label_shift", "agreement_rate")


@dataclass(frozen=True)
class Decision:
    """One drift decision.

    Attributes:
        drift: the change is significant at the decision's share of ``alpha``.
        p_value: combined (Bonferroni) p-value of the families that decided.
        score: largest effect size among them (KS distance, MMD², rate change).
        results: the detector results behind it.
        explained_by_labels: the flag was dropped because re-weighting the reference by
            the estimated class prior explained the change.
    """

    drift: bool
    p_value: float
    score: float
    results: tuple[DetectorResult, ...] = ()
    explained_by_labels: bool = False


@dataclass(frozen=True)
class Assessment:
    """Decisions for one set of current samples."""

    n: int
    modalities: dict[str, Decision]
    missing: dict[str, Decision]
    prediction: Decision
    threshold: float

    @property
    def drift(self) -> bool:
        """Any decision flagged."""
        return (
            self.prediction.drift
            or any(d.drift for d in self.modalities.values())
            or any(d.drift for d in self.missing.values())
        )

    @property
    def drifted(self) -> list[str]:
        """Modalities whose content or missing rate drifted."""
        return [
            m
            for m in self.modalities
            if self.modalities[m].drift or (m in self.missing and self.missing[m].drift)
        ]


def _combine(results: Sequence[DetectorResult], threshold: float) -> Decision:
    if not results:
        return Decision(False, 1.0, 0.0)
    p = min(1.0, len(results) * min(r.p_value for r in results))
    score = max(r.score for r in results)
    return Decision(p < threshold, float(p), float(score), tuple(results))


def assess(
    reference: ReferenceProfile,
    current: Observations,
    detectors: Detectors | None = None,
    *,
    alpha: float = 0.05,
    domain: bool = False,
) -> Assessment:
    """Drift decisions for ``current`` against ``reference`` at false-alarm rate ``alpha``."""
    d = detectors or Detectors()
    mods = list(reference.observations.modalities)
    threshold = alpha / (2 * len(mods) + 1)
    content: list[DetectorResult] = []
    content += d.inputs.calculate(reference, current)
    content += d.embeddings.calculate(reference, current)
    outputs = d.outputs.calculate(reference, current)
    content += [r for r in outputs if r.modality != PREDICTION]
    if domain and d.domain is not None:
        informational = d.domain.calculate(reference, current)
    else:
        informational = []
    decisions = {}
    for m in mods:
        own = [r for r in content if r.modality == m]
        dec = _combine(own, threshold)
        extra = tuple(r for r in informational if r.modality == m)
        decisions[m] = Decision(dec.drift, dec.p_value, dec.score, dec.results + extra)
    missing = {
        r.modality: Decision(r.p_value < threshold, r.p_value, r.score, (r,))
        for r in d.missing.calculate(reference, current)
    }
    labels = d.labels.calculate(reference, current)
    pred_results = [r for r in outputs if r.modality == PREDICTION]
    pred_results += labels + d.agreement.calculate(reference, current)
    prediction = _combine(pred_results, threshold)
    label_shift = bool(labels) and labels[0].p_value < threshold / len(PREDICTION_FAMILIES)
    flagged = [m for m in mods if decisions[m].drift]
    if label_shift and flagged:
        decisions.update(_explain_by_labels(reference, current, flagged, decisions, threshold, d))
    return Assessment(len(current), decisions, missing, prediction, threshold)


def _explain_by_labels(
    reference: ReferenceProfile,
    current: Observations,
    flagged: list[str],
    decisions: dict[str, Decision],
    threshold: float,
    d: Detectors,
) -> dict[str, Decision]:
    """Re-test ``flagged`` modalities against the reference re-weighted by class ratios."""
    ref = reference.observations
    w = sample_weights(ref, current)
    if w is None or ref.labels is None:
        return {}
    keep = np.flatnonzero(ref.outputs.labelled(ref.labels))
    if w.max() <= 0:
        return {}
    # rejection sampling: an exact sample of the re-weighted reference with no duplicates
    # (duplicates would look like structure to the kernel test)
    accept = np.random.default_rng(0).random(len(keep)) < w / w.max()
    pick = keep[accept]
    if len(pick) < 10:
        return {}
    resampled = reference.subset(pick)
    again: list[DetectorResult] = []
    for det in (InputStatistics(), EmbeddingMMD(seed=d.embeddings.seed), OutputShift()):
        again += [r for r in det.calculate(resampled, current) if r.modality in flagged]
    out = {}
    for m in flagged:
        still = _combine([r for r in again if r.modality == m], threshold)
        if not still.drift:
            old = decisions[m]
            out[m] = Decision(False, old.p_value, old.score, old.results, explained_by_labels=True)
    return out


@dataclass(frozen=True)
class Window:
    """One window of the current stream."""

    start: int
    end: int
    assessment: Assessment
    estimate: AccuracyEstimate | None
    accuracy: float | None


@dataclass
class MonitorReport:
    """Everything `monitor` found (``to_dict`` is the ``--json`` object)."""

    whole: Assessment
    windows: list[Window]
    window: int
    reference_estimate: AccuracyEstimate | None
    current_estimate: AccuracyEstimate | None
    harm: dict[str, tuple[float, float]]
    reference_missing: dict[str, float]
    accuracy: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    metric: str = "accuracy"

    @property
    def drift(self) -> bool:
        """Drift over the whole current set."""
        return self.whole.drift

    def first_window(self, modality: str) -> int | None:
        """Index of the first window where ``modality`` (content or missing) drifted."""
        for i, w in enumerate(self.windows):
            if modality in w.assessment.drifted:
                return i
        return None

    def to_dict(self) -> dict[str, Any]:
        """The ``polyfuse monitor --json`` object."""
        whole = self.whole
        modalities = {}
        for m, dec in whole.modalities.items():
            stats: dict[str, Any] = {}
            for r in dec.results:
                entry: dict[str, Any] = {"p_value": r.p_value, "score": r.score}
                if r.statistics:
                    entry["moved"] = [s.to_dict() for s in r.statistics[:5]]
                if r.atypical:
                    entry["atypical"] = r.atypical
                if r.extra:
                    entry.update(r.extra)
                stats[r.detector] = entry
            modalities[m] = {
                "drift": dec.drift,
                "p_value": dec.p_value,
                "score": dec.score,
                "first_window": self.first_window(m),
                "explained_by_labels": dec.explained_by_labels,
                "statistics": stats,
            }
        missing = {
            m: {
                "reference": self.reference_missing.get(m, 0.0),
                "current": float((dec.results[0].extra or {}).get("current", 0.0)),
                "drift": dec.drift,
                "p_value": dec.p_value,
            }
            for m, dec in whole.missing.items()
        }
        pred = whole.prediction
        prediction: dict[str, Any] = {"drift": pred.drift, "p_value": pred.p_value}
        for r in pred.results:
            prediction[r.detector] = {"p_value": r.p_value, "score": r.score, **(r.extra or {})}
        estimated: dict[str, Any] = {
            "reference": None if self.reference_estimate is None else self.reference_estimate.value,
            "current": None if self.current_estimate is None else self.current_estimate.value,
            "metric": self.metric,
        }
        if self.current_estimate is not None:
            estimated["estimators"] = self.current_estimate.to_dict()
        if self.accuracy is not None:
            estimated["observed"] = self.accuracy
        return {
            "drift": self.drift,
            "n": whole.n,
            "window": self.window,
            "modalities": modalities,
            "missing_rate": missing,
            "prediction": prediction,
            "estimated_accuracy": estimated,
            "harm": {m: {"with": w, "without": wo} for m, (w, wo) in self.harm.items()},
            "windows": [
                {
                    "start": w.start,
                    "end": w.end,
                    "drift": w.assessment.drift,
                    "modalities": {
                        m: {"drift": m in w.assessment.drifted} for m in w.assessment.modalities
                    },
                    "prediction": {"drift": w.assessment.prediction.drift},
                    "estimated_accuracy": None if w.estimate is None else w.estimate.value,
                    **({} if w.accuracy is None else {"accuracy": w.accuracy}),
                }
                for w in self.windows
            ],
            **({"meta": self.meta} if self.meta else {}),
        }


def _accuracy(obs: Observations) -> float | None:
    correct = obs.correct
    return None if correct is None or not len(correct) else float(correct.mean())


def monitor(
    reference: ReferenceProfile,
    current: Observations,
    *,
    window: int = 200,
    alpha: float = 0.05,
    max_samples: int = 1000,
    detectors: Detectors | None = None,
    progress: bool = True,
) -> MonitorReport:
    """Compare ``current`` with ``reference``: overall, per window, and the harm it does.

    Args:
        window: samples per window (the last, shorter window is kept if at least half full).
        alpha: false-alarm budget of one assessment (one window, or the whole set).
        max_samples: the whole-set assessment uses at most this many current samples (a
            random subset), so its power does not grow without bound with the log's length.
    """
    if len(current) == 0:
        raise InvalidInputError("current", "no current samples to monitor")
    d = detectors or Detectors()
    pick = np.sort(
        np.random.default_rng(0).choice(len(current), min(len(current), max_samples), replace=False)
    )
    whole = assess(reference, current.take(pick), d, alpha=alpha, domain=True)
    calibration = reference.calibration
    windows = []
    for start, end in bar(current.windows(window), enabled=progress, desc="windows", leave=False):
        part = current.take(slice(start, end))
        result = assess(reference, part, d, alpha=alpha)
        est = None if calibration is None else calibration.estimate(part, result.drifted)
        windows.append(Window(start, end, result, est, _accuracy(part)))
    harm: dict[str, tuple[float, float]] = {}
    ref_est = cur_est = None
    if calibration is not None:
        ref_est = calibration.estimate(reference.observations)
        cur_est = calibration.estimate(current, whole.drifted)
        for m in whole.drifted:
            harm[m] = (cur_est.value, calibration.estimate_without(current, m).value)
    return MonitorReport(
        whole=whole,
        windows=windows,
        window=window,
        reference_estimate=ref_est,
        current_estimate=cur_est,
        harm=harm,
        reference_missing=reference.missing_rate,
        accuracy=_accuracy(current),
        metric="subset_accuracy" if current.outputs.multilabel else "accuracy",
    )
