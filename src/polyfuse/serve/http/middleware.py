"""Request-level ASGI middleware and error rendering: request id, access log, latency
metrics, typed JSON errors, and the body size limit."""

from __future__ import annotations

import itertools
import json
import logging
import math
import secrets
import time
from typing import Any

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from polyfuse.serve.http.metrics import (
    Metrics,
)
from polyfuse.serve.http.outputs import scrub
from polyfuse.serve.types import ERROR_STATUS, ServeError

log = logging.getLogger("polyfuse.serve")


REQUEST_ID_HEADER = "x-request-id"
TIMEOUT_HEADER = "x-request-timeout"
MAX_REQUEST_ID = 128


# ------------------------------------------------------------------ errors
def error_response(err: ServeError, request_id: str | None, *, oip: bool = False) -> JSONResponse:
    """The JSON response of ``err``, with ``Retry-After`` when it has one; server file
    paths in it become file names (`polyfuse.serve.http.outputs.scrub`)."""
    headers: dict[str, str] = {}
    if err.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(err.retry_after)))
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    if oip:  # Open Inference Protocol: "error" is a string
        body: dict[str, Any] = {"error": err.message, "code": err.code, "request_id": request_id}
    else:
        body = err.to_dict(request_id)
    return JSONResponse(scrub(body), status_code=err.status, headers=headers)


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
            code = state.get("error_code") or code_of_status(status)
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


def code_of_status(status: int) -> str:
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
