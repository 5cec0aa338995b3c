"""Request parsing: the request `Context` and the inputs of a multipart or JSON body."""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from typing import Any

from fastapi import Request

from polyfuse.serve.config import ServeConfig
from polyfuse.serve.http.forms import parse_multipart
from polyfuse.serve.http.middleware import TIMEOUT_HEADER, new_request_id
from polyfuse.serve.http.service import Context, Inputs, Service
from polyfuse.serve.types import ServeError
from polyfuse.serve.versions.routing import ROUTE_HEADER


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
    key_id = state.get("key_id")
    ctx = Context(state.get("request_id") or new_request_id(), route, deadline, modalities, key_id)
    if service.versions is not None:  # several versions: who asks decides which answers
        ctx.route_key = route_key(request.headers.get(ROUTE_HEADER), key_id)
    explain = request.query_params.get("explain")
    if explain is not None:
        asked = tuple(x.strip() for x in explain.split(",") if x.strip())
        unknown = sorted(set(asked) - EXPLAIN)
        if unknown:
            raise ServeError(
                "invalid_input",
                f"unknown explanation(s) {unknown}",
                hint=f"explain= takes {', '.join(sorted(EXPLAIN))}",
            )
        ctx.explain = asked
    return ctx


#: What ``?explain=`` may ask for: ``frames`` (which frames of each video mattered).
EXPLAIN = frozenset({"frames"})


def route_key(header: str | None, key_id: str | None) -> str | None:
    """The caller's identity for sticky routing: the ``X-Polyfuse-Route`` header (first
    200 characters), else the API key's id; None without either (an unauthenticated
    loopback client is no one in particular)."""
    if header is not None and header.strip():
        return header.strip()[:200]
    if key_id is None or key_id.startswith("client:"):
        return None
    return key_id


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
