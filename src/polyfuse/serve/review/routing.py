"""Which answers go to human review, and why.

Four reasons, each a small rule over what the service already has for an answer:

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from polyfuse.core.errors import ConfigError
from polyfuse.monitor.outputs import SINGLE_LABEL, Outputs

if TYPE_CHECKING:
    from polyfuse.monitor.estimate import Calibration, OutputCalibration

Reason = Literal["low_confidence", "contradiction", "firewall", "shadow_disagreement"]
#: Every reason, in the order a decision lists them.
REASONS: tuple[Reason, ...] = ("low_confidence", "contradiction", "firewall", "shadow_disagreement")
#: Firewall actions that route an answer (``flag`` only marks findings).
FIREWALL_ACTIONS = frozenset({"redact", "block"})
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class RoutingPolicy:
    """When an answer goes to review.

    Attributes:
        threshold: route answers whose confidence is below this (0: never for this reason).
        contradiction: route answers a leave-one-out output contradicts with at least this
            confidence (above 1: never for this reason).
        reasons: the reasons in use (a subset of `REASONS`).
    """

    threshold: float = 0.5
    contradiction: float = 0.9
    reasons: tuple[str, ...] = REASONS

    def __post_init__(self) -> None:
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
    """

    reasons: tuple[str, ...]
    confidence: float | None = None
    contradicting: tuple[str, ...] = ()

    @property
    def routed(self) -> bool:
        """The answer goes to review."""
        return bool(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the ``review`` field of a ``/v1/predict`` answer)."""
        out: dict[str, Any] = {"routed": self.routed, "reasons": list(self.reasons)}
        if self.contradicting:
            out["contradicting"] = list(self.contradicting)
        return out


@dataclass(frozen=True)
class Signals:
    """What the router reads of one served answer.

    Attributes:
        probs: fused probabilities in label order.
        without: present modality -> fused probabilities with it left out (empty when the
            runtime did not compute them).
        firewall: the firewall's strictest action on the request's inputs.
    """

    probs: Sequence[float]
    without: Mapping[str, Sequence[float]] = field(default_factory=dict)
    firewall: str = "allow"


class Router:
    """Applies a `RoutingPolicy` to answers.

    Args:
        policy: thresholds and reasons in use.
        confidences: how outputs' confidences read (calibrated or raw).
    """

    def __init__(self, policy: RoutingPolicy, confidences: Confidences | None = None) -> None:
        self.policy = policy
        self.confidences = confidences or Confidences()

    def decide(self, signals: Signals) -> RoutingDecision:
        """The decision for one answer."""
        probs = np.asarray([signals.probs], dtype=np.float64)  # (1, K)
        without = {m: np.asarray([p], dtype=np.float64) for m, p in signals.without.items()}
        present = {m: np.ones(1, dtype=bool) for m in signals.without}
        return self.decide_many(probs, without, present, [signals.firewall])[0]

    def decide_many(
        self,
        probs: FloatArray,
        without: Mapping[str, FloatArray],
        present: Mapping[str, NDArray[np.bool_]],
        firewall: Sequence[str] | None = None,
    ) -> list[RoutingDecision]:
        """Decisions for ``n`` answers: ``probs`` ``(n, K)``; ``without[m]`` ``(n, K)`` and
        ``present[m]`` ``(n,)`` per modality; ``firewall`` actions (default: all allow)."""
        n = len(probs)
        confidence = self.confidences.fused_confidence(probs)  # (n,)
        low = confidence < self.policy.threshold
        against = self._contradicting(probs, without, present)  # m -> (n,)
        actions = list(firewall) if firewall is not None else ["allow"] * n
        out = []
        for i in range(n):
            holds = {
                "low_confidence": bool(low[i]),
                "contradiction": any(bool(a[i]) for a in against.values()),
                "firewall": actions[i] in FIREWALL_ACTIONS,
            }
            reasons = tuple(r for r in REASONS if holds.get(r) and self.policy.uses(r))
            contradicting = tuple(sorted(m for m, a in against.items() if a[i]))
            out.append(RoutingDecision(reasons, float(confidence[i]), contradicting))
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
