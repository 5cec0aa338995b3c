"""Per-version counts of one service: requests, errors by code, degraded answers, a latency
histogram, agreement with the champion (shadow) and delayed labels. The HTTP layer exports
them (`polyfuse.serve.http.versions`); the runtime updates them on the event loop."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

#: Upper bounds of the per-version latency histogram, in seconds (the same bounds as the
#: HTTP layer's request histogram, so the two read alike).
LATENCY_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: Error codes that are the version's fault (they count in the canary's error signal);
#: the others (bad input, a policy block) say nothing about the version.
SERVER_ERRORS = frozenset({"internal", "unavailable", "overloaded", "deadline_exceeded"})


@dataclass
class Ledger:
    """The counts of one version.

    Attributes:
        requests: requests it answered or failed.
        errors: error code -> count.
        degraded: degraded answers.
        buckets: latency histogram counts per bound of `LATENCY_BOUNDS`, then ``+Inf``
            (not cumulative).
        seconds: sum of latencies.
        compared: answers compared with the champion's for the same request (shadow).
        agreed: those with the champion's label.
        feedback: ``correct`` / ``wrong`` -> delayed labels of its answers.
    """

    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    degraded: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    seconds: float = 0.0
    compared: int = 0
    agreed: int = 0
    feedback: dict[str, int] = field(default_factory=lambda: {"correct": 0, "wrong": 0})

    def answered(self, seconds: float, degraded: bool) -> None:
        """One answer that took ``seconds``."""
        self.requests += 1
        self.degraded += int(degraded)
        self._time(seconds)

    def failed(self, seconds: float, code: str) -> None:
        """One request that ended in the error ``code``."""
        self.requests += 1
        self.errors[code] = self.errors.get(code, 0) + 1
        self._time(seconds)

    def _time(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1
        self.seconds += seconds

    def compare(self, agrees: bool) -> None:
        """One answer compared with the champion's."""
        self.compared += 1
        self.agreed += int(agrees)

    @property
    def agreement(self) -> float | None:
        """Share of compared answers that agree (None before any)."""
        return self.agreed / self.compared if self.compared else None

    @property
    def accuracy(self) -> float | None:
        """Share of labelled answers that were right (None before any label)."""
        n = self.feedback["correct"] + self.feedback["wrong"]
        return self.feedback["correct"] / n if n else None

    def percentile(self, q: float) -> float | None:
        """Latency percentile ``q`` (0-100) in seconds, read from the histogram as the
        upper bound of its bucket (None before any request)."""
        total = sum(self.buckets)
        if not total:
            return None
        need, seen = q / 100.0 * total, 0
        for bound, count in zip((*LATENCY_BOUNDS, float("inf")), self.buckets, strict=True):
            seen += count
            if seen >= need:
                return bound
        return float("inf")

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``GET /v1/versions``)."""
        p95 = self.percentile(95)
        return {
            "requests": self.requests,
            "errors": dict(self.errors),
            "degraded": self.degraded,
            "mean_ms": round(1000 * self.seconds / self.requests, 3) if self.requests else None,
            "p95_ms_at_most": None if p95 is None else 1000 * p95,
            "compared": self.compared,
            "agreement": self.agreement,
            "feedback": dict(self.feedback),
            "accuracy": self.accuracy,
        }
