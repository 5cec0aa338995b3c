"""Observability of the HTTP layer: Prometheus metrics (one registry per app), the
runtime's ``stats()`` as gauges at scrape time, OpenTelemetry spans per stage (off by
default, imported lazily) and the JSONL request log (hashes, never raw content).
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import itertools
import json
import math
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from polyfuse.core.errors import ConfigError, DependencyError

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RuntimeStatsCollector(Collector):
    """Exports ``stats()`` of the runtime as gauges when Prometheus scrapes.

    Nested keys join with ``_`` under ``polyfuse_runtime_``; numbers and booleans
    become values, a string becomes ``{state="VALUE"} 1`` (breaker states), lists are
    skipped. ``{"cache": {"hit_ratio": 0.5}}`` -> ``polyfuse_runtime_cache_hit_ratio 0.5``.
    """

    def __init__(self, stats: Callable[[], Mapping[str, Any]]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        """One gauge family per leaf of ``stats()``."""
        try:
            stats = self.stats()
        except Exception:  # a failing stats() must not break the scrape
            return
        for path, value in _leaves(stats, ()):
            name = "polyfuse_runtime_" + "_".join(_metric_name(p) for p in path)
            doc = "runtime stats: " + ".".join(path)
            if isinstance(value, str):
                family = GaugeMetricFamily(name, doc, labels=["state"])
                family.add_metric([value], 1.0)
            else:
                family = GaugeMetricFamily(name, doc, value=float(value))
            yield family


def _leaves(
    data: Mapping[str, Any], path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in data.items():
        here = (*path, str(key))
        if isinstance(value, Mapping):
            yield from _leaves(value, here)
        elif isinstance(value, bool | int | float) and math.isfinite(float(value)):
            yield here, float(value)
        elif isinstance(value, str):
            yield here, value


def _metric_name(part: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", part).strip("_").lower() or "x"


class LatencyHistogram(Collector):
    """A labelled Prometheus histogram whose ``observe`` is a bisect and two additions.

    prometheus_client's ``Histogram.observe`` checks, loops over the buckets in Python
    and takes a lock per bucket and for the sum; ten observations per request showed at
    7 % of the event loop's time in a profile at saturation. The exposition is the same
    (``NAME_bucket{..., le}``, ``NAME_count``, ``NAME_sum``).

    Args:
        name: metric name (without ``_bucket``/``_count``/``_sum``).
        documentation: help text.
        labelnames: label names, in the order `labels` takes their values.
        buckets: upper bounds in seconds, increasing (``+Inf`` is added).
        registry: where to register (None: nowhere).
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        buckets: Sequence[float] = LATENCY_BUCKETS,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if list(buckets) != sorted(buckets) or not buckets:
            raise ValueError(f"{name}: buckets must be increasing, got {buckets}")
        self.name, self.documentation = name, documentation
        self.labelnames = tuple(labelnames)
        self.bounds = tuple(float(b) for b in buckets)
        self._children: dict[tuple[str, ...], _Buckets] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def labels(self, *values: str) -> _Buckets:
        """The series of ``values`` (made on first use)."""
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
            with self._lock:
                child = self._children.setdefault(values, _Buckets(self.bounds))
        return child

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        """One family with every series' cumulative buckets, count and sum."""
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        edges = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        for values, child in list(self._children.items()):
            counts, total = child.snapshot()
            cumulative = list(itertools.accumulate(counts))
            family.add_metric(list(values), list(zip(edges, cumulative, strict=True)), total)
        yield family


class _Buckets:
    """One series of a `LatencyHistogram`."""

    __slots__ = ("_counts", "_lock", "_sum", "bounds")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, amount: float) -> None:
        """Count ``amount`` (seconds) in its bucket (``le``: bounds are inclusive)."""
        i = bisect.bisect_left(self.bounds, amount)
        with self._lock:
            self._counts[i] += 1
            self._sum += amount

    def snapshot(self) -> tuple[list[int], float]:
        """Per-bucket counts (not cumulative) and the sum, taken together."""
        with self._lock:
            return list(self._counts), self._sum


class Timed:
    """``with Timed(histogram):`` observes the seconds the block took. A class rather
    than a generator-based context manager: it runs several times per request."""

    __slots__ = ("histogram", "started")

    def __init__(self, histogram: _Buckets) -> None:
        self.histogram = histogram
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.histogram.observe(time.perf_counter() - self.started)


M = TypeVar("M", bound=Counter)


class Labelled(Generic[M]):
    """A labelled metric whose children are looked up once per label values:
    prometheus_client's ``labels()`` validates, converts and locks on every call, which
    showed at 5 % of the event loop's time in a profile at saturation."""

    def __init__(self, metric: M) -> None:
        self.metric: M = metric
        self._children: dict[tuple[str, ...], M] = {}

    def labels(self, *values: str) -> M:
        """The child of ``values`` (made by the metric on first use)."""
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


class Metrics:
    """The metrics of one app, in their own registry.

    Args:
        stats: the runtime's ``stats`` (exported at scrape time), or None.
    """

    def __init__(self, stats: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.latency = LatencyHistogram(
            "polyfuse_request_seconds", "request latency", ["route"], registry=r
        )
        self.stage = LatencyHistogram(
            "polyfuse_stage_seconds",
            "latency of one pipeline stage",
            ["route", "stage"],
            registry=r,
        )
        self.requests = Labelled(
            Counter(
                "polyfuse_requests",
                "requests by route and status",
                ["route", "status"],
                registry=r,
            )
        )
        self.errors = Labelled(
            Counter("polyfuse_errors", "errors by code", ["route", "code"], registry=r)
        )
        self.findings = Labelled(
            Counter(
                "polyfuse_firewall_findings", "firewall findings", ["type", "action"], registry=r
            )
        )
        self.output_findings = Labelled(
            Counter(
                "polyfuse_firewall_output_findings",
                "firewall findings in answers (captions, search results, labels)",
                ["type", "action"],
                registry=r,
            )
        )
        self.degraded = Labelled(
            Counter(
                "polyfuse_degraded",
                "degraded answers by modality and reason",
                ["modality", "reason"],
                registry=r,
            )
        )
        self.missing = Labelled(
            Counter(
                "polyfuse_missing_modality", "answers without a modality", ["modality"], registry=r
            )
        )
        self.av_offset = Histogram(
            "polyfuse_av_offset_ms",
            "absolute sound/picture offset of the videos predicted on",
            ["modality"],
            buckets=(20, 40, 80, 120, 200, 400, 800),
            registry=r,
        )
        self.av_desync = Labelled(
            Counter(
                "polyfuse_av_desync",
                "videos whose sound is off their picture by the threshold or more",
                ["modality"],
                registry=r,
            )
        )
        if stats is not None:
            r.register(RuntimeStatsCollector(stats))


class Tracer:
    """OpenTelemetry spans, or nothing: ``span(name)`` is a no-op for ``none``.

    Args:
        exporter: ``none``, ``console`` or ``otlp`` (the OTLP endpoint comes from the
            standard ``OTEL_EXPORTER_OTLP_*`` environment variables).
    """

    def __init__(self, exporter: str = "none") -> None:
        self.exporter = exporter
        self.provider: Any = None if exporter == "none" else _otel_provider(exporter)
        self._tracer = None if self.provider is None else self.provider.get_tracer("polyfuse")

    @property
    def enabled(self) -> bool:
        """Whether spans are recorded (an exporter is configured)."""
        return self._tracer is not None

    @contextlib.contextmanager
    def span(self, name: str, **attributes: str | int | float | bool) -> Iterator[None]:
        """A span around the block (attributes must not hold raw input)."""
        if self._tracer is None:
            yield
            return
        with self._tracer.start_as_current_span(name, attributes=attributes):
            yield

    def close(self) -> None:
        """Flush and stop the exporter."""
        if self.provider is not None:
            self.provider.shutdown()


def _otel_provider(exporter: str) -> Any:
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise DependencyError("opentelemetry-sdk", "--otel", "serve") from None
    if exporter == "console":
        # the stdout of now: the exporter's default is bound when opentelemetry is imported
        span_exporter: Any = ConsoleSpanExporter(out=sys.stdout)
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise DependencyError(
                "opentelemetry-exporter-otlp-proto-http", "--otel otlp", "otlp"
            ) from None
        span_exporter = OTLPSpanExporter()
    else:
        raise ConfigError("--otel", f"unknown exporter {exporter!r}", hint="none, console, otlp")
    provider = TracerProvider(resource=Resource.create({"service.name": "polyfuse"}))
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    return provider


def digest(value: bytes | str) -> dict[str, Any]:
    """What logs may say about one input: its SHA-256 and size."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def embedding_summary(vector: Sequence[float]) -> dict[str, Any]:
    """Dimension, L2 norm and mean of one embedding (never the vector itself)."""
    n = len(vector)
    return {
        "dim": n,
        "norm": round(math.sqrt(sum(v * v for v in vector)), 6),
        "mean": round(sum(vector) / n, 6) if n else 0.0,
    }


class RequestLog:
    """Appends one JSON line per answered request (thread-safe).

    Args:
        path: the JSONL file (parents are created).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, record: Mapping[str, Any]) -> None:
        """Append ``record`` with a ``ts`` (Unix seconds)."""
        line = json.dumps({"ts": round(time.time(), 3), **record}, default=str)
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
