"""Canary analysis: is a candidate version worse (or better) than the champion, with
confidence, while live traffic is split between them?

Each *signal* is a stream of one number per request and version (arm): an error (1/0), a
degraded answer (1/0), the log of the latency, a request slower than the champion's p95
(1/0), the calibrated confidence of the answer (label-free estimated accuracy) and, when a
delayed label arrives, whether the answer was right (1/0). A `Comparison` keeps running
sums per arm and tests the difference of means, canary minus champion, oriented so that a
positive difference means "canary worse".

The test is a mixture sequential probability ratio test (mSPRT: Robbins 1970; Johari,
Koomen, Pekelis and Walsh, "Always valid inference", Operations Research 2022) on the
difference of means with a normal mixing distribution of scale ``tau`` centred on the null
value: with ``d`` the observed difference and ``V`` its variance (within-arm pooled
variance times ``1/n_canary + 1/n_champion``),

    log L = 0.5 * log(V / (V + tau^2)) + tau^2 (d - d0)^2 / (2 V (V + tau^2)).

``L`` is (asymptotically) a martingale under the null, so by Ville's inequality the chance
that it *ever* exceeds ``1 / alpha`` is at most ``alpha``: the test may be looked at after
every request without inflating its error rate (an always-valid p-value is ``1 / max L``).
"Worse" tests ``d0 = margin`` and needs ``d > margin``; "better" tests ``d0 = 0`` and
needs ``d < 0``. Each direction is one-sided, so the chance of a false decision per
signal is at most ``alpha / signals`` (Bonferroni across signals) and at most ``alpha``
for the whole judge. A signal decides nothing before both arms hold ``min_samples``
values of it. `tests/release/test_canary.py` measures the false-rollback rate on
simulated streams without a difference (at most ``alpha``) and the detection of real ones.

Assumptions worth knowing: values are independent across requests. With sticky routing
(one caller always on one version) a caller who sends only hard inputs makes the streams
clustered; the test is then optimistic about its own certainty, so keep ``min_samples``
well above the number of requests of any single caller.

`CanaryJudge` holds one `Comparison` per signal and returns typed `Verdict`s; the serving
layer (`polyfuse.serve.versions`) feeds it and acts on it (rollback, promotion).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from polyfuse.core.config import validate

#: Which version a value came from.
Arm = Literal["champion", "canary"]
#: What a signal (or the judge) says about the canary.
State = Literal["worse", "better", "undecided"]


@dataclass(frozen=True)
class Signal:
    """One signal the judge compares.

    Attributes:
        name: the signal's name (``errors``, ``latency``, ...).
        higher_is_worse: whether a higher mean is worse (errors) or better (accuracy).
        binary: values are 0 or 1 (an event), so an arm without events still has the
            variance of the pooled rate (see `Comparison.variance`).
        description: what one value is.
    """

    name: str
    higher_is_worse: bool
    binary: bool
    description: str


#: The signals, in the order they are reported.
SIGNALS: dict[str, Signal] = {
    s.name: s
    for s in (
        Signal("errors", True, True, "1 when the version failed the request (5xx), else 0"),
        Signal("degraded", True, True, "1 when the answer left out a modality that failed"),
        Signal("latency", True, False, "log of the version's time to answer, in milliseconds"),
        Signal("slow", True, True, "1 when slower than the champion's p95 at the canary's start"),
        Signal(
            "estimated_accuracy", False, False, "calibrated confidence of the answer (label-free)"
        ),
        Signal("accuracy", False, True, "1 when a delayed label agrees with the answer"),
    )
}


class SignalSettings(BaseModel):
    """Per-signal settings of the sequential test.

    Attributes:
        margin: how much worse the canary may be before it counts as worse, in the
            signal's units (latency: log ratio, 0.1 = 10 % slower on the geometric mean).
        tau: scale of the mixing distribution: the size of difference the test is most
            sensitive to (smaller: faster on small differences, slower on large ones).
        enabled: compare this signal at all.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    margin: float = Field(default=0.0, ge=0.0)
    tau: float = Field(default=0.1, gt=0.0)
    enabled: bool = True


def _default_signals() -> dict[str, SignalSettings]:
    return {
        "errors": SignalSettings(tau=0.05),
        "degraded": SignalSettings(tau=0.05),
        "latency": SignalSettings(margin=0.1, tau=0.2),
        "slow": SignalSettings(tau=0.05),
        "estimated_accuracy": SignalSettings(tau=0.05),
        "accuracy": SignalSettings(tau=0.1),
    }


class CanarySettings(BaseModel):
    """How the judge decides (``canary:`` in the serve config).

    Attributes:
        alpha: chance of any false decision per direction across all signals (split
            evenly over the enabled signals).
        min_samples: values each arm needs of a signal before that signal may decide.
        signals: per-signal settings (missing ones take their defaults).
        auto_rollback: set the canary's weight to 0 when it is worse with confidence.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    min_samples: int = Field(default=50, ge=2)
    signals: dict[str, SignalSettings] = Field(default_factory=_default_signals)
    auto_rollback: bool = True

    @classmethod
    def parse(cls, data: Mapping[str, Any] | None, where: str = "canary") -> CanarySettings:
        """Validate a mapping (`ConfigError` naming ``<where>.<key>``); unknown signal
        names are refused, signals left out take their defaults."""
        if isinstance(data, CanarySettings):
            return data
        if data is not None and not isinstance(data, Mapping):
            from polyfuse.core.errors import ConfigError

            raise ConfigError(
                where,
                f"must be a mapping of settings, got {type(data).__name__}",
                hint="e.g. {min_samples: 200, alpha: 0.05}; polyfuse schema serve lists them",
            )
        out = validate(cls, dict(data or {}), where)
        unknown = sorted(set(out.signals) - set(SIGNALS))
        if unknown:
            from polyfuse.core.errors import ConfigError

            raise ConfigError(
                f"{where}.signals.{unknown[0]}",
                f"unknown signal '{unknown[0]}'",
                hint=f"one of {', '.join(SIGNALS)}",
            )
        return out.model_copy(update={"signals": {**_default_signals(), **out.signals}})

    def enabled(self) -> list[str]:
        """Names of the signals compared, in `SIGNALS` order."""
        return [n for n in SIGNALS if self.signals.get(n, SignalSettings()).enabled]


@dataclass
class Stream:
    """Running sums of one arm of one signal."""

    n: int = 0
    total: float = 0.0
    squares: float = 0.0

    def add(self, value: float) -> None:
        """Add one value."""
        self.n += 1
        self.total += value
        self.squares += value * value

    @property
    def mean(self) -> float:
        """Mean of the values (0 before any)."""
        return self.total / self.n if self.n else 0.0

    @property
    def sum_of_squares(self) -> float:
        """Sum of squared deviations from the mean."""
        return max(0.0, self.squares - self.n * self.mean * self.mean)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (count and mean)."""
        return {"n": self.n, "mean": round(self.mean, 6)}


def log_mixture_ratio(difference: float, null: float, variance: float, tau: float) -> float:
    """log of the mSPRT statistic for an observed ``difference`` whose variance is
    ``variance``, against the point null ``null``, with a normal mixture of scale ``tau``."""
    t2 = tau * tau
    return 0.5 * math.log(variance / (variance + t2)) + t2 * (difference - null) ** 2 / (
        2.0 * variance * (variance + t2)
    )


@dataclass(frozen=True)
class Verdict:
    """What one signal says now.

    Attributes:
        signal: its name.
        state: ``worse``, ``better`` or ``undecided``.
        difference: canary mean minus champion mean (in the signal's units).
        worse: log mSPRT statistic of "canary worse by more than the margin".
        better: log mSPRT statistic of "canary better".
        threshold: log(1 / alpha per signal): a statistic above it decides.
        margin: the signal's margin.
        canary: the canary's count and mean.
        champion: the champion's count and mean.
    """

    signal: str
    state: State
    difference: float
    worse: float
    better: float
    threshold: float
    margin: float
    canary: dict[str, Any]
    champion: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``GET /v1/versions``, the decision log)."""
        return {
            "signal": self.signal,
            "state": self.state,
            "difference": round(self.difference, 6),
            "statistic": {"worse": round(self.worse, 4), "better": round(self.better, 4)},
            "threshold": round(self.threshold, 4),
            "margin": self.margin,
            "canary": self.canary,
            "champion": self.champion,
        }


class Comparison:
    """Canary against champion on one signal (see the module docstring).

    Args:
        signal: which signal.
        settings: its margin and mixing scale.
        alpha: false-decision budget of this signal, per direction.
        min_samples: values each arm needs before a decision.
    """

    def __init__(
        self, signal: Signal, settings: SignalSettings, alpha: float, min_samples: int
    ) -> None:
        self.signal = signal
        self.settings = settings
        self.threshold = math.log(1.0 / alpha)
        self.min_samples = min_samples
        self.arms: dict[Arm, Stream] = {"champion": Stream(), "canary": Stream()}

    def add(self, arm: Arm, value: float) -> None:
        """One value of ``arm``."""
        self.arms[arm].add(float(value))

    def variance(self) -> float:
        """Variance of the difference of means: the within-arm pooled variance times
        ``1/n_a + 1/n_b``. For a 0/1 signal it is at least the variance of the pooled
        rate, smoothed by two events and two non-events (Agresti and Coull): an arm without
        events has no variance of its own yet, and a rare event must not look certain (on
        simulated streams at a 0.5 % rate the plain estimate's false decisions were 40 %
        over their budget, the smoothed one's under it)."""
        a, b = self.arms["champion"], self.arms["canary"]
        n = a.n + b.n
        pooled = (a.sum_of_squares + b.sum_of_squares) / max(1, n - 2)
        if self.signal.binary:
            p = (a.total + b.total + 2.0) / (n + 4.0)
            pooled = max(pooled, p * (1.0 - p))
        return max(pooled, 1e-12) * (1.0 / a.n + 1.0 / b.n)

    def verdict(self) -> Verdict:
        """The signal's verdict now."""
        a, b = self.arms["champion"], self.arms["canary"]
        sign = 1.0 if self.signal.higher_is_worse else -1.0
        diff = b.mean - a.mean
        worse = better = 0.0
        state: State = "undecided"
        if min(a.n, b.n) >= self.min_samples:
            var = self.variance()
            d = sign * diff  # > 0: canary worse
            margin, tau = self.settings.margin, self.settings.tau
            if d > margin:
                worse = log_mixture_ratio(d, margin, var, tau)
            if d < 0:
                better = log_mixture_ratio(d, 0.0, var, tau)
            if worse >= self.threshold:
                state = "worse"
            elif better >= self.threshold:
                state = "better"
        return Verdict(
            self.signal.name,
            state,
            diff,
            worse,
            better,
            self.threshold,
            self.settings.margin,
            b.to_dict(),
            a.to_dict(),
        )


@dataclass(frozen=True)
class Judgement:
    """The judge's overall view.

    Attributes:
        state: ``worse`` when any signal is worse with confidence; ``better`` when none is
            worse and at least one is better; else ``undecided``.
        verdicts: signal -> its verdict.
        deciding: the signals that made the state (worse ones, else better ones).
    """

    state: State
    verdicts: dict[str, Verdict]
    deciding: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "state": self.state,
            "deciding": list(self.deciding),
            "signals": {n: v.to_dict() for n, v in self.verdicts.items()},
        }


@dataclass
class CanaryJudge:
    """All signals of one canary against its champion (thread-safe).

    Args:
        settings: alpha, minimum sample and per-signal settings.
    """

    settings: CanarySettings = field(default_factory=CanarySettings)
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        names = self.settings.enabled()
        alpha = self.settings.alpha / max(1, len(names))
        self.comparisons = {
            n: Comparison(SIGNALS[n], self.settings.signals[n], alpha, self.settings.min_samples)
            for n in names
        }
        self._lock = threading.Lock()

    def observe(self, signal: str, arm: Arm, value: float) -> None:
        """One value of ``signal`` from ``arm`` (ignored for a disabled signal)."""
        comparison = self.comparisons.get(signal)
        if comparison is None or not math.isfinite(value):
            return
        with self._lock:
            comparison.add(arm, value)

    def verdict(self, signal: str) -> Verdict | None:
        """One signal's verdict (None when disabled)."""
        comparison = self.comparisons.get(signal)
        if comparison is None:
            return None
        with self._lock:
            return comparison.verdict()

    def judge(self) -> Judgement:
        """Every signal's verdict and the overall state."""
        with self._lock:
            verdicts = {n: c.verdict() for n, c in self.comparisons.items()}
        worse = tuple(n for n, v in verdicts.items() if v.state == "worse")
        if worse:
            return Judgement("worse", verdicts, worse)
        better = tuple(n for n, v in verdicts.items() if v.state == "better")
        return Judgement("better" if better else "undecided", verdicts, better)


__all__ = [
    "SIGNALS",
    "Arm",
    "CanaryJudge",
    "CanarySettings",
    "Comparison",
    "Judgement",
    "Signal",
    "SignalSettings",
    "State",
    "Stream",
    "Verdict",
    "log_mixture_ratio",
]
