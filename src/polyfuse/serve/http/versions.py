"""Several versions over HTTP: ``GET /v1/versions`` (every version, the canary's judgement
and decisions), the operator's actions (``POST /v1/versions/promote``, ``/rollback``,
``/weight``; admin keys only) and the per-version metrics.

Metrics (`polyfuse.ops.catalogue`), labelled ``version`` (its name) and ``role``
(``champion``, ``canary``, ``shadow``, ``previous``):
counters ``polyfuse_version_requests_total``, ``polyfuse_version_errors_total{code}``,
``polyfuse_version_degraded_total``, ``polyfuse_version_compared_total`` /
``polyfuse_version_agreed_total`` (the shadow's answers against the champion's),
``polyfuse_version_feedback_total{outcome}``; histogram ``polyfuse_version_seconds``; gauges
``polyfuse_version_estimated_accuracy``, ``polyfuse_version_observed_accuracy`` and
``polyfuse_version_drift{modality}`` from each version's live monitor. The canary's:
``polyfuse_canary_weight``, ``polyfuse_canary_rolled_back`` (1 after an automatic or
operator rollback: the ``PolyfuseCanaryRolledBack`` alert), ``polyfuse_canary_evidence
{signal, direction}`` (the mSPRT statistic over its threshold: 1 or more decides) and the
counter ``polyfuse_canary_rollbacks_total``. The shadow's queue:
``polyfuse_shadow_dropped_total``, ``polyfuse_shadow_queue_depth``.

Admin routes: with API keys, only the keys given as admin keys (``--admin-keys FILE``) may
call them (403 otherwise, and always 403 when none are configured); without API keys
(loopback only) every local caller may.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.datastructures import Headers

from polyfuse.serve.config import ServeConfig
from polyfuse.serve.http.auth import KeyStore, presented_key
from polyfuse.serve.http.outputs import scrub
from polyfuse.serve.types import ServeError
from polyfuse.serve.versions.ledger import LATENCY_BOUNDS
from polyfuse.serve.versions.runtime import VersionedRuntime


class VersionsCollector(Collector):
    """The versions' counts and the canary's state, read when Prometheus scrapes."""

    def __init__(self, versions: VersionedRuntime) -> None:
        self.versions = versions

    def collect(self) -> Iterator[Metric]:
        """Every per-version, canary and shadow family."""
        yield from self._ledgers()
        yield from self._monitors()
        yield from self._canary()
        yield from self._shadow()

    def _ledgers(self) -> Iterator[Metric]:
        labels = ["version", "role"]
        requests = CounterMetricFamily(
            "polyfuse_version_requests", "requests per version", labels=labels
        )
        errors = CounterMetricFamily(
            "polyfuse_version_errors", "errors per version", labels=[*labels, "code"]
        )
        degraded = CounterMetricFamily(
            "polyfuse_version_degraded", "degraded answers per version", labels=labels
        )
        compared = CounterMetricFamily(
            "polyfuse_version_compared", "answers compared with the champion's", labels=labels
        )
        agreed = CounterMetricFamily(
            "polyfuse_version_agreed", "compared answers with the champion's label", labels=labels
        )
        feedback = CounterMetricFamily(
            "polyfuse_version_feedback", "delayed labels per version", labels=[*labels, "outcome"]
        )
        seconds = HistogramMetricFamily(
            "polyfuse_version_seconds", "time to answer per version", labels=labels
        )
        edges = [floatToGoString(b) for b in LATENCY_BOUNDS] + ["+Inf"]
        for v in self.versions.versions:
            ids, ledger = [v.name, v.role], v.ledger
            requests.add_metric(ids, ledger.requests)
            degraded.add_metric(ids, ledger.degraded)
            compared.add_metric(ids, ledger.compared)
            agreed.add_metric(ids, ledger.agreed)
            for code, n in ledger.errors.items():
                errors.add_metric([*ids, code], n)
            for outcome, n in ledger.feedback.items():
                feedback.add_metric([*ids, outcome], n)
            cumulative = list(itertools.accumulate(ledger.buckets))
            seconds.add_metric(ids, list(zip(edges, cumulative, strict=True)), ledger.seconds)
        yield from (requests, errors, degraded, compared, agreed, feedback, seconds)

    def _monitors(self) -> Iterator[Metric]:
        labels = ["version", "role"]
        estimated = GaugeMetricFamily(
            "polyfuse_version_estimated_accuracy", "label-free accuracy estimate", labels=labels
        )
        observed = GaugeMetricFamily(
            "polyfuse_version_observed_accuracy", "accuracy from delayed labels", labels=labels
        )
        drift = GaugeMetricFamily(
            "polyfuse_version_drift",
            "1 while the latest window drifted",
            labels=[*labels, "modality"],
        )
        for v in self.versions.versions:
            live = v.runtime.live_monitor()
            if live is None:
                continue
            state = live.state()
            if state.estimated_accuracy is not None:
                estimated.add_metric([v.name, v.role], state.estimated_accuracy)
            if state.observed_accuracy is not None:
                observed.add_metric([v.name, v.role], state.observed_accuracy)
            for m, s in state.modalities.items():
                drift.add_metric([v.name, v.role, m], float(s.drift))
        yield from (estimated, observed, drift)

    def _canary(self) -> Iterator[Metric]:
        versions = self.versions
        rollbacks = sum(1 for d in versions.decisions if d.action == "rollback")
        yield CounterMetricFamily(
            "polyfuse_canary_rollbacks", "canary rollbacks (automatic or by hand)", rollbacks
        )
        canary = versions.canary
        if canary is None:
            return
        weight = GaugeMetricFamily("polyfuse_canary_weight", "canary's share", labels=["version"])
        weight.add_metric([canary.name], versions.weight)
        rolled = GaugeMetricFamily(
            "polyfuse_canary_rolled_back", "1 once the canary was rolled back", labels=["version"]
        )
        rolled.add_metric([canary.name], float(versions.rolled_back))
        evidence = GaugeMetricFamily(
            "polyfuse_canary_evidence",
            "mSPRT statistic over its threshold (>= 1 decides)",
            labels=["version", "signal", "direction"],
        )
        for name, verdict in versions.judgement().verdicts.items():
            for direction in ("worse", "better"):
                value = getattr(verdict, direction) / verdict.threshold
                evidence.add_metric([canary.name, name, direction], value)
        yield from (weight, rolled, evidence)

    def _shadow(self) -> Iterator[Metric]:
        shadow = self.versions.shadow
        if shadow is None:
            return
        stats = self.versions.runner.stats()
        dropped = CounterMetricFamily(
            "polyfuse_shadow_dropped", "copies dropped (queue full)", labels=["version"]
        )
        dropped.add_metric([shadow.name], stats["dropped"])
        depth = GaugeMetricFamily(
            "polyfuse_shadow_queue_depth", "copies waiting for the shadow", labels=["version"]
        )
        depth.add_metric([shadow.name], stats["queue_depth"])
        yield from (dropped, depth)


def check_admin(request: Request, config: ServeConfig) -> None:
    """Refuse a caller that may not change versions (see the module docstring)."""
    if not config.auth_enabled:
        return  # loopback clients only: the auth middleware refused everyone else
    if not config.admin_key_hashes:
        raise ServeError(
            "forbidden",
            "changing versions needs an admin key and this server has none",
            hint="restart with --admin-keys FILE (keys that may promote and roll back)",
        )
    key = presented_key(Headers(scope=request.scope))
    if key is None or KeyStore(config.admin_key_hashes).identify(key) is None:
        raise ServeError("forbidden", "this key may not change versions", hint="use an admin key")


def add_versions_routes(
    app: FastAPI,
    versions: VersionedRuntime | None,
    config: ServeConfig,
    registry: CollectorRegistry,
) -> None:
    """``/v1/versions`` routes and, when several versions are served, their metrics."""
    if versions is not None:
        registry.register(VersionsCollector(versions))

    def served() -> VersionedRuntime:
        if versions is None:
            raise ServeError(
                "not_found",
                "this service serves one version",
                hint="start it with --canary CANDIDATE or --shadow CANDIDATE",
            )
        return versions

    @app.get("/v1/versions", tags=["v1"])
    async def list_versions() -> dict[str, Any]:
        """The versions served (names, roles, counts), the canary's weight and every
        signal's verdict, and the decisions taken so far."""
        if versions is None:
            info = app.state.service.runtime.info()
            return {"champion": info.get("name"), "canary": None, "shadow": None}
        state: dict[str, Any] = scrub(versions.state())  # a folder given by path: its name
        return state

    @app.post("/v1/versions/promote", tags=["v1"])
    async def promote(request: Request) -> dict[str, Any]:
        """Make the canary the champion (admin keys): refused unless the judge found it
        better, or the body says ``{"force": true}``. With registry versions served by
        alias, the alias moves too."""
        check_admin(request, config)
        body = await _body(request)
        force = body.get("force", False)
        if not isinstance(force, bool):
            raise ServeError("invalid_input", '"force" must be true or false')
        decision = await served().promote(force=force)
        return decision.to_dict()

    @app.post("/v1/versions/rollback", tags=["v1"])
    async def rollback(request: Request) -> dict[str, Any]:
        """Take the canary's traffic away (admin keys)."""
        check_admin(request, config)
        return served().rollback().to_dict()

    @app.post("/v1/versions/weight", tags=["v1"])
    async def weight(request: Request) -> dict[str, Any]:
        """Set the canary's share of callers: ``{"weight": 0.1}`` (admin keys). After a
        rollback a positive weight starts a fresh comparison."""
        check_admin(request, config)
        body = await _body(request)
        value = body.get("weight")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ServeError("invalid_input", 'expected {"weight": a number in [0, 1]}')
        return served().set_weight(float(value)).to_dict()


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object body ({} when empty)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    import json

    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ServeError("invalid_input", "the body must be a JSON object")
    return body
