"""Human review over HTTP: the queue (``GET /v1/review``), one item and its stored inputs,
and the review metrics. Labels arrive through ``POST /v1/feedback``
(`polyfuse.serve.http.monitoring`), which resolves the item and feeds the drift monitor.

Every route here sits behind the API keys like the other non-public routes (the queue
holds answers and, with ``--review-inputs``, redacted inputs). Without ``--review`` they
answer 404 ``not_found`` naming the flag.

Metrics (`polyfuse.ops.catalogue`): counters ``polyfuse_review_judged_total``,
``polyfuse_review_routed_total{reason}``, ``polyfuse_review_queued_total``,
``polyfuse_review_reviewed_total{outcome}``, ``polyfuse_review_store_errors_total`` and
the gauge ``polyfuse_review_pending`` (items waiting in the store: with Redis every replica
reports the same queue, so take the max, not the sum).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from polyfuse.core.errors import ConfigError
from polyfuse.serve.config import ServeConfig
from polyfuse.serve.review.queue import OUTCOMES, ReviewQueue
from polyfuse.serve.review.routing import REASONS
from polyfuse.serve.review.store import ReviewItem
from polyfuse.serve.types import Runtime, ServeError

#: Sniffed input format -> the media type its stored content is served with.
MEDIA_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
    "webp": "image/webp",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "mp3": "audio/mpeg",
    "pdf": "application/pdf",
    "text": "text/plain; charset=utf-8",
}
_INPUT_HEADERS = {
    # content a client uploaded: never run, never framed, never cached
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def open_queue(runtime: Runtime, config: ServeConfig) -> ReviewQueue | None:
    """The review queue ``config`` asks for (None: review off). Calibration and the error
    model are fitted on the artifact's reference profile when the runtime monitors it
    (`Router.of_profile`, the router the benchmark measures)."""
    if config.review is None:
        return None
    from polyfuse.monitor.outputs import Outputs
    from polyfuse.serve.review.routing import Router, RoutingPolicy
    from polyfuse.serve.review.store import open_store

    policy = RoutingPolicy(
        config.review_share,
        config.review_window,
        config.review_threshold,
        config.review_contradiction,
        tuple(config.review_reasons),
    )
    info = runtime.info()
    live = runtime.live_monitor()
    if live is not None:
        router = Router.of_profile(policy, live.profile, live.profile.observations.outputs)
    else:
        multilabel = info.get("task") == "multilabel"
        outputs = Outputs(multilabel, float(info.get("threshold", 0.5)))
        router = Router.of_profile(policy, None, outputs)
    return ReviewQueue(
        router,
        open_store(config.review),
        info.get("labels", []),
        keep_inputs=config.review_inputs,
    )


class ReviewCollector(Collector):
    """The queue's counts as Prometheus families, read when Prometheus scrapes (every
    reason and outcome is exported from the start, at 0)."""

    def __init__(self, queue: ReviewQueue) -> None:
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        """The review families."""
        counts = self.queue.snapshot()
        yield CounterMetricFamily(
            "polyfuse_review_judged", "answers the review router judged", value=counts.judged
        )
        routed = CounterMetricFamily(
            "polyfuse_review_routed", "answers routed to review, by reason", labels=["reason"]
        )
        for reason in REASONS:
            routed.add_metric([reason], counts.routed.get(reason, 0))
        yield routed
        yield CounterMetricFamily(
            "polyfuse_review_queued", "answers routed for any reason", value=counts.queued
        )
        reviewed = CounterMetricFamily(
            "polyfuse_review_reviewed", "reviewers' labels by outcome", labels=["outcome"]
        )
        for outcome in OUTCOMES:
            reviewed.add_metric([outcome], counts.reviewed.get(outcome, 0))
        yield reviewed
        yield CounterMetricFamily(
            "polyfuse_review_store_errors", "review store calls that failed", value=counts.errors
        )
        pending = self.queue.pending()
        if pending is not None:
            yield GaugeMetricFamily(
                "polyfuse_review_pending", "items waiting for review", value=pending
            )


def add_review_routes(app: FastAPI, queue: ReviewQueue | None, registry: CollectorRegistry) -> None:
    """``GET /v1/review``, ``GET /v1/review/{request_id}`` and its inputs, and the metrics."""
    if queue is not None:
        registry.register(ReviewCollector(queue))

    def served() -> ReviewQueue:
        if queue is None:
            raise ServeError(
                "not_found",
                "human review is off",
                hint="start the server with --review sqlite:///path/review.db",
            )
        return queue

    @app.get("/v1/review", tags=["v1"])
    async def review_list(request: Request) -> dict[str, Any]:
        """Items of the review queue, oldest first: ``?status=pending`` (or ``reviewed``),
        ``?reason=`` one of the routing reasons, ``?offset=0&limit=50`` (at most 500)."""
        import asyncio

        q = served()
        params = request.query_params
        status = params.get("status", "pending")
        reason = params.get("reason") or None
        offset = _int(params.get("offset"), 0, "offset")
        limit = _int(params.get("limit"), 50, "limit")
        try:
            items = await asyncio.to_thread(q.store.items, status, reason, offset, limit)  # type: ignore[arg-type]
            total = await asyncio.to_thread(q.store.count, status, reason)  # type: ignore[arg-type]
        except ConfigError as exc:
            raise ServeError("invalid_input", exc.message, hint=exc.hint) from None
        end = offset + len(items)
        return {
            "status": status,
            "reason": reason,
            "offset": offset,
            "limit": limit,
            "total": total,
            "next_offset": end if end < total else None,
            "items": [_listed(item) for item in items],
        }

    @app.get("/v1/review/{request_id}", tags=["v1"])
    async def review_item(request_id: str) -> dict[str, Any]:
        """One item of the queue (pending or reviewed)."""
        import asyncio

        item = await asyncio.to_thread(served().store.get, request_id)
        if item is None:
            raise ServeError("not_found", "no review item for this request id")
        return _listed(item)

    @app.get("/v1/review/{request_id}/inputs/{modality}", tags=["v1"])
    async def review_input(request_id: str, modality: str) -> Response:
        """The stored input of an item (as the firewall left it; ``--review-inputs``)."""
        import asyncio

        q = served()
        item = await asyncio.to_thread(q.store.get, request_id)
        data = None
        if item is not None:
            data = await asyncio.to_thread(q.store.payload, request_id, modality)
        if item is None or data is None or modality not in item.inputs:
            raise ServeError(
                "not_found",
                "no stored input for this request and modality",
                hint="inputs are kept only with --review-inputs, never for blocked requests",
            )
        media = MEDIA_TYPES.get(item.inputs[modality].format or "", "application/octet-stream")
        return Response(data, media_type=media, headers=_INPUT_HEADERS)


def _listed(item: ReviewItem) -> dict[str, Any]:
    """An item as the API lists it: stored inputs carry the URL of their content."""
    out = item.to_dict()
    for m, value in out["inputs"].items():
        if value["stored"]:
            value["url"] = f"/v1/review/{item.request_id}/inputs/{m}"
    return out


def _int(text: str | None, default: int, name: str) -> int:
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ServeError("invalid_input", f"?{name}= must be an integer") from None
