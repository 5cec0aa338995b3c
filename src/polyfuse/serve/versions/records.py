"""What the versions' runtime records: a decision about the canary with its evidence, a
request copied to the shadow, and the shadow's answer (for the request log and review)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from polyfuse.serve.types import ServeResult


@dataclass(frozen=True)
class Decision:
    """A change of the canary, with the evidence it was made on.

    Attributes:
        action: ``rollback``, ``promote`` or ``weight``.
        version: the canary it concerns.
        by: ``judge`` (automatic) or ``operator``.
        time: seconds since the epoch.
        weight: the canary's weight after the decision.
        judgement: every signal's verdict when it was made.
        signals: the signals that decided (automatic rollback).
        registry: the registry alias moved by a promotion, if any.
    """

    action: Literal["rollback", "promote", "weight"]
    version: str
    by: Literal["judge", "operator"]
    time: float
    weight: float
    judgement: dict[str, Any]
    signals: tuple[str, ...] = ()
    registry: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the log line and ``GET /v1/versions``)."""
        return {
            "action": self.action,
            "version": self.version,
            "by": self.by,
            "time": self.time,
            "weight": self.weight,
            "signals": list(self.signals),
            "judgement": self.judgement,
            **({"registry": self.registry} if self.registry is not None else {}),
        }


@dataclass(frozen=True)
class ShadowJob:
    """One request copied to the shadow."""

    request_id: str
    inputs: Mapping[str, bytes | str]
    modalities: tuple[str, ...] | None
    champion: str
    label: Any


@dataclass(frozen=True)
class ShadowOutcome:
    """The shadow's answer to one copied request (never returned to the client).

    Attributes:
        request_id: the request's id.
        version: the shadow's name.
        champion: the champion's name.
        agrees: whether its label equals the champion's (None when it failed).
        result: its answer, or None when it failed.
        error: the error code when it failed.
        inputs: the request's inputs as the firewall left them.
    """

    request_id: str
    version: str
    champion: str
    agrees: bool | None
    result: ServeResult | None
    error: str | None
    inputs: Mapping[str, bytes | str]

    def to_record(self) -> dict[str, Any]:
        """The request-log record of the shadow's answer (no raw content)."""
        record: dict[str, Any] = {
            "request_id": self.request_id,
            "route": "shadow",
            "version": self.version,
            "role": "shadow",
            "champion": self.champion,
            "agrees": self.agrees,
        }
        if self.result is not None:
            record["prediction"] = {
                "label": self.result.label,
                "probabilities": self.result.probabilities,
            }
            record["degraded_reasons"] = self.result.degraded_reasons
        if self.error is not None:
            record["error"] = self.error
        return record


ShadowHook = Callable[[ShadowOutcome], Awaitable[None]]
