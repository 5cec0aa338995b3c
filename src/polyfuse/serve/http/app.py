"""The HTTP layer: a FastAPI app over a `Runtime`.

Each request goes ``parse -> validate -> firewall -> runtime -> JSON``. Every failure
is a typed JSON error ``{"error": {"code", "message", "hint", "request_id"}}`` with the
status of its code (`polyfuse.serve.types.ERROR_STATUS`); Open Inference Protocol
routes (``/v2/...``) answer ``{"error": MESSAGE, "code", "request_id"}`` as that
protocol's clients expect.

Middleware, outermost first: request context (request id, latency metrics, access log,
error rendering) -> CORS -> API keys and rate limits -> body size limit -> routes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import gc
import itertools
import json
import logging
import math
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from polyfuse import __version__
from polyfuse.guard.findings import ACTIONS, Action
from polyfuse.serve.config import ServeConfig
from polyfuse.serve.http.auth import PUBLIC_PATHS, AuthMiddleware, KeyStore, RateLimiter
from polyfuse.serve.http.docs import DOCS_PATHS, add_docs_routes
from polyfuse.serve.http.forms import parse_multipart
from polyfuse.serve.http.metrics import (
    Metrics,
    RequestLog,
    Timed,
    Tracer,
    digest,
    embedding_summary,
)
from polyfuse.serve.http.web import WEB_PATHS, add_web_routes
from polyfuse.serve.runtime.align import MAX_BEAM, MAX_K, AlignServices, not_served
from polyfuse.serve.types import ERROR_STATUS, Runtime, ServeError, ServeRequest, ServeResult

if TYPE_CHECKING:  # the guard is imported only when a policy is set
    from polyfuse.guard.engine import Guard, ScanResult

log = logging.getLogger("polyfuse.serve")
T = TypeVar("T")
Inputs = dict[str, bytes | str]

REQUEST_ID_HEADER = "x-request-id"
TIMEOUT_HEADER = "x-request-timeout"
MAX_REQUEST_ID = 128


# ------------------------------------------------------------------ errors
def error_response(err: ServeError, request_id: str | None, *, oip: bool = False) -> JSONResponse:
    """The JSON response of ``err``, with ``Retry-After`` when it has one."""
    headers: dict[str, str] = {}
    if err.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(err.retry_after)))
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    if oip:  # Open Inference Protocol: "error" is a string
        body: dict[str, Any] = {"error": err.message, "code": err.code, "request_id": request_id}
    else:
        body = err.to_dict(request_id)
    return JSONResponse(body, status_code=err.status, headers=headers)


def _state(scope: Scope) -> dict[str, Any]:
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


def _route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class RequestContextMiddleware:
    """Gives each request an id (``X-Request-ID`` in, or a new one; echoed back),
    renders `ServeError` and unexpected exceptions as typed JSON, records latency and
    status metrics and writes one structured access-log line."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(Headers(scope=scope))
        _state(scope)["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ServeError as err:
            await self._render(err, scope, receive, send_with_id)
        except Exception:
            log.exception(json.dumps({"event": "internal_error", "request_id": request_id}))
            bug = ServeError("internal", "internal error", hint="report it with the request id")
            await self._render(bug, scope, receive, send_with_id)
        finally:
            self._record(scope, request_id, status, time.perf_counter() - started)

    async def _render(self, err: ServeError, scope: Scope, receive: Receive, send: Send) -> None:
        oip = str(scope["path"]).startswith("/v2")
        _state(scope)["error_code"] = err.code
        await error_response(err, _state(scope)["request_id"], oip=oip)(scope, receive, send)

    def _record(self, scope: Scope, request_id: str, status: int, seconds: float) -> None:
        route = _route_label(scope)
        state = _state(scope)
        self.metrics.latency.labels(route).observe(seconds)
        self.metrics.requests.labels(route, str(status)).inc()
        if status >= 400:
            code = state.get("error_code") or _code_of_status(status)
            self.metrics.errors.labels(route, code).inc()
        if not log.isEnabledFor(logging.INFO):  # the JSON line costs more than the check
            return
        line = {
            "event": "request",
            "request_id": request_id,
            "method": scope.get("method"),
            "route": route,
            "status": status,
            "ms": round(seconds * 1000, 2),
            "key": state.get("key_id"),
        }
        log.info(json.dumps(line))


def _code_of_status(status: int) -> str:
    return next((c for c, s in ERROR_STATUS.items() if s == status), "internal")


def _request_id(headers: Headers) -> str:
    given = headers.get(REQUEST_ID_HEADER, "").strip()
    if given and len(given) <= MAX_REQUEST_ID and given.isascii() and given.isprintable():
        return given
    return new_request_id()


#: Request ids: a random per-process prefix and a counter (unique without a syscall per
#: request, unlike uuid4).
_ID_PREFIX = secrets.token_hex(10)
_ID_COUNTER = itertools.count()


def new_request_id() -> str:
    """A fresh 32-hex-digit request id, unique within this process and across restarts."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFF:012x}"


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes`` (413 ``too_large``), by ``Content-Length``
    up front and by counting streamed chunks."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if (
            length is not None
            and length.isascii()
            and length.isdigit()
            and int(length) > self.max_bytes
        ):
            raise self._too_large()
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise self._too_large()
            return message

        await self.app(scope, counting_receive, send)

    def _too_large(self) -> ServeError:
        return ServeError(
            "too_large",
            f"request body is over the limit of {self.max_bytes} bytes",
            hint="send fewer or smaller inputs, or raise max_request_bytes",
        )


# ------------------------------------------------------------------ pipeline
@dataclass
class Context:
    """What one request carries through the pipeline."""

    request_id: str
    route: str
    deadline: float | None = None
    modalities: tuple[str, ...] | None = None
    key_id: str | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Screened:
    """Inputs after the firewall: possibly redacted, with the masked findings."""

    inputs: Inputs
    action: Action
    findings: list[dict[str, Any]]


class Service:
    """The pipeline behind the routes: validate -> firewall -> runtime.

    Args:
        runtime: the model runtime.
        config: limits and options.
        guard: the firewall (`polyfuse.guard.engine.Guard`), or None for none.
        metrics: where to count.
        tracer: spans per stage.
        request_log: the JSONL request log, or None.
        align: search, consistency and captioning artifacts, or None.
    """

    def __init__(
        self,
        runtime: Runtime,
        config: ServeConfig,
        *,
        guard: Guard | None = None,
        metrics: Metrics,
        tracer: Tracer,
        request_log: RequestLog | None = None,
        align: AlignServices | None = None,
    ) -> None:
        self.runtime = runtime
        self.align = align
        self.config = config
        self.guard = guard
        self.metrics = metrics
        self.tracer = tracer
        self.request_log = request_log
        self.guard_pool = ThreadPoolExecutor(config.guard_threads, thread_name_prefix="guard")
        self.guard_ready = guard is None

    # -- stages -----------------------------------------------------------------------
    def stage(self, ctx: Context, name: str) -> contextlib.AbstractContextManager[Any]:
        """Times a stage into the stage histogram, and a span when tracing is on."""
        timed = Timed(self.metrics.stage.labels(ctx.route, name))
        if not self.tracer.enabled:  # a plain object: no generator per stage and request
            return timed
        return self._traced(ctx, name, timed)

    @contextlib.contextmanager
    def _traced(self, ctx: Context, name: str, timed: Timed) -> Iterator[None]:
        with (
            self.tracer.span(f"polyfuse.{name}", request_id=ctx.request_id, route=ctx.route),
            timed,
        ):
            yield

    def validate(self, inputs: Inputs, ctx: Context, *, known: tuple[str, ...] | None) -> None:
        """Size limits (413) and modality names (400)."""
        if not inputs:
            raise ServeError(
                "invalid_input", "no inputs", hint="send at least one modality's content"
            )
        if len(inputs) > self.config.max_items:
            raise ServeError(
                "too_large", f"{len(inputs)} inputs; the limit is {self.config.max_items}"
            )
        for name, value in inputs.items():
            size = len(value.encode("utf-8")) if isinstance(value, str) else len(value)
            if size > self.config.max_item_bytes:
                raise ServeError(
                    "too_large",
                    f"input '{name}' has {size} bytes; the limit is {self.config.max_item_bytes}",
                    hint="send a smaller file",
                    details={"input": name},
                )
        if known is not None:
            _check_names(inputs, known, "input")
            if ctx.modalities is not None:
                _check_names(dict.fromkeys(ctx.modalities, ""), known, "modalities")

    async def screen(self, inputs: Inputs, ctx: Context) -> Screened:
        """Run the firewall over every input; raises ``blocked_by_policy`` on block,
        passes redacted text (and redacted files) on."""
        if self.guard is None:
            return Screened(inputs, "allow", [])
        guard = self.guard
        names = list(inputs)
        results = await asyncio.gather(
            *(self._in_pool(guard.scan, inputs[n], name=n) for n in names)
        )
        out: Inputs = {}
        findings: list[dict[str, Any]] = []
        action: Action = "allow"
        for name, result in zip(names, results, strict=True):
            item_action = self._item_action(result)
            for finding, act in result.findings:
                self.metrics.findings.labels(finding.type, act).inc()
                findings.append({**finding.to_dict(), "action": act, "input": name})
            if ACTIONS.index(item_action) > ACTIONS.index(action):
                action = item_action
            out[name] = inputs[name]
            if item_action == "redact":
                out[name] = await self._redacted(guard, inputs[name], result)
        if action == "block":
            self._log(ctx, inputs, verdict=("block", findings))  # answered 422: logged too
            raise _blocked(results, names, findings)
        return Screened(out, action, findings)

    def _item_action(self, result: ScanResult) -> Action:
        if result.error is not None and result.modality == "unknown":
            # content the firewall cannot read (e.g. a .npy series): not scannable, so
            # it goes on unscanned and is counted; the runtime validates it.
            self.metrics.findings.labels("UNSCANNED", "allow").inc()
            return "allow"
        action: Action = result.action
        return action

    async def _redacted(self, guard: Guard, value: bytes | str, result: ScanResult) -> bytes | str:
        from polyfuse.guard.redact.text import redact_text

        todo = [f for f, a in result.findings if a == "redact"]
        if isinstance(value, str):
            return redact_text(value, todo)
        if result.modality == "text":
            return redact_text(value.decode("utf-8"), todo).encode("utf-8")
        with tempfile.TemporaryDirectory(prefix="polyfuse-redact-") as tmp:
            path = await self._in_pool(guard.redact, value, result, tmp)
            if path is None:
                return value
            data: bytes = await self._in_pool(Path(path).read_bytes)
            return data

    async def _in_pool(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.guard_pool, lambda: fn(*args, **kwargs))

    async def call_runtime(self, ctx: Context, make: Callable[[], Awaitable[T]]) -> T:
        """Await the runtime within the request's deadline (504 once it passes)."""
        timeout = None if ctx.deadline is None else ctx.deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            raise _deadline()
        try:
            async with asyncio.timeout(timeout):  # no extra task per request, unlike wait_for
                return await make()
        except TimeoutError:
            raise _deadline() from None
        except ServeError:
            raise
        except Exception as exc:
            log.exception(json.dumps({"event": "runtime_error", "request_id": ctx.request_id}))
            raise ServeError("internal", "the model runtime failed") from exc

    # -- whole requests ---------------------------------------------------------------
    async def predict(self, inputs: Inputs, ctx: Context) -> ServeResult:
        """One prediction through every stage."""
        with self.stage(ctx, "validate"):
            self.validate(inputs, ctx, known=self.runtime.modalities)
        with self.stage(ctx, "firewall"):
            screened = await self.screen(inputs, ctx)
        request = ServeRequest(screened.inputs, ctx.request_id, ctx.deadline, ctx.modalities)
        with self.stage(ctx, "runtime"):
            result = await self.call_runtime(ctx, lambda: self.runtime.predict(request))
        result.findings = screened.findings
        self._count(result, ctx)
        self._log(ctx, inputs, result=result)
        return result

    async def embed(self, inputs: Inputs, ctx: Context) -> dict[str, Any]:
        """Per-modality embeddings through every stage."""
        with self.stage(ctx, "validate"):
            self.validate(inputs, ctx, known=self.runtime.modalities)
        with self.stage(ctx, "firewall"):
            screened = await self.screen(inputs, ctx)
        request = ServeRequest(screened.inputs, ctx.request_id, ctx.deadline, ctx.modalities)
        with self.stage(ctx, "runtime"):
            vectors = await self.call_runtime(ctx, lambda: self.runtime.embed(request))
        self._log(ctx, inputs, embeddings=vectors)
        return {
            "request_id": ctx.request_id,
            "embeddings": vectors,
            "findings": screened.findings,
            "model": _model_info(self.runtime),
        }

    async def aligned(
        self, route: str, inputs: Inputs, ctx: Context, **options: Any
    ) -> dict[str, Any]:
        """``/v1/search``, ``/v1/consistency`` or ``/v1/caption`` through validation,
        the firewall and the request's deadline (``options``: ``k`` or ``beam``)."""
        align = self.served(route)
        with self.stage(ctx, "validate"):
            self.validate(inputs, ctx, known=align.modalities(route))
        with self.stage(ctx, "firewall"):
            screened = await self.screen(inputs, ctx)
        calls: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
            "search": lambda: align.search(screened.inputs, **options),
            "consistency": lambda: align.consistency(screened.inputs),
            "caption": lambda: align.caption(screened.inputs, **options),
        }
        with self.stage(ctx, route):
            out = await self.call_runtime(ctx, calls[route])
        self._log(ctx, inputs)
        return {"request_id": ctx.request_id, **out, "findings": screened.findings}

    def served(self, route: str) -> AlignServices:
        """The artifacts behind ``route``; 404 ``not_found`` naming the flag to pass."""
        if self.align is None:
            raise not_served(route)
        self.align.require(route)
        return self.align

    async def scan(self, inputs: Inputs, ctx: Context) -> dict[str, Any]:
        """Firewall verdicts only (no model)."""
        if self.guard is None:
            raise ServeError(
                "not_found",
                "this server runs no firewall",
                hint="start it with --policy FILE to enable /v1/scan",
            )
        with self.stage(ctx, "validate"):
            self.validate(inputs, ctx, known=None)
        names = list(inputs)
        with self.stage(ctx, "firewall"):
            results = await asyncio.gather(
                *(self._in_pool(self.guard.scan, inputs[n], name=n) for n in names)
            )
        verdicts = {
            n: {**r.to_dict(), "sha256": r.sha256} for n, r in zip(names, results, strict=True)
        }
        for r in results:
            for finding, act in r.findings:
                self.metrics.findings.labels(finding.type, act).inc()
        strictest = max((r.action for r in results), key=ACTIONS.index)
        found = [{"type": f.type} for r in results for f, _ in r.findings]
        self._log(ctx, inputs, verdict=(strictest, found))
        return {"request_id": ctx.request_id, "action": strictest, "results": verdicts}

    def _count(self, result: ServeResult, ctx: Context) -> None:
        for stage, ms in result.timings_ms.items():
            self.metrics.stage.labels(ctx.route, f"runtime:{stage}").observe(ms / 1000)
        for modality, reason in result.degraded_reasons.items():
            self.metrics.degraded.labels(modality, reason).inc()
        for modality in self.runtime.modalities:
            if modality not in result.modalities_used:
                self.metrics.missing.labels(modality).inc()

    def _log(
        self,
        ctx: Context,
        inputs: Inputs,
        *,
        result: ServeResult | None = None,
        embeddings: Mapping[str, list[float]] | None = None,
        verdict: tuple[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        """One request-log record (hashes and summaries, never raw content); ``verdict``
        is the firewall's (action, findings) for blocked requests and /v1/scan."""
        if self.request_log is None:
            return
        record: dict[str, Any] = {
            "request_id": ctx.request_id,
            "route": ctx.route,
            "key": ctx.key_id,
            "inputs": {name: digest(value) for name, value in inputs.items()},
        }
        if result is not None:
            record["prediction"] = {"label": result.label, "probabilities": result.probabilities}
            record["degraded"] = result.degraded
            record["degraded_reasons"] = result.degraded_reasons
            record["findings"] = sorted({f["type"] for f in result.findings})
        if embeddings is not None:
            record["embeddings"] = {m: embedding_summary(v) for m, v in embeddings.items()}
        if verdict is not None:
            record["action"] = verdict[0]
            record["findings"] = sorted({f["type"] for f in verdict[1]})
        self.request_log.write(record)

    async def warm_guard(self) -> None:
        """Build the firewall's models once (first scans are otherwise slow)."""
        if self.guard is not None:
            try:
                await self._in_pool(self.guard.scan, "warm up", name="warm-up")
            except Exception:  # stays not ready; /readyz answers 503
                log.exception(json.dumps({"event": "firewall_warm_up_failed"}))
                return
        self.guard_ready = True

    def ready(self) -> bool:
        """True when the runtime and the firewall are ready."""
        return self.guard_ready and self.runtime.ready()

    async def close(self) -> None:
        """Close the runtime and the firewall's threads."""
        await self.runtime.close()
        if self.align is not None:
            self.align.close()
        self.guard_pool.shutdown(wait=False, cancel_futures=True)
        self.tracer.close()


def _check_names(inputs: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(inputs) - set(known))
    if unknown:
        raise ServeError(
            "invalid_input",
            f"unknown modality {', '.join(repr(u) for u in unknown)} in {where}",
            hint=f"this model accepts: {', '.join(known)}",
            details={"unknown": unknown},
        )


def _blocked(
    results: list[ScanResult], names: list[str], findings: list[dict[str, Any]]
) -> ServeError:
    blocked = [n for n, r in zip(names, results, strict=True) if r.action == "block"]
    reasons = {n: r.error for n, r in zip(names, results, strict=True) if r.error is not None}
    types = sorted({f["type"] for f in findings if f["action"] == "block"})
    why = f" ({', '.join(types)})" if types else ""
    return ServeError(
        "blocked_by_policy",
        f"the firewall policy blocks input {', '.join(repr(n) for n in blocked)}{why}",
        hint="remove the flagged content; the findings are masked",
        details={"findings": findings, **({"errors": reasons} if reasons else {})},
    )


def _deadline() -> ServeError:
    return ServeError(
        "deadline_exceeded",
        "the request's deadline passed before the model answered",
        hint="raise X-Request-Timeout or retry later",
    )


def _model_info(runtime: Runtime) -> dict[str, Any]:
    info = runtime.info()
    return {k: info[k] for k in ("name", "version", "contracts") if k in info}


# ------------------------------------------------------------------ request parsing
def context(request: Request, route: str) -> Context:
    """The pipeline context of a request: id, deadline, key, chosen modalities."""
    state = request.scope.get("state", {})
    deadline = None
    raw = request.headers.get(TIMEOUT_HEADER)
    service: Service = request.app.state.service
    seconds = service.config.default_timeout
    if raw is not None:
        try:
            seconds = float(raw)
        except ValueError:
            seconds = -1.0
        if not (math.isfinite(seconds) and seconds > 0):
            raise ServeError(
                "invalid_input",
                "X-Request-Timeout must be a positive number of seconds",
                hint="e.g. 'X-Request-Timeout: 2.5'",
            )
    if seconds is not None:
        deadline = time.monotonic() + seconds
    chosen = request.query_params.get("modalities")
    modalities = None
    if chosen is not None:
        modalities = tuple(m.strip() for m in chosen.split(",") if m.strip())
    return Context(
        state.get("request_id") or new_request_id(),
        route,
        deadline,
        modalities,
        state.get("key_id"),
    )


async def read_inputs(request: Request, config: ServeConfig) -> Inputs:
    """Inputs from multipart (file parts -> bytes, text fields -> str) or JSON
    ``{"inputs": {name: "text" | {"base64": "..."}}}``."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _multipart(request, config)
    if content_type == "application/json":
        return _json_inputs(await request.body())
    raise ServeError(
        "unsupported_media",
        f"content type {content_type or 'none'!r} is not accepted",
        hint="send multipart/form-data (one part per modality) or application/json",
    )


async def _multipart(request: Request, config: ServeConfig) -> Inputs:
    parts = parse_multipart(
        request.headers.get("content-type", ""),
        await request.body(),
        max_files=config.max_items,
        max_fields=config.max_items,
        max_part_size=config.max_item_bytes,
    )
    inputs: Inputs = {}
    for name, value in parts:
        if name in inputs:
            raise ServeError("invalid_input", f"input '{name}' is given twice")
        inputs[name] = value
    return inputs


def _json_inputs(body: bytes) -> Inputs:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # too deeply nested
        raise ServeError("invalid_input", "the body is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("inputs"), dict):
        raise ServeError(
            "invalid_input",
            "the JSON body needs an 'inputs' object",
            hint='{"inputs": {"text": "...", "image": {"base64": "..."}}}',
        )
    return {str(k): _json_value(str(k), v) for k, v in data["inputs"].items()}


def _json_value(name: str, value: Any) -> bytes | str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"base64"} and isinstance(value["base64"], str):
        return b64decode(name, value["base64"])
    raise ServeError(
        "invalid_input",
        f'input \'{name}\' must be a string (text) or {{"base64": "..."}} (file content)',
        details={"input": name},
    )


def b64decode(name: str, value: str) -> bytes:
    """Strict base64 (standard alphabet) of input ``name``; 400 when malformed."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ServeError(
            "invalid_input", f"input '{name}' is not valid base64", details={"input": name}
        ) from None


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


def freeze_heap() -> None:
    """Collect garbage, then exempt every object still alive from later collections
    (`gc.freeze`): a long-lived server's heap is mostly the model, torch and the app,
    which full collections would otherwise walk again and again while holding the GIL."""
    gc.collect()
    gc.freeze()


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap the C library's malloc arenas of this process at ``arenas``
    (``mallopt(M_ARENA_MAX)``, glibc); threads that allocate for the first time later
    share those. False where the C library has no such option (then nothing changes)."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows)
        return False
    m_arena_max = -8  # <malloc.h>
    return bool(mallopt(ctypes.c_int(m_arena_max), ctypes.c_int(arenas)))


def create_app(
    runtime: Runtime,
    config: ServeConfig | None = None,
    *,
    guard: Guard | None = None,
    align: AlignServices | None = None,
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
    """
    config = config or ServeConfig()
    if guard is None and config.policy is not None:
        from polyfuse.guard.engine import Guard
        from polyfuse.guard.policy import Policy

        guard = Guard(Policy.load(config.policy), audit=config.audit)
    metrics = Metrics(runtime.stats)
    service = Service(
        runtime,
        config,
        guard=guard,
        metrics=metrics,
        tracer=Tracer(config.otel),
        request_log=RequestLog(config.request_log) if config.request_log else None,
        align=align,
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
    from polyfuse.serve.http.oip import oip_router

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
        return {"status": "ready", "model": _model_info(service.runtime)}

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
        code = "not_found" if status == 404 else _code_of_status(status)
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
