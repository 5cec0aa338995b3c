"""`LatencyHistogram` exposes what prometheus_client's `Histogram` exposes."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from polyfuse.serve.http.metrics import LATENCY_BUCKETS, LatencyHistogram, Timed


def _samples(registry: CollectorRegistry) -> list[str]:
    """Exposition lines without comments and ``_created`` timestamps (ours has none)."""
    text = generate_latest(registry).decode()
    return sorted(
        line
        for line in text.splitlines()
        if line and not line.startswith("#") and "_created" not in line
    )


def test_exposition_equals_prometheus_clients_histogram() -> None:
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = LatencyHistogram("x_seconds", "doc", ["route", "stage"], registry=ours_registry)
    theirs = Histogram(
        "x_seconds", "doc", ["route", "stage"], buckets=LATENCY_BUCKETS, registry=theirs_registry
    )
    # on a bound (le is inclusive), between bounds, above the last one, zero
    values = [0.0, 0.005, 0.0051, 0.03, 0.25, 0.2500001, 7.0, 30.0, 31.0, 1e9]
    for i, v in enumerate(values):
        labels = ("/v1/predict", "runtime") if i % 3 else ("/v1/embed", "validate")
        ours.labels(*labels).observe(v)
        theirs.labels(*labels).observe(v)
    assert _samples(ours_registry) == _samples(theirs_registry)
    assert any('le="+Inf"' in line for line in _samples(ours_registry))


def test_labels_are_checked_and_series_reused() -> None:
    h = LatencyHistogram("y_seconds", "doc", ["route"])
    assert h.labels("a") is h.labels("a")
    with pytest.raises(ValueError, match="takes labels"):
        h.labels("a", "b")
    with pytest.raises(ValueError, match="increasing"):
        LatencyHistogram("z_seconds", "doc", [], buckets=(1.0, 0.5))


def test_timed_observes_the_blocks_seconds() -> None:
    registry = CollectorRegistry()
    h = LatencyHistogram("t_seconds", "doc", ["stage"], registry=registry)
    with Timed(h.labels("sleep")):
        time.sleep(0.02)
    counts, total = h.labels("sleep").snapshot()
    assert sum(counts) == 1 and 0.02 <= total < 1.0
    assert 't_seconds_bucket{le="0.01",stage="sleep"} 0.0' in _samples(registry)
    assert 't_seconds_bucket{le="0.05",stage="sleep"} 1.0' in _samples(registry)
