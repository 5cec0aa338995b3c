"""Drift monitoring over HTTP: the live state as Prometheus gauges, delayed labels
(``POST /v1/feedback``, which also resolves human-review items), the state as JSON
(``GET /v1/monitor``) and the operator's hand on quarantine (``POST /v1/monitor/quarantine``
and ``/v1/monitor/lift``).

Gauges (``modality`` is a modality name; ``prediction`` for the output-level decision):
``polyfuse_monitor_drift``, ``polyfuse_monitor_drift_score``, ``polyfuse_monitor_p_value``
{modality}; ``polyfuse_monitor_missing_rate``, ``polyfuse_monitor_quarantined``
{modality}; ``polyfuse_monitor_estimated_accuracy``,
``polyfuse_monitor_reference_accuracy``, ``polyfuse_monitor_agreement_rate``,
``polyfuse_monitor_window_samples``, ``polyfuse_monitor_windows``; counter
``polyfuse_feedback_total{outcome}`` (``correct`` / ``wrong`` / ``unknown``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from polyfuse.monitor.live import LiveMonitor
from polyfuse.serve.review.queue import ReviewQueue, outcome_of
from polyfuse.serve.types import Runtime, ServeError
from polyfuse.serve.versions.runtime import VersionedRuntime


class MonitorCollector(Collector):
    """The live monitor's state as gauges, read when Prometheus scrapes."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        """One family per gauge; nothing when monitoring is off."""
        live = self.runtime.live_monitor()
        if live is None:
            return
        state = live.state()
        per = {
            "drift": ("1 while the latest window drifted", lambda s: float(s.drift)),
            "drift_score": ("effect size of the latest window", lambda s: s.score),
            "p_value": ("p-value of the latest window", lambda s: s.p_value),
        }
        for name, (doc, read) in per.items():
            family = GaugeMetricFamily(f"polyfuse_monitor_{name}", doc, labels=["modality"])
            for m, s in state.modalities.items():
                family.add_metric([m], read(s))
            if name == "drift":
                family.add_metric(["prediction"], float(state.prediction_drift))
            elif name == "p_value":
                family.add_metric(["prediction"], state.prediction_p_value)
            yield family
        missing = GaugeMetricFamily(
            "polyfuse_monitor_missing_rate", "share of the window without it", labels=["modality"]
        )
        quarantined = GaugeMetricFamily(
            "polyfuse_monitor_quarantined", "1 while quarantined", labels=["modality"]
        )
        for m, s in state.modalities.items():
            missing.add_metric([m], s.missing_rate)
            quarantined.add_metric([m], float(s.quarantined))
        yield missing
        yield quarantined
        plain = {
            "estimated_accuracy": ("label-free accuracy estimate", state.estimated_accuracy),
            "reference_accuracy": ("the estimate on the reference", state.reference_accuracy),
            "agreement_rate": ("unimodal heads agree with the fusion", state.agreement_rate),
            "observed_accuracy": ("accuracy from delayed labels", state.observed_accuracy),
            "window_samples": ("requests in the current window", float(state.samples)),
            "windows": ("windows assessed", float(state.windows)),
        }
        for name, (doc, value) in plain.items():
            if value is not None:
                yield GaugeMetricFamily(f"polyfuse_monitor_{name}", doc, value=float(value))


def add_monitor_routes(
    app: FastAPI,
    runtime: Runtime,
    registry: CollectorRegistry,
    review: ReviewQueue | None = None,
    versions: VersionedRuntime | None = None,
) -> None:
    """The monitoring routes and metrics of an app (``review``: the human-review queue
    that ``POST /v1/feedback`` resolves items of, if any; ``versions``: the runtime when
    it serves several versions, which routes each label to the version that answered)."""
    registry.register(MonitorCollector(runtime))
    feedback_total = Counter(
        "polyfuse_feedback", "delayed labels by outcome", ["outcome"], registry=registry
    )

    def live() -> LiveMonitor:
        monitor = runtime.live_monitor()
        if monitor is None:
            raise ServeError(
                "not_found",
                "drift monitoring is off",
                hint="serve an artifact trained by this polyfuse (it holds a reference "
                "profile) without --no-monitor",
            )
        return monitor

    @app.post("/v1/feedback", tags=["v1"])
    async def feedback(request: Request) -> dict[str, Any]:
        """A delayed label for a served request: ``{"request_id": ..., "label": ...,
        "reviewer": ...}`` (for a multi-label model, ``label`` lists the sample's labels,
        possibly none; ``reviewer`` is optional and defaults to the caller's key id). The
        drift monitor counts it, and it replaces the estimate of its window once enough
        arrive; a request queued for human review (``--review``) is resolved with it."""
        monitor = runtime.live_monitor()
        if monitor is None and review is None and versions is None:
            raise ServeError(
                "not_found",
                "neither drift monitoring nor human review is on",
                hint="serve an artifact trained by this polyfuse (it holds a reference "
                "profile) without --no-monitor, or start the server with --review",
            )
        body = await _json(request)
        rid = body.get("request_id")
        labels = [str(x) for x in runtime.info().get("labels", [])]
        multilabel = monitor.multilabel if monitor else runtime.info().get("task") == "multilabel"
        given, truth = _label(body, labels, multilabel)
        if not isinstance(rid, str):
            raise ServeError("invalid_input", 'expected {"request_id": str, "label": ...}')
        if versions is not None:
            outcome = versions.feedback(rid, given, truth)
        else:
            outcome = "unknown" if monitor is None else monitor.feedback(rid, truth)
        answer: dict[str, Any] = {"request_id": rid}
        if review is not None:
            reviewer = _reviewer(body, request)
            item = await review.resolve(rid, given, reviewer)
            if outcome == "unknown" and item is not None and item.prediction is not None:
                outcome = outcome_of(item, given)  # another replica (or a restart) answered it
            answer["reviewed"] = item is not None
        feedback_total.labels(outcome).inc()
        return {**answer, "known": outcome != "unknown", "outcome": outcome}

    @app.get("/v1/monitor", tags=["v1"])
    async def monitor_state() -> dict[str, Any]:
        """The live drift state: per modality drift, p-value, missing rate, quarantine;
        the accuracy estimate and feedback counts."""
        return live().state().to_dict()

    async def modality_of(request: Request) -> str:
        body = await _json(request)
        modality = body.get("modality")
        if not isinstance(modality, str) or modality not in runtime.modalities:
            raise ServeError(
                "invalid_input",
                'expected {"modality": NAME}',
                hint=f"one of {', '.join(runtime.modalities)}",
            )
        return modality

    @app.post("/v1/monitor/lift", tags=["v1"])
    async def lift(request: Request) -> dict[str, Any]:
        """Lift a modality's quarantine by hand: ``{"modality": NAME}``."""
        monitor = live()
        modality = await modality_of(request)
        return {"modality": modality, "lifted": monitor.lift(modality)}

    @app.post("/v1/monitor/quarantine", tags=["v1"])
    async def quarantine(request: Request) -> dict[str, Any]:
        """Quarantine a modality by hand (the fusion stops seeing it until lifted, or until
        its inputs have stayed clear of drift): ``{"modality": NAME}``."""
        monitor = live()
        modality = await modality_of(request)
        return {"modality": modality, "quarantined": monitor.quarantine(modality)}


def _label(
    body: dict[str, Any], labels: list[str], multilabel: bool
) -> tuple[str | list[str], int | list[int]]:
    """The label as given (a list for a multi-label model) and as indices."""
    from polyfuse.heads.tasks import MultilabelTask

    label = body.get("label")
    if multilabel:
        given = [] if label is None else MultilabelTask.split(label)
        bad = [g for g in given if g not in labels]
        if "label" not in body or bad:
            raise ServeError(
                "invalid_input",
                'expected {"request_id": str, "label": [the model\'s labels of the sample]}'
                + (f"; unknown labels: {', '.join(bad[:5])}" if bad else ""),
                hint=f"labels: {', '.join(labels[:20])}",
            )
        return given, [labels.index(g) for g in given]
    if label is None or str(label) not in labels:
        raise ServeError(
            "invalid_input",
            'expected {"request_id": str, "label": one of the model\'s labels}',
            hint=f"labels: {', '.join(labels[:20])}",
        )
    return str(label), labels.index(str(label))


def _reviewer(body: dict[str, Any], request: Request) -> str | None:
    """Who labelled: the body's ``reviewer``, else the caller's key id."""
    reviewer = body.get("reviewer")
    if reviewer is None:
        key_id = request.scope.get("state", {}).get("key_id")
        return None if key_id is None else str(key_id)
    if not isinstance(reviewer, str) or not 0 < len(reviewer) <= 200:
        raise ServeError("invalid_input", '"reviewer" must be a string of 1 to 200 characters')
    return reviewer


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ServeError("invalid_input", "the body must be a JSON object")
    return body
