"""``slo.yaml``: the service level objectives that rules, alerts and dashboards come from.

::

    version: 1
    selector: 'job="polyfuse"'      # added to every raw metric selector ('' = none)
    objectives:
      availability: {target: 0.999, window: 30d}
      latency: {target: 0.99, routes: {/v1/predict: 1.0}}   # seconds, a histogram bound
      degraded: {target: 0.95}
      firewall_block: {target: 0.99}
      drift: {target: 0.95, for: 30m}
      accuracy: {target: 0.95, floor: 0.8, max_drop: 0.05, for: 30m}

Ratio objectives (availability, latency, degraded, firewall_block) get multi-window,
multi-burn-rate alerts; drift and accuracy get threshold alerts held for ``for``. Every
objective has a ``window`` (default 30d) and a ``runbook`` (default: its page in
docs/runbooks/). An objective left out is not generated. `load_slo` validates through
`polyfuse.core.config.validate`, so every mistake is a `ConfigError` naming the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from polyfuse.core.config import UnitFloat, YamlFloat, validate
from polyfuse.core.errors import ConfigError
from polyfuse.ops.catalogue import LATENCY_BUCKETS

#: The slo.yaml that ships with polyfuse (``polyfuse ops rules`` without ``--slo``).
DEFAULT_SLO = Path(__file__).with_name("slo.yaml")

#: Where runbook links point unless an objective names its own.
RUNBOOK_BASE = "https://github.com/polyfuse/polyfuse/blob/main/docs/runbooks"

#: Routes that answer predictions (the default for availability, latency, firewall).
PREDICT_ROUTES = ("/v1/predict", "/v2/models/{model}/infer")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^([1-9][0-9]*)([smhdw])$")
_MATCHERS = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"[^"]*"\s*(,\s*|$))*$')


def seconds(duration: str) -> int:
    """Seconds of a Prometheus duration with one unit (``30d`` -> 2592000)."""
    match = _DURATION.match(duration)
    if match is None:
        raise ValueError(f"expected a duration like 5m, 6h or 30d, got {duration!r}")
    return int(match[1]) * _UNITS[match[2]]


def _duration(value: str) -> str:
    seconds(value)
    return value


def _matchers(value: str) -> str:
    if not _MATCHERS.match(value):
        raise ValueError(f'expected label matchers like job="polyfuse", got {value!r}')
    return value.strip().rstrip(",")


def _target(value: float) -> float:
    if not 0.5 <= value < 1.0:
        raise ValueError("must be in [0.5, 1): the share of good events or time")
    return value


Duration = Annotated[str, AfterValidator(_duration)]
Target = Annotated[
    YamlFloat,
    AfterValidator(_target),
    Field(json_schema_extra={"minimum": 0.5, "exclusiveMaximum": 1.0}),
]


class Objective(BaseModel):
    """What every objective has: a target share, its window and a runbook link."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    target: Target
    window: Duration = "30d"
    runbook: str | None = Field(
        default=None, description="URL or path of the runbook (default: docs/runbooks/)"
    )


class RouteObjective(Objective):
    """A ratio objective over some routes (availability, firewall block rate)."""

    routes: list[str] = Field(default_factory=lambda: list(PREDICT_ROUTES), min_length=1)


def _bucket_bounds(routes: dict[str, float]) -> dict[str, float]:
    bounds = {float(b) for b in LATENCY_BUCKETS}
    for route, limit in routes.items():
        if limit not in bounds:
            raise ValueError(
                f"{route}: {limit} s is not a histogram bound of polyfuse_request_seconds; "
                f"use one of {', '.join(LATENCY_BUCKETS)}"
            )
    return routes


class LatencyObjective(Objective):
    """Share of requests per route answered within that route's threshold (seconds, one
    of the histogram bounds), e.g. ``target: 0.99`` + ``/v1/predict: 1.0`` = p99 <= 1 s."""

    routes: Annotated[dict[str, YamlFloat], AfterValidator(_bucket_bounds)] = Field(
        default_factory=lambda: {"/v1/predict": 1.0}, min_length=1
    )


class DriftObjective(Objective):
    """Share of time no modality is drifted; alerts when one stays drifted for ``for``."""

    for_: Duration = Field(default="30m", alias="for")
    severity: Literal["page", "ticket"] = "ticket"


class AccuracyObjective(Objective):
    """Share of time the label-free accuracy estimate is above ``floor`` and not more than
    ``max_drop`` under the reference estimate; alerts when it stays below for ``for``."""

    floor: UnitFloat | None = None
    max_drop: UnitFloat | None = 0.05
    for_: Duration = Field(default="30m", alias="for")
    severity: Literal["page", "ticket"] = "page"

    @model_validator(mode="after")
    def _some_bound(self) -> AccuracyObjective:
        if self.floor is None and self.max_drop is None:
            raise ValueError("set floor, max_drop or both")
        return self


class Objectives(BaseModel):
    """The objectives; one left out generates nothing."""

    model_config = ConfigDict(extra="forbid")

    availability: RouteObjective | None = None
    latency: LatencyObjective | None = None
    degraded: Objective | None = None
    firewall_block: RouteObjective | None = None
    drift: DriftObjective | None = None
    accuracy: AccuracyObjective | None = None


class SloFile(BaseModel):
    """The schema of slo.yaml (``polyfuse schema slo``); see the module docstring."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    selector: Annotated[str, AfterValidator(_matchers)] = ""
    runbooks: str = Field(default=RUNBOOK_BASE, description="base of the default runbook links")
    objectives: Objectives


def parse_slo(data: object, where: str = "slo") -> SloFile:
    """``data`` (parsed YAML) validated as an `SloFile`; `ConfigError` naming the key."""
    return validate(SloFile, data, where)


def load_slo(path: str | Path | None = None) -> SloFile:
    """Read and validate slo.yaml (the shipped `DEFAULT_SLO` when ``path`` is None)."""
    import yaml

    file = Path(path) if path is not None else DEFAULT_SLO
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(file), "SLO file not found", hint="pass --slo PATH") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(file), f"not valid YAML: {exc}") from exc
    return parse_slo(data)
