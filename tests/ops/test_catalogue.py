"""The catalogue against the service's real metrics: same names, labels and buckets."""

from __future__ import annotations

import re

from prometheus_client import generate_latest
from prometheus_client.utils import floatToGoString

from polyfuse.ops.catalogue import (
    LATENCY_BUCKETS,
    METRICS,
    RUNTIME_SERIES,
    metric_names,
    recorded_names,
)
from polyfuse.serve.http.metrics import LATENCY_BUCKETS as SERVE_BUCKETS
from polyfuse.serve.http.metrics import Metrics


def test_latency_buckets_match_the_exposition() -> None:
    assert tuple(floatToGoString(b) for b in SERVE_BUCKETS) == LATENCY_BUCKETS


def test_every_http_metric_is_exported_with_its_labels() -> None:
    """Every labelled metric of `Metrics`, touched once, is in the catalogue and back."""
    metrics = Metrics()
    metrics.latency.labels("/v1/predict").observe(0.1)
    metrics.stage.labels("/v1/predict", "runtime").observe(0.1)
    metrics.requests.labels("/v1/predict", "200").inc()
    metrics.errors.labels("/v1/predict", "invalid_input").inc()
    metrics.findings.labels("EMAIL_ADDRESS", "redact").inc()
    metrics.output_findings.labels("EMAIL_ADDRESS", "redact").inc()
    metrics.degraded.labels("audio", "timeout").inc()
    metrics.missing.labels("audio").inc()
    metrics.av_offset.labels("video").observe(40)
    metrics.av_desync.labels("video").inc()
    text = generate_latest(metrics.registry).decode()
    exported = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    # not in `Metrics`: the runtime's stats, the drift monitor's and human review's collectors
    others = (
        "polyfuse_runtime",
        "polyfuse_monitor",
        "polyfuse_feedback",
        "polyfuse_review",
        "polyfuse_version",
        "polyfuse_canary",
        "polyfuse_shadow",
    )
    http = {m for m in METRICS if not m.name.startswith(others)}
    for metric in http:
        for series in metric.series:
            assert series in exported, series
        labels = re.search(rf"^{metric.series[0]}\{{([^}}]*)\}}", text, re.M)
        assert labels is not None
        names = {pair.split("=")[0] for pair in labels[1].split(",")} - {"le"}
        assert names == set(metric.labels), metric.name
    created = {s for s in exported if s.endswith("_created")}
    assert {s for s in exported - created if s.startswith("polyfuse_")} == {
        s for m in http for s in m.series
    }


def test_runtime_patterns_name_their_labels() -> None:
    for series in RUNTIME_SERIES:
        assert re.compile(series.pattern).groups == len(series.labels)
        assert series.record.startswith("polyfuse:runtime_")


def test_recorded_series_do_not_shadow_exported_ones() -> None:
    assert not recorded_names() & metric_names()
