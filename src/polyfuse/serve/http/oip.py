"""The Open Inference Protocol v2 (KServe / Triton REST), so existing clients such as
``tritonclient[http]`` work unchanged.

Inputs are BYTES tensors named after modalities, one element per request of a
batch: JSON ``data`` is a list of strings (the text itself, or base64 when the
input's ``parameters.content_type`` is ``"base64"``), or raw bytes with Triton's
binary tensor extension (``Inference-Header-Content-Length``). Outputs are ``label``
(BYTES ``[N]``) and ``probabilities`` (FP32 ``[N, K]`` in the order of the model's
labels), as JSON or, when asked for, as binary data. When the firewall policy scans
outputs, labels are named as `Service.labels` shows them (a label holding PII redacted)
and ``parameters`` carries ``output_action`` and ``output_redacted`` (``TYPE:count``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import struct
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from polyfuse import __version__
from polyfuse.serve.http.inputs import b64decode, context
from polyfuse.serve.http.service import Context, Inputs, Service
from polyfuse.serve.types import ServeError, ServeResult

HEADER_LENGTH = "inference-header-content-length"
OUTPUTS = ("label", "probabilities")
YEAR_US = 365 * 24 * 3600 * 10**6


@dataclass(frozen=True)
class Tensor:
    """One decoded input tensor: its name and its elements."""

    name: str
    elements: list[bytes | str]


def oip_router(service: Service, model_name: str | None = None) -> APIRouter:
    """The ``/v2`` routes over ``service``; the model is named ``model_name`` or the
    runtime's ``info()["name"]``."""
    router = APIRouter(prefix="/v2", tags=["open inference protocol v2"])

    def name() -> str:
        return model_name or str(service.runtime.info().get("name", "model"))

    def version() -> str:
        return str(service.runtime.info().get("version", "1"))

    def check_model(model: str, model_version: str | None = None) -> None:
        if model != name() or (model_version not in (None, "", version())):
            raise ServeError(
                "not_found",
                f"no model {model!r}" + (f" version {model_version!r}" if model_version else ""),
                hint=f"this server serves {name()!r} version {version()!r}",
            )

    @router.get("")
    async def server_metadata() -> dict[str, Any]:
        """Server name, version and protocol extensions."""
        return {"name": "polyfuse", "version": __version__, "extensions": ["binary_tensor_data"]}

    @router.get("/health/live", response_class=Response)
    async def live() -> Response:
        """200 while the process answers."""
        return Response(status_code=200)

    @router.get("/health/ready", response_class=Response)
    async def ready() -> Response:
        """200 once the model is ready, else 503."""
        return Response(status_code=200 if service.ready() else 503)

    async def metadata(model: str, model_version: str | None = None) -> dict[str, Any]:
        check_model(model, model_version)
        labels = await _labels(service)
        return {
            "name": name(),
            "versions": [version()],
            "platform": "polyfuse",
            "inputs": [
                {"name": m, "datatype": "BYTES", "shape": [-1]} for m in service.runtime.modalities
            ],
            "outputs": [
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(labels)]},
            ],
            "parameters": {"labels": labels},
        }

    async def model_ready(model: str, model_version: str | None = None) -> Response:
        check_model(model, model_version)
        return Response(status_code=200 if service.ready() else 503)

    async def infer(request: Request, model: str, model_version: str | None = None) -> Response:
        check_model(model, model_version)
        ctx = context(request, "/v2/models/{model}/infer")
        header, tensors, wants = await _read_infer(request, service)
        ctx = _with_timeout(ctx, header)
        results = await _predict_batch(service, ctx, tensors)
        labels = await _labels(service)
        return _infer_response(labels, header, results, wants, name(), version())

    for prefix in ("/models/{model}", "/models/{model}/versions/{model_version}"):
        router.add_api_route(prefix, metadata, methods=["GET"], summary="model metadata")
        router.add_api_route(
            f"{prefix}/ready",
            model_ready,
            methods=["GET"],
            summary="ready",
            response_class=Response,
        )
        router.add_api_route(f"{prefix}/infer", infer, methods=["POST"], summary="infer")
    return router


async def _labels(service: Service) -> list[str]:
    """The model's labels, as answers name them when the policy scans outputs."""
    labels = [str(label) for label in service.runtime.info().get("labels", [])]
    if not service.scans_outputs:
        return labels
    names = await service.labels()
    return [str(names.name(label)) for label in labels]


# ------------------------------------------------------------------ request
async def _read_infer(
    request: Request, service: Service
) -> tuple[dict[str, Any], list[Tensor], dict[str, bool]]:
    body = await request.body()
    length = request.headers.get(HEADER_LENGTH)
    if length is not None:
        # int() and str.isdigit() accept any Unicode digit ("١٢"): only ASCII is a length
        if not (length.isascii() and length.isdigit()) or int(length) > len(body):
            raise ServeError("invalid_input", f"bad {HEADER_LENGTH} header")
        head, binary = body[: int(length)], body[int(length) :]
    else:
        head, binary = body, b""
    try:
        header = json.loads(head)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ServeError("invalid_input", "the inference request is not valid JSON") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise ServeError("invalid_input", "the inference request needs an 'inputs' list")
    tensors: list[Tensor] = []
    offset = 0
    for spec in header["inputs"]:
        tensor, offset = _tensor(spec, binary, offset, service.runtime.modalities)
        tensors.append(tensor)
    if offset != len(binary):
        raise ServeError("invalid_input", "binary data does not match the inputs' sizes")
    return header, tensors, _wanted_outputs(header)


def _tensor(
    spec: Any, binary: bytes, offset: int, modalities: tuple[str, ...]
) -> tuple[Tensor, int]:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ServeError("invalid_input", "each input needs a 'name'")
    name = spec["name"]
    if name not in modalities:
        raise ServeError(
            "invalid_input",
            f"unknown input {name!r}",
            hint=f"inputs are named after modalities: {', '.join(modalities)}",
        )
    if spec.get("datatype") != "BYTES":
        raise ServeError("invalid_input", f"input {name!r} must be BYTES (raw content)")
    shape = spec.get("shape", [])
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ServeError("invalid_input", f"input {name!r} has a bad shape")
    params = _params(spec, f"input {name!r}")
    size = params.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise ServeError("invalid_input", f"input {name!r}: binary_data_size is wrong")
        elements: list[bytes | str] = list(_split_bytes(name, binary[offset : offset + size]))
        offset += size
    else:
        elements = _json_elements(name, spec.get("data"), params.get("content_type"))
    if len(elements) != math.prod(shape):
        raise ServeError(
            "invalid_input", f"input {name!r} has {len(elements)} elements for shape {shape}"
        )
    return Tensor(name, elements), offset


def _split_bytes(name: str, data: bytes) -> list[bytes]:
    """Triton's BYTES serialization: each element is a little-endian uint32 length
    followed by that many bytes."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise ServeError("invalid_input", f"input {name!r}: truncated BYTES tensor")
        (n,) = struct.unpack_from("<I", data, pos)
        if pos + 4 + n > len(data):
            raise ServeError("invalid_input", f"input {name!r}: truncated BYTES element")
        out.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out


def _json_elements(name: str, data: Any, content_type: Any) -> list[bytes | str]:
    flat = list(_flatten(data))
    if not all(isinstance(x, str) for x in flat):
        raise ServeError("invalid_input", f"input {name!r}: BYTES data must be strings")
    if content_type == "base64":
        return [b64decode(name, x) for x in flat]
    return list(flat)


def _flatten(data: Any) -> Any:
    if isinstance(data, list):
        for item in data:
            yield from _flatten(item)
    else:
        yield data


def _wanted_outputs(header: dict[str, Any]) -> dict[str, bool]:
    """Output name -> binary? (all outputs when the request names none)."""
    default = bool(_params(header, "the request").get("binary_data_output", False))
    asked = header.get("outputs")
    if not asked:
        return dict.fromkeys(OUTPUTS, default)
    if not isinstance(asked, list):
        raise ServeError("invalid_input", "'outputs' must be a list of {\"name\": ...} objects")
    wants: dict[str, bool] = {}
    for spec in asked:
        out = spec.get("name") if isinstance(spec, dict) else None
        if out not in OUTPUTS:
            raise ServeError(
                "invalid_input", f"unknown output {out!r}", hint=f"outputs: {', '.join(OUTPUTS)}"
            )
        wants[out] = bool(_params(spec, f"output {out!r}").get("binary_data", default))
    return wants


def _with_timeout(ctx: Context, header: dict[str, Any]) -> Context:
    """Triton's ``parameters.timeout`` (microseconds) when no header set a deadline."""
    micros = _params(header, "the request").get("timeout")
    if ctx.deadline is None and isinstance(micros, int) and micros > 0:
        # capped at a year (an int past a float's range would raise OverflowError)
        ctx.deadline = time.monotonic() + min(micros, YEAR_US) / 1e6
    return ctx


def _params(spec: dict[str, Any], where: str) -> dict[str, Any]:
    """The ``parameters`` object of a request, input or output ({} when absent)."""
    params = spec.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ServeError("invalid_input", f"'parameters' of {where} must be an object")
    return params


async def _predict_batch(
    service: Service, ctx: Context, tensors: list[Tensor]
) -> list[ServeResult]:
    sizes = {len(t.elements) for t in tensors}
    if len(sizes) != 1 or 0 in sizes:
        raise ServeError("invalid_input", "every input needs the same, non-zero batch size")
    (n,) = sizes
    if n > service.config.max_items:
        raise ServeError("too_large", f"batch of {n}; the limit is {service.config.max_items}")
    jobs = []
    for i in range(n):
        inputs: Inputs = {t.name: t.elements[i] for t in tensors}
        rid = ctx.request_id if n == 1 else f"{ctx.request_id}-{i}"
        item = dataclasses.replace(ctx, request_id=rid, findings=[])
        jobs.append(service.predict(inputs, item))
    return list(await asyncio.gather(*jobs))


# ------------------------------------------------------------------ response
def _infer_response(
    labels: list[str],
    header: dict[str, Any],
    results: list[ServeResult],
    wants: dict[str, bool],
    model: str,
    version: str,
) -> Response:
    labels = labels or list(results[0].probabilities)
    probs = np.array(
        [[r.probabilities.get(k, 0.0) for k in labels] for r in results], dtype="<f4"
    )  # (N, K)
    names = [str(r.label) for r in results]
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for out, binary in wants.items():
        tensor: dict[str, Any]
        if out == "label":
            tensor = {"name": "label", "datatype": "BYTES", "shape": [len(names)]}
            raw = b"".join(struct.pack("<I", len(b)) + b for b in (s.encode() for s in names))
            data: list[Any] = names
        else:
            tensor = {"name": "probabilities", "datatype": "FP32", "shape": list(probs.shape)}
            raw = probs.tobytes()
            data = [float(x) for x in probs.reshape(-1)]
        if binary:
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = data
        outputs.append(tensor)
    body: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": outputs}
    parameters: dict[str, Any] = {}
    if results[0].version is not None:  # several versions: which answered each item
        parameters["versions"] = [str(r.version) for r in results]
    scan = results[0].output_scan
    if scan is not None:  # the labels' output scan (parameters hold plain values)
        parameters["output_action"] = scan["action"]
        parameters["output_redacted"] = ",".join(f"{t}:{n}" for t, n in scan["redacted"].items())
    if parameters:
        body["parameters"] = parameters
    if isinstance(header.get("id"), str):
        body["id"] = header["id"]
    if not chunks:
        return JSONResponse(body)
    head = json.dumps(body).encode()
    return Response(
        head + b"".join(chunks),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
