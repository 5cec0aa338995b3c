"""The HTTP layer: a FastAPI app over a `Runtime`.

Each request goes ``parse -> validate -> firewall -> runtime -> JSON``. Every failure
is a typed JSON error ``{"error": {"code", "message", "hint", "request_id"}}`` with the
status of its code (`polyfuse.serve.types.ERROR_STATUS`); Open Inference Protocol
routes (``/v2/...``) answer ``{"error": MESSAGE, "code", "request_id"}`` as that
protocol's clients expect.

Middleware, outermost first: request context (request id, latency metrics, access log,
error rendering) -> CORS -> API keys and rate limits -> body size limit -> routes.

This module is the app factory and the v1 routes; the other concerns live beside it:
`middleware` (request context, body limit, error rendering), `service` (the request
pipeline), `inputs` (request parsing), `oip` (the v2 routes), `docs` (offline /docs),
`process` (heap freezing, malloc arenas). `oip` depends on `service` and `inputs`
only, so the old app <-> oip import cycle is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from polyfuse import __version__
from polyfuse.serve.config import ServeConfig
from polyfuse.serve.http.auth import PUBLIC_PATHS, AuthMiddleware, KeyStore, RateLimiter
from polyfuse.serve.http.docs import DOCS_PATHS, add_docs_routes
from polyfuse.serve.http.inputs import b64decode, context, read_inputs
from polyfuse.serve.http.metrics import (
    Metrics,
    RequestLog,
    Tracer,
)
from polyfuse.serve.http.middleware import (
    BodyLimitMiddleware,
    RequestContextMiddleware,
    code_of_status,
    error_response,
)
from polyfuse.serve.http.monitoring import add_monitor_routes
from polyfuse.serve.http.oip import oip_router
from polyfuse.serve.http.process import freeze_heap, limit_malloc_arenas
from polyfuse.serve.http.review import add_review_routes, open_queue
from polyfuse.serve.http.service import Context, Inputs, Service, model_info
from polyfuse.serve.http.versions import add_versions_routes
from polyfuse.serve.http.web import WEB_PATHS, add_web_routes
from polyfuse.serve.review.queue import ReviewQueue
from polyfuse.serve.runtime.align import MAX_BEAM, MAX_K, AlignServices
from polyfuse.serve.types import Runtime, ServeError
from polyfuse.serve.versions.runtime import VersionedRuntime

if TYPE_CHECKING:  # the guard is imported only when a policy is set
    from polyfuse.guard.engine import Guard


# ------------------------------------------------------------------ app
_INPUT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "description": "one part per modality: a file, or a text field",
                    "additionalProperties": {"type": "string", "format": "binary"},
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "inputs": {
                            "type": "object",
                            "description": 'modality -> text, or {"base64": "..."} for files',
                            "additionalProperties": {
                                "oneOf": [
                                    {"type": "string"},
                                    {
                                        "type": "object",
                                        "properties": {"base64": {"type": "string"}},
                                        "required": ["base64"],
                                    },
                                ]
                            },
                        }
                    },
                }
            },
        },
    },
    "parameters": [
        {
            "name": "modalities",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "comma list: use only these modalities",
        },
    ],
}


def create_app(
    runtime: Runtime,
    config: ServeConfig | None = None,
    *,
    guard: Guard | None = None,
    align: AlignServices | None = None,
    review: ReviewQueue | None = None,
) -> FastAPI:
    """The FastAPI app serving ``runtime``.

    Args:
        runtime: the model runtime (anything that implements `Runtime`).
        config: settings (default `ServeConfig()`).
        guard: a `polyfuse.guard.engine.Guard`; default: built from ``config.policy``
            when set, else no firewall.
        align: alignment / index / captioning artifacts for ``/v1/search``,
            ``/v1/consistency`` and ``/v1/caption`` (`AlignServices.load`); without
            them those routes answer 404 ``not_found`` naming the flag to pass.
        review: the human-review queue; default: opened from ``config.review`` when set
            (`polyfuse.serve.http.review.open_queue`), else no review.
    """
    config = config or ServeConfig()
    if guard is None and config.policy is not None:
        from polyfuse.guard.engine import Guard
        from polyfuse.guard.policy import Policy

        guard = Guard(Policy.load(config.policy), audit=config.audit)
    if review is None:
        review = open_queue(runtime, config)
    metrics = Metrics(runtime.stats)
    versions = runtime if isinstance(runtime, VersionedRuntime) else None
    service = Service(
        runtime,
        config,
        guard=guard,
        metrics=metrics,
        tracer=Tracer(config.otel),
        request_log=RequestLog(config.request_log) if config.request_log else None,
        align=align,
        review=review,
        versions=versions,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if config.malloc_arenas is not None:
            limit_malloc_arenas(config.malloc_arenas)
        warm = asyncio.create_task(service.warm_guard())
        if config.gc_freeze:
            freeze_heap()
            warm.add_done_callback(lambda _: freeze_heap())  # the firewall's models too
        try:
            yield
        finally:
            warm.cancel()
            await service.close()
            if config.gc_freeze:
                gc.unfreeze()  # what the app held can be collected again

    app = FastAPI(
        title="polyfuse",
        version=__version__,
        description="Multimodal predictions with a firewall in front.",
        lifespan=lifespan,
        docs_url=None,  # served from the package by add_docs_routes (offline)
        redoc_url=None,
        # polyfuse's own spans (`config.otel`) are the app's tracing; FastAPI's built-in
        # telemetry looked up OpenTelemetry providers in the environment on every
        # request (5 % of the event loop's time in a profile at saturation)
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.service = service
    app.state.metrics = metrics
    _add_v1_routes(app, service)
    add_monitor_routes(app, runtime, metrics.registry, review, versions)
    add_versions_routes(app, versions, config, metrics.registry)
    add_review_routes(app, review, metrics.registry)
    app.include_router(oip_router(service, config.model_name))
    add_web_routes(app)
    add_docs_routes(app)
    _add_error_handlers(app)
    app.add_middleware(HotRoutes, routes=_hot_routes(app))
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_request_bytes)
    app.add_middleware(
        AuthMiddleware,
        keys=KeyStore(config.api_key_hashes),
        limiter=RateLimiter(config.rate_limit, config.rate_burst, limits=config.key_limits),
        insecure=config.insecure,
        public=PUBLIC_PATHS | WEB_PATHS | DOCS_PATHS,
    )
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=[
                "Authorization",
                "X-API-Key",
                "Content-Type",
                "X-Request-ID",
                "X-Request-Timeout",
                "X-Polyfuse-Route",
            ],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app


async def predict_endpoint(request: Request) -> Response:
    """``POST /v1/predict`` (the FastAPI route and `HotRoutes` both call this)."""
    service: Service = request.app.state.service
    ctx = context(request, "/v1/predict")
    inputs = await read_inputs(request, service.config)
    result = await service.predict(inputs, ctx)
    # JSON types only: FastAPI's validating serializer would re-walk the whole body
    return JSONResponse(result.to_dict())


class HotRoutes:
    """Sends the requests of a few busy routes (``POST /v1/predict``) straight to their
    endpoint function, past Starlette's exception middleware, router and FastAPI's
    request handler (dependency solving, response validation): those layers were a
    quarter of the event loop's time per request in a profile of the server at
    saturation. It sits inside the request-id, auth and body-limit middlewares, so
    those still apply; the route stays registered with FastAPI (OpenAPI docs, other
    methods, a ``root_path`` prefix) and its errors render as everywhere else (a
    `ServeError` reaches `RequestContextMiddleware`).

    Args:
        app: the rest of the stack.
        routes: ``(method, path) -> (route, endpoint)``; ``route`` labels the metrics.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Mapping[tuple[str, str], tuple[Any, Callable[[Request], Awaitable[Response]]]],
    ) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hit = self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if hit is None:
            await self.app(scope, receive, send)
            return
        route, endpoint = hit
        scope["route"] = route
        response = await endpoint(Request(scope, receive))
        await response(scope, receive, send)


def _hot_routes(
    app: FastAPI,
) -> dict[tuple[str, str], tuple[Any, Callable[[Request], Awaitable[Response]]]]:
    """The `HotRoutes` table: FastAPI's route objects of the hot paths, with their
    endpoint functions."""
    hot = {"/v1/predict": predict_endpoint}
    table: dict[tuple[str, str], tuple[Any, Callable[[Request], Awaitable[Response]]]] = {}
    for route in app.routes:
        path = getattr(route, "path", None)
        if path in hot and "POST" in getattr(route, "methods", ()):
            table["POST", path] = (route, hot[path])
    return table


def _add_v1_routes(app: FastAPI, service: Service) -> None:
    @app.post(
        "/v1/predict",
        tags=["v1"],
        openapi_extra=_INPUT_BODY,
        response_model=dict[str, Any],  # the schema; the body is encoded here
    )
    async def predict(request: Request) -> Response:
        """Predict from one or more modalities (multipart files or JSON with base64)."""
        return await predict_endpoint(request)

    @app.post("/v1/embed", tags=["v1"], openapi_extra=_INPUT_BODY)
    async def embed(request: Request) -> dict[str, Any]:
        """Per-modality embeddings in the shared space."""
        ctx = context(request, "/v1/embed")
        return await service.embed(await read_inputs(request, service.config), ctx)

    @app.post("/v1/scan", tags=["v1"], openapi_extra=_INPUT_BODY)
    async def scan(request: Request) -> dict[str, Any]:
        """Firewall verdicts (PII, prompt injection, hidden text); no model is run."""
        ctx = context(request, "/v1/scan")
        return await service.scan(await read_inputs(request, service.config), ctx)

    @app.get("/v1/info", tags=["v1"])
    async def info() -> dict[str, Any]:
        """The model: name, version, modalities, labels, task and input contracts."""
        data = service.runtime.info()
        keys = ("name", "version", "modalities", "labels", "task", "contracts")
        out = {k: data[k] for k in keys if k in data}
        if service.scans_outputs and "labels" in out:
            names = await service.labels()
            out["labels"] = [names.name(str(label)) for label in out["labels"]]
        out["routes"] = ["predict", "embed", *(service.align.routes if service.align else ())]
        if service.guard is not None:
            out["routes"].append("scan")
        if service.align is not None:
            out["alignment"] = service.align.info()
        return out

    @app.post("/v1/search", tags=["v1"], openapi_extra=_query_body("k", 10, MAX_K))
    async def search(request: Request) -> dict[str, Any]:
        """The nearest items of the other modality in the index (``--index DIR``): send
        one query (a text, or an image file); ``?k=`` results (default 10)."""
        service.served("search")
        ctx = context(request, "/v1/search")
        k = _int_param(request, "k", 10)
        inputs = await read_inputs(request, service.config)
        return await service.aligned("search", inputs, ctx, k=k)

    @app.post("/v1/consistency", tags=["v1"], openapi_extra=_INPUT_BODY)
    async def consistency(request: Request) -> dict[str, Any]:
        """Whether an (image, text) pair agrees (``--align DIR``): a score, the
        calibrated threshold, and ``contradiction`` when the score is below it."""
        service.served("consistency")
        ctx = context(request, "/v1/consistency")
        inputs = await read_inputs(request, service.config)
        return await service.aligned("consistency", inputs, ctx)

    @app.post("/v1/caption", tags=["v1"], openapi_extra=_query_body("beam", 3, MAX_BEAM))
    async def caption(request: Request) -> dict[str, Any]:
        """A caption of the uploaded image (``--caption DIR``); ``?beam=`` width (1:
        greedy)."""
        service.served("caption")
        ctx = context(request, "/v1/caption")
        beam = _int_param(request, "beam", 3)
        inputs = await read_inputs(request, service.config)
        return await service.aligned("caption", inputs, ctx, beam=beam)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> dict[str, Any]:
        """Readiness: models loaded and warmed up (503 ``unavailable`` before)."""
        if not service.ready():
            raise ServeError("unavailable", "not ready yet", hint="retry", retry_after=1.0)
        return {"status": "ready", "model": model_info(service.runtime)}

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus metrics of this app (and the runtime's stats)."""
        body = generate_latest(service.metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)


def _query_body(name: str, default: int, most: int) -> dict[str, Any]:
    """`_INPUT_BODY` plus one integer query parameter."""
    parameter = {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": most, "default": default},
    }
    return {**_INPUT_BODY, "parameters": [*_INPUT_BODY["parameters"], parameter]}


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ServeError(
            "invalid_input", f"query parameter {name} must be an integer, got {raw[:20]!r}"
        ) from None


def _add_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        code = "not_found" if status == 404 else code_of_status(status)
        message = "no such route" if status == 404 else str(getattr(exc, "detail", "error"))
        if status == 405:
            code, message = "invalid_input", "method not allowed on this route"
        err = ServeError(code, message, hint="see /docs for the routes")
        request.scope.setdefault("state", {})["error_code"] = code
        response = error_response(
            err,
            request.scope.get("state", {}).get("request_id"),
            oip=request.url.path.startswith("/v2"),
        )
        if status == 405:
            response.status_code = 405
        return response

    async def validation_error(request: Request, exc: Exception) -> Response:
        err = ServeError("invalid_input", "request does not match the route's parameters")
        return error_response(err, request.scope.get("state", {}).get("request_id"))

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


__all__ = [
    "Context",
    "Inputs",
    "Service",
    "b64decode",
    "context",
    "create_app",
    "error_response",
    "freeze_heap",
    "limit_malloc_arenas",
    "read_inputs",
]
