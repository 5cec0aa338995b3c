"""What one request goes through in the runtime besides the model: its checks (which
inputs are used, when failed stages refuse the answer), the per-modality `Stage` record,
and small timing helpers. Shared by `ModelRuntime` and the Ray runtime."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from polyfuse.modalities.base import ModalityContract
from polyfuse.modalities.quality import LOW_QUALITY
from polyfuse.serve.runtime.cache import CachedValue
from polyfuse.serve.types import ServeError, ServeRequest


class LowQualityError(Exception):
    """A remote stage's quality gate refused the input (``args[0]``: why)."""

    @property
    def reason(self) -> str:
        """Why the gate refused the input."""
        return str(self.args[0]) if self.args else "failed its quality gate"


@dataclass
class Stage:
    """What one modality's stage produced for a request (``detail``: why a gate refused
    the input)."""

    value: CachedValue | None = None
    reason: str | None = None  # breaker_open | timeout | error | low_quality
    cached: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    detail: str | None = None
    statistics: list[float] | None = None  # input statistics for drift monitoring
    sampled: bool = False  # the drift monitor samples this request: compute statistics


def check_request(
    request: ServeRequest, contracts: Mapping[str, ModalityContract]
) -> dict[str, bytes | str]:
    """The inputs of ``request`` the runtime will use (its ``modalities`` filter applied);
    `ServeError` ``invalid_input`` for unknown modalities, no usable input, or a
    file-based modality sent as text."""
    known = set(contracts)
    wanted = set(request.modalities) if request.modalities is not None else known
    unknown = sorted((set(request.inputs) | wanted) - known)
    if unknown:
        raise ServeError(
            "invalid_input",
            f"the model has no modality {', '.join(map(repr, unknown))}",
            hint=f"it accepts {', '.join(contracts)}",
            details={"modality": unknown[0]},
        )
    chosen = {m: v for m, v in request.inputs.items() if m in wanted}
    if not chosen:
        raise ServeError(
            "invalid_input",
            "the request carries none of the requested modalities",
            hint=f"send at least one of {', '.join(sorted(wanted))}",
        )
    for m, v in chosen.items():
        if contracts[m].file_based and not isinstance(v, bytes):
            raise ServeError(
                "invalid_input",
                f"'{m}' must be sent as file bytes, not {type(v).__name__}",
                hint="upload the file content; paths are never read by the server",
                details={"modality": m},
            )
    return chosen


def check_degraded(stages: Mapping[str, Stage], degraded: str, breaker_reset_s: float) -> None:
    """Refuse a request whose stages failed where an answer would mislead: every given
    modality failed, or any did under ``degraded="refuse"`` (``low_quality`` when every
    failure was the quality gate, else ``unavailable`` with a retry time)."""
    reasons = {m: s.reason for m, s in stages.items() if s.reason is not None}
    if not reasons:
        return
    everything = len(reasons) == len(stages)
    if everything or degraded == "refuse":
        what = "every given modality" if everything else "a given modality"
        if all(r == LOW_QUALITY for r in reasons.values()):
            listed = "; ".join(f"{m}: {stages[m].detail}" for m in reasons)
            raise ServeError(
                LOW_QUALITY,
                f"{what} failed its quality gate ({listed})",
                hint="send inputs that carry signal (speech, a visible scene, real text)",
                details={"reasons": reasons},
            )
        listed = ", ".join(f"{m}: {r}" for m, r in reasons.items())
        opened = "breaker_open" in reasons.values()
        raise ServeError(
            "unavailable",
            f"{what} could not be encoded ({listed})",
            hint="retry later; the failing encoder's breaker retries on its own",
            retry_after=breaker_reset_s if opened else 1.0,
            details={"reasons": reasons},
        )


def ms_since(since: float) -> float:
    """Milliseconds since ``since`` (a `time.perf_counter` reading), to the microsecond."""
    return round(1000 * (time.perf_counter() - since), 3)


def deadline_error(request: ServeRequest) -> ServeError:
    """`ServeError` ``deadline_exceeded`` for ``request``."""
    return ServeError(
        "deadline_exceeded",
        f"request {request.request_id} passed its deadline before an answer was ready",
        hint="raise the client timeout or send smaller inputs",
    )
