"""The contract between the serving runtime (model, batching, cache, breakers) and the HTTP
layer: typed requests, results and errors. Both sides depend on this module only.

The HTTP layer (`polyfuse.serve.http.app`) turns requests into `ServeRequest`, awaits a
`Runtime`, and turns `ServeResult` or `ServeError` into JSON; the runtime
(`polyfuse.serve.runtime.model`) never sees HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from polyfuse.core.errors import PolyfuseError

if TYPE_CHECKING:
    from polyfuse.monitor.live import LiveMonitor, MonitorRecord

#: Machine-readable error codes and the HTTP status each maps to.
ERROR_STATUS: dict[str, int] = {
    "invalid_input": 400,  # malformed content, unknown modality, empty request
    "unsupported_media": 415,  # content of a type the modality cannot read
    "too_large": 413,  # over a request or item size limit
    "unauthorized": 401,  # no API key
    "forbidden": 403,  # wrong API key
    "not_found": 404,  # unknown model or route
    "blocked_by_policy": 422,  # the firewall policy blocks the input
    "low_quality": 422,  # every given input failed its modality's quality gate
    "rate_limited": 429,  # per-key rate limit
    "overloaded": 503,  # queue full; Retry-After is set
    "unavailable": 503,  # every needed encoder failed or the policy refuses degraded answers
    "deadline_exceeded": 504,  # the request's deadline passed
    "internal": 500,  # a bug: never expected
}


class ServeError(PolyfuseError):
    """An error with a machine-readable ``code`` (a key of `ERROR_STATUS`).

    Args:
        code: error code; decides the HTTP status.
        message: what went wrong (never the raw input or PII).
        hint: how to fix it.
        retry_after: seconds a client should wait (``overloaded``, ``rate_limited``).
        details: extra JSON-able fields (``{"modality": "image"}``).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        hint: str | None = None,
        retry_after: float | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        if code not in ERROR_STATUS:
            raise ValueError(f"unknown error code {code!r}")
        self.code = code
        self.retry_after = retry_after
        self.details = dict(details or {})
        super().__init__(message, hint=hint)

    @property
    def status(self) -> int:
        """The HTTP status of this error."""
        return ERROR_STATUS[self.code]

    def to_dict(self, request_id: str | None = None) -> dict[str, Any]:
        """The JSON error body: ``{"error": {"code", "message", "hint", ...}}``."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            body["hint"] = self.hint
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        if self.details:
            body["details"] = self.details
        if request_id is not None:
            body["request_id"] = request_id
        return {"error": body}


@dataclass(frozen=True)
class ServeRequest:
    """One request: raw content per modality, as uploaded.

    Attributes:
        inputs: modality name -> file bytes (image, audio, series) or a string (text).
        request_id: id echoed in the response, logs and traces.
        deadline: absolute ``time.monotonic()`` by which the answer is useless, or None.
        modalities: use only these modalities (the rest count as missing), or None.
        leave_one_out: also compute the fused outputs with each modality left out
            (`ServeResult.without`; one more fusion pass per modality), as human review's
            contradiction rule needs.
        route_key: who is asking, for sticky routing between versions (the
            ``X-Polyfuse-Route`` header or the API key's id; None: route at random).
    """

    inputs: Mapping[str, bytes | str]
    request_id: str
    deadline: float | None = None
    modalities: tuple[str, ...] | None = None
    leave_one_out: bool = False
    route_key: str | None = None


@dataclass
class ServeResult:
    """The answer to one `ServeRequest`.

    Attributes:
        request_id: the request's id.
        label: predicted label.
        probabilities: label -> probability.
        contributions: modality -> share of the decision (fusion weights), when known.
        modalities_used: modalities the fusion saw.
        degraded: True when a given modality could not be used (encoder failed, timed
            out, or its breaker is open); ``degraded_reasons`` says why per modality.
        degraded_reasons: modality -> reason code (``breaker_open``, ``timeout``, ``error``,
            ``low_quality``: the input failed the modality's quality gate).
        findings: firewall findings (masked: `Finding.to_dict`), filled by the HTTP layer.
        model: ``{"name", "version", "contracts": {modality: version}}``.
        timings_ms: stage -> milliseconds (``preprocess:image``, ``encode:text``, ``fuse``).
        cache_hits: modalities whose embedding came from the cache.
        monitor: what drift monitoring kept of the request (statistics and sketches,
            written to the request log; not part of the response), when monitoring is on.
        without: modality -> fused probabilities (label order) with it left out, when the
            request asked for them (`ServeRequest.leave_one_out`) or was monitored; not
            part of the response.
        unimodal: modality -> its own head's probabilities (label order), for the
            modalities used, when ``without`` is computed; not part of the response.
        exact: the fused probabilities in label order, unrounded (``probabilities`` are
            rounded to 6 decimals, which ties near-certain answers), when ``without`` is
            computed; not part of the response.
        review: whether the answer went to human review and why (the ``review`` field of
            the response), when review is on.
        version: the name of the version that answered, when the service serves
            several (`polyfuse.serve.versions`); ``version`` in the response.
        role: that version's role (``champion``, ``canary``); ``role`` in the response.
        output_scan: the firewall's verdict on the answer's texts (its labels), when the
            policy scans outputs (`polyfuse.guard.outputs.OutputScan.to_dict`).
        sync: video modality -> its soundtrack's offset against its picture
            (`polyfuse.modalities.sync.SyncEstimate.to_dict`; ``null`` for a video without
            sound), when the request carried a video and the service checks sync.
        frames: video modality -> which frames mattered
            (`polyfuse.inference.frames.FrameEffects.to_dict`), when the request asked
            ``?explain=frames``.
    """

    request_id: str
    label: Any
    probabilities: dict[str, float]
    contributions: dict[str, float] | None
    modalities_used: list[str]
    degraded: bool = False
    degraded_reasons: dict[str, str] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    cache_hits: list[str] = field(default_factory=list)
    monitor: MonitorRecord | None = None
    without: dict[str, list[float]] | None = None
    unimodal: dict[str, list[float]] | None = None
    exact: list[float] | None = None
    review: dict[str, Any] | None = None
    version: str | None = None
    role: str | None = None
    output_scan: dict[str, Any] | None = None
    sync: dict[str, Any] | None = None
    frames: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the ``/v1/predict`` response body)."""
        body: dict[str, Any] = {
            "request_id": self.request_id,
            "prediction": {"label": self.label, "probabilities": self.probabilities},
            "contributions": self.contributions,
            "modalities_used": self.modalities_used,
            "degraded": self.degraded,
            "degraded_reasons": self.degraded_reasons,
            "findings": self.findings,
            "model": self.model,
            "timings_ms": self.timings_ms,
            "cache_hits": self.cache_hits,
        }
        if self.review is not None:
            body["review"] = self.review
        if self.version is not None:
            body["version"] = self.version
            body["role"] = self.role
        if self.output_scan is not None:
            body["output_scan"] = self.output_scan
        if self.sync is not None:
            body["sync"] = self.sync
        if self.frames is not None:
            body["frames"] = self.frames
        return body


@runtime_checkable
class Runtime(Protocol):
    """What the HTTP layer needs from a model runtime."""

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modality names the model accepts."""
        ...

    def info(self) -> dict[str, Any]:
        """``{"name", "version", "modalities", "contracts", "labels"}`` of the model."""
        ...

    def ready(self) -> bool:
        """True once models are loaded and warmed up."""
        ...

    async def predict(self, request: ServeRequest) -> ServeResult:
        """Answer one request; raises `ServeError`."""
        ...

    async def embed(self, request: ServeRequest) -> dict[str, list[float]]:
        """Per-modality embeddings in the shared space; raises `ServeError`."""
        ...

    def stats(self) -> dict[str, Any]:
        """Queue depths, batch sizes, cache hit ratios, breaker states (for metrics)."""
        ...

    def live_monitor(self) -> LiveMonitor | None:
        """The live drift monitor (`polyfuse.monitor.live`), or None when off."""
        ...

    async def close(self) -> None:
        """Stop workers and release resources."""
        ...
