"""Monitoring inside a running service: sliding windows, drift state, quarantine, feedback.

`LiveMonitor` receives one `Observations` row per served request (statistics, embeddings and
outputs only, never raw content), assesses every full window against the reference profile
in the background (a thread, or with ``isolate=True`` a process of its own, so that the
assessment's Python never holds the service's GIL), and keeps the state the service
exports: per-modality drift, p-value and score, the label-free accuracy estimate,
agreement and missing rates, and which modalities are quarantined.

Quarantine (opt-in, `QuarantinePolicy`): when a modality's content has drifted in
``windows`` consecutive windows *and* the estimated accuracy without it is higher than with
it (by ``margin``), the service stops feeding it to the fusion (answers are ``degraded``
with reason ``quarantined: drift``). The modality keeps being observed, so the quarantine
lifts by itself after ``windows`` consecutive clean windows, or when an operator calls
`lift`.

Delayed labels (`feedback`) are matched to the predictions of recent requests by request
id; once a window has labels for at least ``min_labels`` of its requests, their observed
accuracy is reported next to the estimate.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import OrderedDict
from collections.abc import Collection
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from polyfuse.core.errors import InvalidInputError
from polyfuse.monitor.detectors import Detectors, agreement
from polyfuse.monitor.observe import Observations, concat
from polyfuse.monitor.profile import ReferenceProfile
from polyfuse.monitor.run import Assessment, assess

#: What a request was answered: a class index, or the sorted label indices (multi-label).
Answer = int | tuple[int, ...]

#: The degraded reason of answers given without a quarantined modality.
QUARANTINE_REASON = "quarantined: drift"


@dataclass(frozen=True)
class MonitorRecord:
    """What the monitor keeps of one served request (and what the request log stores).

    Never raw content: per modality its input statistics, a sketch of its adapted
    embedding (the reference profile's projection, a few numbers), its own head's
    probabilities and the fused probabilities without it; the fused probabilities.

    Attributes:
        request_id: the request's id (delayed labels refer to it).
        probs: fused class probabilities (the answer).
        statistics: modality -> input statistics (absent: modality not sent, or its input
            came from the embedding cache without them).
        sketches: modality -> embedding sketch (present modalities only).
        unimodal: modality -> the modality's own head's probabilities.
        without: modality -> fused probabilities with the modality left out.
    """

    request_id: str
    probs: list[float]
    statistics: dict[str, list[float]] = field(default_factory=dict)
    sketches: dict[str, list[float]] = field(default_factory=dict)
    unimodal: dict[str, list[float]] = field(default_factory=dict)
    without: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the ``monitor`` field of a request-log record)."""
        return {
            "probs": [round(p, 6) for p in self.probs],
            "statistics": {m: [round(x, 6) for x in v] for m, v in self.statistics.items()},
            "sketches": {m: [round(x, 5) for x in v] for m, v in self.sketches.items()},
            "unimodal": {m: [round(p, 6) for p in v] for m, v in self.unimodal.items()},
            "without": {m: [round(p, 6) for p in v] for m, v in self.without.items()},
        }

    @classmethod
    def from_dict(cls, request_id: str, data: dict[str, Any]) -> MonitorRecord:
        """Read the JSON form back."""
        return cls(
            request_id,
            [float(p) for p in data["probs"]],
            {m: [float(x) for x in v] for m, v in data.get("statistics", {}).items()},
            {m: [float(x) for x in v] for m, v in data.get("sketches", {}).items()},
            {m: [float(x) for x in v] for m, v in data.get("unimodal", {}).items()},
            {m: [float(x) for x in v] for m, v in data.get("without", {}).items()},
        )


def observations_of(records: list[MonitorRecord], profile: ReferenceProfile) -> Observations:
    """`Observations` (embeddings as sketches) of served requests, in order."""
    from polyfuse.monitor.observe import ModalityView

    ref = profile.observations
    n, k = len(records), len(ref.classes)
    blank = ref.outputs.uninformative(1, k)[0]
    views = {}
    for m, rv in ref.modalities.items():
        dim = profile.projections[m].components.shape[1]
        present = np.array([m in r.sketches for r in records], dtype=bool)
        stats = np.full((n, len(rv.names)), np.nan)
        emb = np.zeros((n, dim))
        probs = np.tile(blank, (n, 1))
        without = np.tile(blank, (n, 1))
        for i, r in enumerate(records):
            if m in r.statistics and len(r.statistics[m]) == len(rv.names):
                stats[i] = r.statistics[m]
            if m in r.sketches:
                emb[i] = r.sketches[m]
            if m in r.unimodal:
                probs[i] = r.unimodal[m]
            without[i] = r.without.get(m, r.probs)
        views[m] = ModalityView(
            kind=rv.kind,
            present=present,
            statistics=stats,
            names=rv.names,
            embedding=emb,
            probs=probs,
            without=without,
            projected=True,
        )
    return Observations(
        ids=[r.request_id for r in records],
        modalities=views,
        probs=np.array([r.probs for r in records], dtype=np.float64).reshape(n, k),
        classes=ref.classes,
        outputs=ref.outputs,
    )


@dataclass(frozen=True)
class WindowResult:
    """What one window's assessment hands back to the live state.

    Attributes:
        assessment: the drift decisions.
        estimate: label-free accuracy estimate (None without a calibration).
        without: modality -> estimated accuracy without it.
        agreement: share of requests whose modalities agree (None for an empty window).
        missing: modality -> share of the window's requests without it.
    """

    assessment: Assessment
    estimate: float | None
    without: dict[str, float]
    agreement: float | None
    missing: dict[str, float]


def assess_window(
    profile: ReferenceProfile,
    detectors: Detectors,
    alpha: float,
    batch: list[Observations | MonitorRecord],
) -> WindowResult:
    """Assess one full window (records and observation rows, in arrival order)."""
    parts: list[Observations] = []
    records: list[MonitorRecord] = []
    for item in [*batch, None]:  # runs of records become one Observations each
        if isinstance(item, MonitorRecord):
            records.append(item)
            continue
        if records:
            parts.append(observations_of(records, profile))
            records = []
        if item is not None:
            parts.append(item)
    current = concat(parts)
    result = assess(profile, current, detectors, alpha=alpha)
    cal = profile.calibration
    estimate = None if cal is None else cal.estimate(current, result.drifted).value
    without = {}
    if cal is not None:
        without = {m: cal.estimate_without(current, m).value for m in result.modalities}
    agree = float(agreement(current).mean()) if len(current) else None
    missing = {
        m: float(1.0 - view.present.mean()) if len(view.present) else 0.0
        for m, view in current.modalities.items()
    }
    return WindowResult(result, estimate, without, agree, missing)


# The assessment process's profile, detectors and alpha (set once by `_init_worker`).
_WORKER: dict[str, tuple[ReferenceProfile, Detectors, float]] = {}


def _init_worker(profile: ReferenceProfile, detectors: Detectors, alpha: float) -> None:
    _WORKER["monitor"] = (profile, detectors, alpha)


def _assess_in_worker(batch: list[Observations | MonitorRecord]) -> WindowResult:
    return assess_window(*_WORKER["monitor"], batch)


@dataclass(frozen=True)
class QuarantinePolicy:
    """When to stop feeding a drifted modality.

    Attributes:
        enabled: quarantine at all (off by default).
        windows: consecutive drifted windows before quarantine (and clean ones to lift it).
        margin: the estimated accuracy without the modality must beat the estimate with it
            by more than this.
    """

    enabled: bool = False
    windows: int = 3
    margin: float = 0.0

    def __post_init__(self) -> None:
        if self.windows < 1:
            raise InvalidInputError("quarantine.windows", f"must be at least 1, got {self.windows}")


@dataclass
class ModalityState:
    """Live state of one modality."""

    drift: bool = False
    p_value: float = 1.0
    score: float = 0.0
    missing_rate: float = 0.0
    missing_drift: bool = False
    drifted_windows: int = 0
    clean_windows: int = 0
    quarantined: bool = False
    quarantined_since: float | None = None
    estimate_without: float | None = None


@dataclass
class LiveState:
    """What the service exports (a snapshot; see `LiveMonitor.state`)."""

    window: int
    samples: int
    windows: int
    modalities: dict[str, ModalityState]
    prediction_drift: bool = False
    prediction_p_value: float = 1.0
    estimated_accuracy: float | None = None
    reference_accuracy: float | None = None
    observed_accuracy: float | None = None
    agreement_rate: float | None = None
    feedback: dict[str, int] = field(default_factory=lambda: {"correct": 0, "wrong": 0})
    last_assessed: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the admin route and tests)."""
        return {
            "window": self.window,
            "samples": self.samples,
            "windows": self.windows,
            "prediction": {"drift": self.prediction_drift, "p_value": self.prediction_p_value},
            "estimated_accuracy": self.estimated_accuracy,
            "reference_accuracy": self.reference_accuracy,
            "observed_accuracy": self.observed_accuracy,
            "agreement_rate": self.agreement_rate,
            "feedback": dict(self.feedback),
            "last_assessed": self.last_assessed,
            "modalities": {m: vars(s).copy() for m, s in self.modalities.items()},
        }


class LiveMonitor:
    """Sliding-window drift monitoring of a served model.

    Args:
        profile: the artifact's reference profile.
        window: requests per window.
        alpha: false-alarm budget per window.
        policy: quarantine policy.
        background: assess full windows in a background thread (the service); ``False``
            assesses inside `record` (tests, offline replay).
        isolate: with ``background``, run each assessment in a process of its own (started
            at the first full window, one for the monitor's life; `close` ends it): the
            thread only waits, so the service's event loop and batch threads never wait
            for the assessment's Python to release the GIL.
        min_labels: labelled requests a window needs before its observed accuracy is shown.
    """

    def __init__(
        self,
        profile: ReferenceProfile,
        *,
        window: int = 200,
        alpha: float = 0.05,
        policy: QuarantinePolicy | None = None,
        detectors: Detectors | None = None,
        background: bool = True,
        isolate: bool = False,
        min_labels: int = 20,
        remember: int = 10_000,
    ) -> None:
        if window < 10:
            raise InvalidInputError("monitor.window", f"must be at least 10, got {window}")
        self.profile = profile
        self.window = window
        self.alpha = alpha
        self.policy = policy or QuarantinePolicy()
        self.detectors = detectors or Detectors(domain=None)
        self.background = background
        self.isolate = isolate and background
        self._pool: ProcessPoolExecutor | None = None
        self.min_labels = min_labels
        self._lock = threading.Lock()
        self._pending: list[Observations | MonitorRecord] = []
        self._pending_n = 0
        self._busy = False
        self._thread: threading.Thread | None = None
        # request id -> (answer, window)
        self._predicted: OrderedDict[str, tuple[Answer, int]] = OrderedDict()
        self._remember = remember
        self._labels: dict[int, list[bool]] = {}  # window index -> delayed labels' outcomes
        self._taken = 0  # windows handed to an assessment so far
        cal = profile.calibration
        reference_accuracy = None if cal is None else cal.estimate(profile.observations).value
        self._state = LiveState(
            window=window,
            samples=0,
            windows=0,
            modalities={m: ModalityState() for m in profile.observations.modalities},
            reference_accuracy=reference_accuracy,
        )

    # ---- feeding -----------------------------------------------------------
    def sketch(self, modality: str, embedding: Any) -> list[float]:
        """The embedding sketch of one request's adapted ``modality`` features."""
        x = np.asarray(embedding, dtype=np.float64).reshape(1, -1)
        return [float(v) for v in self.profile.projections[modality](x)[0]]

    def record_request(self, record: MonitorRecord) -> None:
        """Add one served request (on the event loop: an append; the arrays are built by
        the assessment)."""
        answer = self._answers(np.asarray([record.probs], dtype=np.float64))[0]
        self._add(record, 1, [(record.request_id, answer)])

    def record(self, observations: Observations) -> None:
        """Add served requests (one row each); assesses when a window is full."""
        answered = zip(observations.ids, self._answers(observations.probs), strict=True)
        self._add(observations, len(observations), list(answered))

    @property
    def multilabel(self) -> bool:
        """The model answers label sets (feedback is a set of labels)."""
        return self.profile.observations.outputs.multilabel

    def _answers(self, probs: NDArray[np.float64]) -> list[Answer]:
        said = self.profile.observations.outputs.predicted(probs)
        if self.multilabel:
            return [tuple(int(j) for j in np.flatnonzero(row)) for row in said]
        return [int(c) for c in said]

    def _add(
        self, item: Observations | MonitorRecord, n: int, answered: list[tuple[str, Answer]]
    ) -> None:
        with self._lock:
            self._pending.append(item)
            self._pending_n += n
            for rid, answer in answered:
                self._predicted[rid] = (answer, self._taken)
                if len(self._predicted) > self._remember:
                    self._predicted.popitem(last=False)
            self._state.samples = self._pending_n
            if self._pending_n < self.window or self._busy:
                return
            batch, self._pending, self._pending_n = self._pending, [], 0
            self._state.samples = 0
            self._busy = True
            self._taken += 1
        if self.background:
            self._thread = threading.Thread(target=self._assess, args=(batch,), daemon=True)
            self._thread.start()
        else:
            self._assess(batch)

    def feedback(self, request_id: str, label: int | Collection[int]) -> str:
        """A delayed label for a served request (class index; for a multi-label model the
        indices of its labels): ``correct`` or ``wrong`` against what was answered, or
        ``unknown`` when the request is not remembered."""
        truth: Answer = (
            tuple(sorted({int(j) for j in label})) if isinstance(label, Collection) else int(label)
        )
        with self._lock:
            known = self._predicted.get(request_id)
            if known is None:
                return "unknown"
            predicted, window = known
            correct = predicted == truth
            self._labels.setdefault(window, []).append(correct)
            outcome = "correct" if correct else "wrong"
            self._state.feedback[outcome] += 1
            self._observed()
            return outcome

    def _observed(self) -> None:
        """Observed accuracy of the newest taken window with enough delayed labels (call
        with the lock held); labels of windows no longer remembered are dropped."""
        oldest = next(iter(self._predicted.values()))[1] if self._predicted else self._taken
        for w in [w for w in self._labels if w < oldest]:
            del self._labels[w]
        need = min(self.min_labels, self.window)
        for w in sorted(self._labels, reverse=True):
            labels = self._labels[w]
            if w < self._taken and len(labels) >= need:
                self._state.observed_accuracy = float(np.mean(labels))
                return

    def wait(self, timeout: float = 30.0) -> None:
        """Block until a background assessment finishes (tests, shutdown)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # ---- state ---------------------------------------------------------------
    def quarantined(self) -> frozenset[str]:
        """Modalities the service must not feed to the fusion now."""
        with self._lock:
            return frozenset(m for m, s in self._state.modalities.items() if s.quarantined)

    def quarantine(self, modality: str) -> bool:
        """Quarantine a modality by hand (an operator who knows the input is broken);
        it lifts like an automatic one. False when it already was."""
        with self._lock:
            state = self._modality(modality)
            was = state.quarantined
            state.quarantined = True
            state.quarantined_since = state.quarantined_since or time.time()
            state.clean_windows = 0
            return not was

    def _modality(self, modality: str) -> ModalityState:
        state = self._state.modalities.get(modality)
        if state is None:
            raise InvalidInputError(
                modality,
                f"unknown modality '{modality}'",
                hint=f"one of {', '.join(self._state.modalities)}",
            )
        return state

    def lift(self, modality: str) -> bool:
        """Lift a quarantine by hand (the admin route); False when it was not quarantined."""
        with self._lock:
            state = self._modality(modality)
            was = state.quarantined
            state.quarantined = False
            state.quarantined_since = None
            state.drifted_windows = 0
            return was

    def state(self) -> LiveState:
        """A consistent snapshot of the live state."""
        import copy

        with self._lock:
            return copy.deepcopy(self._state)

    # ---- assessment ------------------------------------------------------------
    def _assess(self, batch: list[Observations | MonitorRecord]) -> None:
        try:
            if self.isolate:
                window = self._process().submit(_assess_in_worker, batch).result()
            else:
                window = assess_window(self.profile, self.detectors, self.alpha, batch)
            self._update(window)
        finally:
            with self._lock:
                self._busy = False

    def _process(self) -> ProcessPoolExecutor:
        """The assessment process (started on first use)."""
        if self._pool is None:
            # spawn: forking a service that runs torch threads can deadlock
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.profile, self.detectors, self.alpha),
            )
        return self._pool

    def close(self) -> None:
        """Wait for a running assessment and end the assessment process, if any."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout=60)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _update(self, window: WindowResult) -> None:
        result, estimate = window.assessment, window.estimate
        with self._lock:
            st = self._state
            st.windows += 1
            st.last_assessed = time.time()
            st.prediction_drift = result.prediction.drift
            st.prediction_p_value = result.prediction.p_value
            st.estimated_accuracy = estimate
            st.agreement_rate = window.agreement
            self._observed()
            for m, dec in result.modalities.items():
                s = st.modalities[m]
                s.drift, s.p_value, s.score = dec.drift, dec.p_value, dec.score
                s.missing_rate = window.missing.get(m, 0.0)
                s.missing_drift = m in result.missing and result.missing[m].drift
                s.estimate_without = window.without.get(m)
                if dec.drift:
                    s.drifted_windows += 1
                    s.clean_windows = 0
                else:
                    s.clean_windows += 1
                    s.drifted_windows = 0
                self._apply_policy(m, s, estimate)

    def _apply_policy(self, m: str, s: ModalityState, estimate: float | None) -> None:
        policy = self.policy
        if not policy.enabled:
            return
        if s.quarantined:
            if s.clean_windows >= policy.windows:
                s.quarantined = False
                s.quarantined_since = None
            return
        if (
            s.drifted_windows >= policy.windows
            and estimate is not None
            and s.estimate_without is not None
            and s.estimate_without > estimate + policy.margin
        ):
            s.quarantined = True
            s.quarantined_since = time.time()
