"""The metrics polyfuse exports, as the operations layer may name them in queries.

One table (`METRICS`) of what ``polyfuse serve`` answers on ``/metrics``: every recording
rule, alert and dashboard panel of `polyfuse.ops` names only these series or the series
its own recording rules write (`RUNTIME_SERIES`, `LATENCY_QUANTILES`, `SLO_SERIES`). The
tests compare the table with a real server's exposition, so a renamed metric breaks a
test instead of a dashboard.

The runtime's ``stats()`` are exported with the batcher or modality inside the metric
name (``polyfuse_runtime_batchers_image_queue_depth``); `RUNTIME_SERIES` turns each such
family into one series with a label (``polyfuse:runtime_queue_depth{batcher="image"}``),
so a panel can sum, rate and legend by it.

The live drift monitor's series (``polyfuse_monitor_*``, ``polyfuse_feedback_total``) exist
while the service monitors (an artifact with a reference profile, ``monitor`` not off):
the estimate and agreement rate after the first window, the observed accuracy once a
window has enough delayed labels, the feedback counter after the first label. The human
review series (``polyfuse_review_*``) exist while the service runs with ``--review``. The
per-version series (``polyfuse_version_*``, ``polyfuse_canary_*``, ``polyfuse_shadow_*``)
exist while it serves several versions (``--canary``, ``--shadow``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricKind = Literal["counter", "gauge", "histogram"]

#: Upper bounds of the latency histograms, as the exposition writes them (``le`` label
#: values; Prometheus 2 compares them as text). Same bounds as ``serve.http.metrics``.
LATENCY_BUCKETS: tuple[str, ...] = (
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "30.0",
)  # fmt: skip


@dataclass(frozen=True)
class Metric:
    """One metric family of the exposition.

    Attributes:
        name: the name queries use (counters end in ``_total``; a histogram's series are
            ``NAME_bucket``, ``NAME_count`` and ``NAME_sum``).
        kind: counter, gauge or histogram.
        labels: its label names (besides ``job`` and ``instance``).
        help: what it measures.
    """

    name: str
    kind: MetricKind
    labels: tuple[str, ...]
    help: str

    @property
    def series(self) -> tuple[str, ...]:
        """The series names a query may select."""
        if self.kind == "histogram":
            return tuple(f"{self.name}_{s}" for s in ("bucket", "count", "sum"))
        return (self.name,)


def _monitor(name: str, labels: tuple[str, ...], help: str) -> Metric:
    """A gauge of the live drift monitor (``serve.http.monitoring``)."""
    return Metric(name, "gauge", labels, help)


#: Labels of the per-version series: the version's name and its role.
_VERSION = ("version", "role")

METRICS: tuple[Metric, ...] = (
    Metric("polyfuse_request_seconds", "histogram", ("route",), "request latency"),
    Metric("polyfuse_stage_seconds", "histogram", ("route", "stage"), "latency of one stage"),
    Metric("polyfuse_requests_total", "counter", ("route", "status"), "requests by status"),
    Metric("polyfuse_errors_total", "counter", ("route", "code"), "error answers by code"),
    Metric("polyfuse_firewall_findings_total", "counter", ("type", "action"), "firewall findings"),
    Metric(
        "polyfuse_firewall_output_findings_total",
        "counter",
        ("type", "action"),
        "firewall findings in answers",
    ),
    Metric(
        "polyfuse_degraded_total",
        "counter",
        ("modality", "reason"),
        "answers given without a modality that failed (timeout, breaker_open, error, ...)",
    ),
    Metric(
        "polyfuse_missing_modality_total", "counter", ("modality",), "answers without a modality"
    ),
    Metric(
        "polyfuse_av_offset_ms",
        "histogram",
        ("modality",),
        "absolute sound/picture offset of the videos predicted on",
    ),
    Metric(
        "polyfuse_av_desync_total",
        "counter",
        ("modality",),
        "videos whose sound is off their picture by the threshold or more",
    ),
    Metric("polyfuse_runtime_requests_requests", "gauge", (), "runtime requests (cumulative)"),
    Metric("polyfuse_runtime_requests_degraded", "gauge", (), "degraded answers (cumulative)"),
    Metric("polyfuse_runtime_requests_errors", "gauge", (), "runtime errors (cumulative)"),
    Metric("polyfuse_runtime_cache_hit_ratio", "gauge", (), "embedding cache hit ratio"),
    Metric("polyfuse_runtime_cache_hits", "gauge", (), "embedding cache hits (cumulative)"),
    Metric("polyfuse_runtime_cache_misses", "gauge", (), "embedding cache misses (cumulative)"),
    Metric("polyfuse_runtime_cache_entries", "gauge", (), "embeddings held by the cache"),
    Metric("polyfuse_runtime_cache_bytes", "gauge", (), "bytes held by the cache"),
    Metric("polyfuse_runtime_cache_evictions", "gauge", (), "cache evictions (cumulative)"),
    # the live drift monitor; ``modality`` is a modality or ``prediction`` (drift, p-value)
    _monitor("polyfuse_monitor_drift", ("modality",), "1 while the latest window is drifted"),
    _monitor("polyfuse_monitor_drift_score", ("modality",), "drift score of the latest window"),
    _monitor("polyfuse_monitor_p_value", ("modality",), "p-value of the latest window"),
    _monitor(
        "polyfuse_monitor_estimated_accuracy", (), "label-free accuracy estimate (after a window)"
    ),
    _monitor("polyfuse_monitor_reference_accuracy", (), "the estimate on the reference"),
    _monitor(
        "polyfuse_monitor_observed_accuracy",
        (),
        "accuracy from delayed labels (once enough arrived)",
    ),
    _monitor(
        "polyfuse_monitor_agreement_rate",
        (),
        "unimodal heads agreeing with the fusion (after a window)",
    ),
    _monitor("polyfuse_monitor_missing_rate", ("modality",), "window share without a modality"),
    _monitor("polyfuse_monitor_quarantined", ("modality",), "1 while a modality is quarantined"),
    _monitor("polyfuse_monitor_window_samples", (), "requests in the current window"),
    _monitor("polyfuse_monitor_windows", (), "windows assessed since the start"),
    Metric("polyfuse_feedback_total", "counter", ("outcome",), "delayed labels by outcome"),
    # human review (``--review``): judged answers, routed ones per reason, the queue
    Metric("polyfuse_review_judged_total", "counter", (), "answers the review router judged"),
    Metric(
        "polyfuse_review_routed_total",
        "counter",
        ("reason",),
        "answers routed to review by reason (predicted_error, low_confidence, "
        "contradiction, firewall, shadow_disagreement)",
    ),
    Metric("polyfuse_review_queued_total", "counter", (), "answers routed for any reason"),
    Metric(
        "polyfuse_review_reviewed_total",
        "counter",
        ("outcome",),
        "reviewers' labels (correct, wrong, unanswered: a blocked request)",
    ),
    Metric("polyfuse_review_store_errors_total", "counter", (), "failed review store calls"),
    Metric(
        "polyfuse_review_pending",
        "gauge",
        (),
        "items waiting for review (with Redis every replica reports the shared queue: max)",
    ),
    # several versions (``--canary``, ``--shadow``): per version, and the canary's state
    Metric("polyfuse_version_requests_total", "counter", _VERSION, "requests per version"),
    Metric("polyfuse_version_errors_total", "counter", (*_VERSION, "code"), "errors per version"),
    Metric("polyfuse_version_degraded_total", "counter", _VERSION, "degraded answers per version"),
    Metric("polyfuse_version_seconds", "histogram", _VERSION, "time to answer per version"),
    Metric(
        "polyfuse_version_compared_total",
        "counter",
        _VERSION,
        "shadow answers compared with the champion's for the same request",
    ),
    Metric(
        "polyfuse_version_agreed_total",
        "counter",
        _VERSION,
        "compared answers with the champion's label (agreement = agreed / compared)",
    ),
    Metric(
        "polyfuse_version_feedback_total",
        "counter",
        (*_VERSION, "outcome"),
        "delayed labels of each version's answers (correct, wrong)",
    ),
    _monitor("polyfuse_version_estimated_accuracy", _VERSION, "label-free estimate per version"),
    _monitor(
        "polyfuse_version_observed_accuracy", _VERSION, "delayed labels' accuracy per version"
    ),
    _monitor(
        "polyfuse_version_drift", (*_VERSION, "modality"), "1 while a version's window drifted"
    ),
    Metric("polyfuse_canary_weight", "gauge", ("version",), "the canary's share of callers"),
    Metric(
        "polyfuse_canary_rolled_back",
        "gauge",
        ("version",),
        "1 once the canary was rolled back (PolyfuseCanaryRolledBack)",
    ),
    Metric(
        "polyfuse_canary_evidence",
        "gauge",
        ("version", "signal", "direction"),
        "the canary's mSPRT statistic over its threshold per signal (>= 1 decides)",
    ),
    Metric("polyfuse_canary_rollbacks_total", "counter", (), "canary rollbacks"),
    Metric(
        "polyfuse_shadow_dropped_total", "counter", ("version",), "shadow copies dropped (full)"
    ),
    Metric("polyfuse_shadow_queue_depth", "gauge", ("version",), "copies waiting for the shadow"),
)


@dataclass(frozen=True)
class RuntimeSeries:
    """A family of runtime gauges with a name part turned into labels by a recording rule.

    Attributes:
        record: the recorded series (``polyfuse:runtime_queue_depth``).
        pattern: regular expression over the exported names; its groups are the labels.
        labels: label name of each group, in order.
        help: what it measures.
    """

    record: str
    pattern: str
    labels: tuple[str, ...]
    help: str


_BATCHER = "polyfuse_runtime_(?:batchers_)?(.+)"

#: Runtime gauges normalised into labelled series. ``batcher`` is an encoder's modality,
#: ``fusion``, or ``preprocess_<modality>``.
RUNTIME_SERIES: tuple[RuntimeSeries, ...] = (
    RuntimeSeries(
        "polyfuse:runtime_queue_depth", f"{_BATCHER}_queue_depth", ("batcher",), "queued items"
    ),
    RuntimeSeries(
        "polyfuse:runtime_in_flight", f"{_BATCHER}_in_flight", ("batcher",), "items in a batch"
    ),
    RuntimeSeries(
        "polyfuse:runtime_batches", f"{_BATCHER}_batches", ("batcher",), "batches (cumulative)"
    ),
    RuntimeSeries(
        "polyfuse:runtime_batch_items", f"{_BATCHER}_items", ("batcher",), "items (cumulative)"
    ),
    RuntimeSeries(
        "polyfuse:runtime_rejected", f"{_BATCHER}_rejected", ("batcher",), "items refused (full)"
    ),
    RuntimeSeries(
        "polyfuse:runtime_batch_ms", f"{_BATCHER}_mean_batch_ms", ("batcher",), "mean batch time"
    ),
    RuntimeSeries(
        "polyfuse:runtime_batch_sizes",
        f"{_BATCHER}_batch_sizes_([0-9]+)",
        ("batcher", "size"),
        "batches of each size (cumulative)",
    ),
    RuntimeSeries(
        "polyfuse:runtime_breaker_state",
        "polyfuse_runtime_breakers_(.+)_state",
        ("modality",),
        "1 for the breaker's current state (closed, open, half_open)",
    ),
    RuntimeSeries(
        "polyfuse:runtime_breaker_opens",
        "polyfuse_runtime_breakers_(.+)_opens",
        ("modality",),
        "times the breaker opened (cumulative)",
    ),
)

#: Recorded latency quantiles: record name -> (histogram, labels kept).
LATENCY_QUANTILES: dict[str, tuple[str, tuple[str, ...]]] = {
    "polyfuse:request_seconds:p99_rate5m": ("polyfuse_request_seconds", ("route",)),
    "polyfuse:stage_seconds:p99_rate5m": ("polyfuse_stage_seconds", ("route", "stage")),
}

#: Series the SLO recording rules write (``slo`` label: the objective's name).
SLO_SERIES: tuple[str, ...] = (
    "polyfuse_slo:objective",  # the target, with a ``window`` label
    "polyfuse_slo:bad",  # 1 while a threshold objective (drift, accuracy) is violated
    "polyfuse_slo:sli_error:ratio_period",  # the error ratio over the objective's window
    "polyfuse_slo:sli_error:ratio_rate5m",
    "polyfuse_slo:sli_error:ratio_rate30m",
    "polyfuse_slo:sli_error:ratio_rate1h",
    "polyfuse_slo:sli_error:ratio_rate6h",
    "polyfuse_slo:sli_error:ratio_rate3d",
)


def metric_names() -> frozenset[str]:
    """Every raw series name of `METRICS`."""
    return frozenset(s for m in METRICS for s in m.series)


def recorded_names() -> frozenset[str]:
    """Every series name the generated recording rules write."""
    return frozenset([*(r.record for r in RUNTIME_SERIES), *LATENCY_QUANTILES, *SLO_SERIES])
