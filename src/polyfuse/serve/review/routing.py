"""Which answers go to human review, and why.

Five reasons, each a small rule over what the service already has for an answer:

- ``predicted_error``: the answer is among the ``share`` (10 % by default) of recent
  answers most likely wrong, by the error model (`polyfuse.serve.review.errors`: a
  logistic regression fitted on the artifact's reference profile over the calibrated
  confidence, margin, entropy, leave-one-out contradiction, dissent of the modalities'
  own heads and the share of modalities missing or refused by their quality gate).
  The threshold is a share of traffic, not a probability: the error model is fitted on
  validation data, and on shifted traffic its probabilities move while their order
  holds much better; a share is also what a review team can plan for. "Recent" is the
  last ``window`` answers (at start, the reference's own answers). Without a profile
  (or with too few reference errors to fit on) the predicted error is one minus the
  confidence. This is the default reason for model answers.
- ``low_confidence``: the model's probability that its whole answer is right is below
  ``threshold``. The probability is the calibrated one when the artifact holds a reference
  profile (temperature scaling fitted on its validation data, `polyfuse.monitor.estimate`;
  for a multi-label model the probability of the whole label set, with the profile's set
  map), else the raw top-class probability (the product over labels for a multi-label model,
  `polyfuse.monitor.outputs.Outputs.confidence`). The default 0.5 routes the answers the
  model itself holds more likely wrong than right.
- ``contradiction``: leaving one present modality out, the model would give another answer
  and be at least ``contradiction`` sure of it (calibrated like the fused output). The
  answer then hangs on that one modality against the confident word of the others: at
  least one of the inputs misleads the model. These leave-one-out outputs are the live
  monitor's (`polyfuse.serve.runtime.forward.fuse_requests` with ``monitor=True``: one more
  fusion pass per modality on the same embeddings).
- ``firewall``: the firewall blocked or redacted an input (a reviewer sees what the policy
  let through, and can tell whether the redaction changed the answer).
- ``shadow_disagreement``: a shadow version of the model answered otherwise
  (`Router.disagree`, called by the shadow path with the two outputs).

`Router.decide_many` judges arrays of answers (the benchmark, `benchmarks/review_routing.py`);
`Router.decide` judges one served answer with the same code.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from polyfuse.core.errors import ConfigError
from polyfuse.monitor.outputs import SINGLE_LABEL, Outputs
from polyfuse.serve.review.errors import MIN_ERRORS, Answers, ErrorModel

if TYPE_CHECKING:
    from polyfuse.monitor.estimate import Calibration, OutputCalibration
    from polyfuse.monitor.observe import Observations
    from polyfuse.monitor.profile import ReferenceProfile

Reason = Literal[
    "predicted_error", "low_confidence", "contradiction", "firewall", "shadow_disagreement"
]
#: Every reason, in the order a decision lists them.
REASONS: tuple[Reason, ...] = (
    "predicted_error",
    "low_confidence",
    "contradiction",
    "firewall",
    "shadow_disagreement",
)
#: The reasons in use by default: the error model's share replaces the two single-signal
#: rules, whose signals are among its features (benchmarks/review_routing.py).
DEFAULT_REASONS: tuple[Reason, ...] = ("predicted_error", "firewall", "shadow_disagreement")
#: Firewall actions that route an answer (``flag`` only marks findings).
FIREWALL_ACTIONS = frozenset({"redact", "block"})
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class RoutingPolicy:
    """When an answer goes to review.

    Attributes:
        share: target share of answers routed for ``predicted_error`` (the most likely
            wrong among the last ``window`` answers).
        window: recent answers the ``predicted_error`` threshold is taken over.
        threshold: route answers whose confidence is below this (0: never for this reason).
        contradiction: route answers a leave-one-out output contradicts with at least this
            confidence (above 1: never for this reason).
        reasons: the reasons in use (a subset of `REASONS`).
    """

    share: float = 0.1
    window: int = 200
    threshold: float = 0.5
    contradiction: float = 0.9
    reasons: tuple[str, ...] = DEFAULT_REASONS

    def __post_init__(self) -> None:
        if not 0.0 < self.share <= 1.0:
            raise ConfigError("review_share", f"must be in (0, 1], got {self.share}")
        if self.window < 10:
            raise ConfigError("review_window", f"must be at least 10 answers, got {self.window}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError("review_threshold", f"must be in [0, 1], got {self.threshold}")
        if self.contradiction <= 0.0:
            raise ConfigError("review_contradiction", f"must be above 0, got {self.contradiction}")
        unknown = [r for r in self.reasons if r not in REASONS]
        if unknown:
            raise ConfigError(
                "review_reasons",
                f"unknown reason(s) {', '.join(unknown)}",
                hint=f"choose from {', '.join(REASONS)}",
            )

    def uses(self, reason: Reason) -> bool:
        """The reason is in use."""
        return reason in self.reasons


@dataclass(frozen=True)
class Confidences:
    """How sure an output is of its own answer: calibrated when a reference profile was
    fitted, else as the probabilities say.

    Attributes:
        outputs: how the probabilities read (softmax, or one sigmoid per label).
        fused: calibration of the fused output, or None (raw confidences).
        without: modality -> calibration of the output with it left out.
    """

    outputs: Outputs = SINGLE_LABEL
    fused: OutputCalibration | None = None
    without: Mapping[str, OutputCalibration] = field(default_factory=dict)

    @classmethod
    def of(cls, calibration: Calibration | None, outputs: Outputs) -> Confidences:
        """From a reference profile's calibration (None: raw confidences)."""
        if calibration is None:
            return cls(outputs)
        return cls(outputs, calibration.fused, dict(calibration.without))

    @classmethod
    def trusted(cls, calibration: Calibration, reference: Observations) -> Confidences:
        """The calibrations of ``calibration`` whose output was wrong on at least
        `MIN_ERRORS` labelled ``reference`` samples; the others read raw. Temperature
        scaling on a reference (nearly) without errors is not identifiable: the
        likelihood keeps rising as the temperature falls, and the fitted one (the
        bound, 0.05, for the clean AV-digits model) makes every answer look certain."""
        out = reference.outputs
        labels = reference.labels
        if labels is None:
            return cls(out)
        keep = out.labelled(labels)

        def enough(probs: FloatArray) -> bool:
            return int((~out.correct(probs[keep], labels[keep])).sum()) >= MIN_ERRORS

        fused = calibration.fused if enough(reference.probs) else None
        without = {
            m: cal
            for m, cal in calibration.without.items()
            if m in reference.modalities and enough(reference.modalities[m].without)
        }
        return cls(out, fused, without)

    def fused_confidence(self, probs: FloatArray) -> FloatArray:
        """``(n, K)`` fused outputs -> ``(n,)`` probability each answer is right."""
        if self.fused is None:
            return self.outputs.confidence(probs)
        return self.fused.confidence(probs)

    def without_confidence(self, modality: str, probs: FloatArray) -> FloatArray:
        """``(n, K)`` outputs with ``modality`` left out -> ``(n,)`` their confidence."""
        cal = self.without.get(modality)
        return self.outputs.confidence(probs) if cal is None else cal.confidence(probs)


@dataclass(frozen=True)
class RoutingDecision:
    """Whether one answer goes to review, and why.

    Attributes:
        reasons: the reasons that hold, in `REASONS` order (empty: not routed).
        confidence: the answer's confidence (None: no answer, e.g. a blocked request).
        contradicting: modalities whose leave-one-out output confidently answered
            otherwise.
        error: the predicted probability that the answer is wrong (None: no answer).
    """

    reasons: tuple[str, ...]
    confidence: float | None = None
    contradicting: tuple[str, ...] = ()
    error: float | None = None

    @property
    def routed(self) -> bool:
        """The answer goes to review."""
        return bool(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the ``review`` field of a ``/v1/predict`` answer)."""
        out: dict[str, Any] = {"routed": self.routed, "reasons": list(self.reasons)}
        if self.error is not None:
            out["error_probability"] = round(self.error, 4)
        if self.contradicting:
            out["contradicting"] = list(self.contradicting)
        return out


@dataclass(frozen=True)
class Signals:
    """What the router reads of one served answer.

    Attributes:
        probs: fused probabilities in label order.
        without: modality -> fused probabilities with it left out (empty when the
            runtime did not compute them).
        firewall: the firewall's strictest action on the request's inputs.
        unimodal: present modality -> its own head's probabilities.
        used: the modalities the fusion saw (None: the keys of ``without``).
    """

    probs: Sequence[float]
    without: Mapping[str, Sequence[float]] = field(default_factory=dict)
    firewall: str = "allow"
    unimodal: Mapping[str, Sequence[float]] = field(default_factory=dict)
    used: Sequence[str] | None = None


class Router:
    """Applies a `RoutingPolicy` to answers.

    Holds the last ``policy.window`` predicted error probabilities (the ``predicted_error``
    threshold is their ``1 - share`` quantile) and which of them were routed for it (at
    most ``share * window`` in any ``window`` answers in a row: a review team's capacity
    holds even while the window still reflects the reference), so one router judges one
    stream of answers in order; `decide` is thread-safe.

    Args:
        policy: thresholds and reasons in use.
        confidences: how outputs' confidences read (calibrated or raw).
        errors: the error model (None: the predicted error is one minus the confidence).
        modalities: every modality of the model (default: the error model's).
        seed: predicted error probabilities the window starts with (the reference's).
    """

    def __init__(
        self,
        policy: RoutingPolicy,
        confidences: Confidences | None = None,
        errors: ErrorModel | None = None,
        *,
        modalities: Sequence[str] = (),
        seed: Sequence[float] = (),
    ) -> None:
        self.policy = policy
        self.confidences = confidences or Confidences()
        self.errors = errors
        self.modalities = tuple(modalities) or (errors.modalities if errors else ())
        self._recent: deque[float] = deque(seed, maxlen=policy.window)
        self._routed: deque[bool] = deque(maxlen=policy.window - 1)
        self._budget = int(policy.share * policy.window)
        self._lock = threading.Lock()

    @classmethod
    def of_profile(
        cls, policy: RoutingPolicy, profile: ReferenceProfile | None, outputs: Outputs
    ) -> Router:
        """The router of a model with the reference ``profile`` (None: raw confidences and
        no error model): calibration and error model fitted on it, the window started with
        the reference's predicted errors. The service (`polyfuse serve --review`) and the
        benchmark build their routers here."""
        if profile is None:
            return cls(policy, Confidences(outputs))
        reference = profile.observations
        calibration = profile.calibration
        confidences = (
            Confidences(outputs)
            if calibration is None
            else Confidences.trusted(calibration, reference)
        )
        errors = ErrorModel.fit(reference, confidences)
        answers = Answers.of(reference)
        router = cls(policy, confidences, errors, modalities=answers.modalities)
        router.reset(router.error_probability(answers).tolist())
        return router

    def reset(self, seed: Sequence[float]) -> None:
        """Start the window of recent predicted errors again from ``seed`` (and forget
        which answers were routed)."""
        with self._lock:
            self._recent = deque(seed, maxlen=self.policy.window)
            self._routed.clear()

    def error_probability(self, answers: Answers) -> FloatArray:
        """``(n,)`` predicted probability that each answer is wrong."""
        if self.errors is not None:
            return self.errors.probability(answers, self.confidences)
        out: FloatArray = 1.0 - self.confidences.fused_confidence(answers.probs)
        return out

    def decide(self, signals: Signals) -> RoutingDecision:
        """The decision for one answer."""
        probs = np.asarray([signals.probs], dtype=np.float64)  # (1, K)
        used = set(signals.without if signals.used is None else signals.used)
        names = sorted(set(self.modalities) | set(signals.without) | used)
        k = probs.shape[1]
        without = {m: _row(signals.without.get(m), k) for m in names}
        unimodal = {m: _row(signals.unimodal.get(m), k) for m in names}
        present = {m: np.array([m in used]) for m in names}
        return self.decide_many(probs, without, present, [signals.firewall], unimodal)[0]

    def decide_many(
        self,
        probs: FloatArray,
        without: Mapping[str, FloatArray],
        present: Mapping[str, NDArray[np.bool_]],
        firewall: Sequence[str] | None = None,
        unimodal: Mapping[str, FloatArray] | None = None,
    ) -> list[RoutingDecision]:
        """Decisions for ``n`` answers in the order they were served: ``probs``
        ``(n, K)``; ``without[m]``, ``unimodal[m]`` ``(n, K)`` and ``present[m]`` ``(n,)``
        per modality; ``firewall`` actions (default: all allow)."""
        n = len(probs)
        confidence = self.confidences.fused_confidence(probs)  # (n,)
        low = confidence < self.policy.threshold
        against = self._contradicting(probs, without, present)  # m -> (n,)
        names = tuple(self.modalities) or tuple(present)
        answers = Answers(probs, without, unimodal or {}, present, names)
        error = self.error_probability(answers)  # (n,)
        likely = self._likely_wrong(error)
        actions = list(firewall) if firewall is not None else ["allow"] * n
        out = []
        for i in range(n):
            holds = {
                "predicted_error": bool(likely[i]),
                "low_confidence": bool(low[i]),
                "contradiction": any(bool(a[i]) for a in against.values()),
                "firewall": actions[i] in FIREWALL_ACTIONS,
            }
            reasons = tuple(r for r in REASONS if holds.get(r) and self.policy.uses(r))
            contradicting = tuple(sorted(m for m, a in against.items() if a[i]))
            out.append(
                RoutingDecision(reasons, float(confidence[i]), contradicting, float(error[i]))
            )
        return out

    def _likely_wrong(self, error: FloatArray) -> NDArray[np.bool_]:
        """Per answer in order: its predicted error is above the ``1 - share`` quantile of
        the window before it (always, while the window is empty), and fewer than
        ``share * window`` of the last ``window`` answers, this one included, are then
        routed for it; then it joins the window."""
        out = np.zeros(len(error), dtype=bool)
        q = 1.0 - self.policy.share
        with self._lock:
            for i, p in enumerate(error.tolist()):
                above = not self._recent or p > float(np.quantile(self._recent, q))
                out[i] = above and sum(self._routed) < self._budget
                self._recent.append(p)
                self._routed.append(bool(out[i]))
        return out

    def _contradicting(
        self,
        probs: FloatArray,
        without: Mapping[str, FloatArray],
        present: Mapping[str, NDArray[np.bool_]],
    ) -> dict[str, NDArray[np.bool_]]:
        """Per modality: present, with another present modality, and the output without it
        answers otherwise with at least the policy's confidence."""
        if not self.policy.uses("contradiction") or len(without) < 2:
            return {}
        shown = np.stack([present[m] for m in without]).sum(axis=0)  # (n,) modalities present
        out = {}
        for m, rest in without.items():
            sure = self.confidences.without_confidence(m, rest) >= self.policy.contradiction
            other = ~self.confidences.outputs.agree(probs, rest)
            out[m] = present[m] & (shown >= 2) & sure & other
        return out

    def disagree(self, champion: Sequence[float], shadow: Sequence[float]) -> bool:
        """Whether a shadow version's output gives another answer than the champion's
        (both in the champion's label order)."""
        a = np.asarray([champion], dtype=np.float64)
        b = np.asarray([shadow], dtype=np.float64)
        if a.shape != b.shape:
            raise ConfigError(
                "shadow",
                f"{b.shape[1]} probabilities for a model with {a.shape[1]} labels",
                hint="give the shadow's probabilities in the champion's label order",
            )
        return not bool(self.confidences.outputs.agree(a, b)[0])


def _row(values: Sequence[float] | None, k: int) -> FloatArray:
    """``(1, K)`` probabilities (uniform where the runtime gave none: an absent modality,
    whose features are masked by its presence)."""
    if values is None:
        return np.full((1, k), 1.0 / max(k, 1))
    return np.asarray([values], dtype=np.float64)
