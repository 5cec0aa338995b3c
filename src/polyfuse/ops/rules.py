"""Prometheus recording and alert rules generated from an `SloFile`.

Recording rules (`recording_groups`):

- ``polyfuse-runtime``: the runtime gauges with a batcher or modality inside their name,
  normalised into labelled series (`catalogue.RUNTIME_SERIES`), and p99 latencies;
- ``polyfuse-slo-<name>`` per objective: ``polyfuse_slo:objective`` (the target) and the
  error ratio ``polyfuse_slo:sli_error:ratio_rate<w>`` over 5m, 30m, 1h, 6h, 3d and the
  objective's window (``ratio_period``), labelled ``slo`` (and ``route`` where per route).

Alert rules (`alert_groups`): for ratio objectives the multi-window, multi-burn-rate
alerts of the Google SRE workbook (chapter 5, "Alerting on SLOs"): page when 2 % of the
window's error budget burns in 1 h (14.4x for 30 days) confirmed over 5 m, or 5 % in 6 h
(6x) confirmed over 30 m; a ticket when 10 % burns in 3 d (1x) confirmed over 6 h. Drift
and accuracy are threshold alerts held for their ``for``. Every alert carries ``severity``
(page|ticket) and ``slo`` labels and ``summary``, ``description`` and ``runbook_url``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from polyfuse.core.errors import ConfigError
from polyfuse.ops.catalogue import (
    LATENCY_BUCKETS,
    LATENCY_QUANTILES,
    RUNTIME_SERIES,
    RuntimeSeries,
)
from polyfuse.ops.slo import (
    AccuracyObjective,
    DriftObjective,
    LatencyObjective,
    Objective,
    RouteObjective,
    SloFile,
    seconds,
)

#: Windows the error ratios are recorded over (the burn-rate alerts read them).
WINDOWS = ("5m", "30m", "1h", "6h", "3d")

#: Alert name of each objective (one runbook each: docs/runbooks/<alert>.md).
ALERTS: dict[str, str] = {
    "availability": "PolyfuseAvailabilityBudgetBurn",
    "latency": "PolyfuseLatencyBudgetBurn",
    "degraded": "PolyfuseDegradedBudgetBurn",
    "firewall_block": "PolyfuseFirewallBlockBudgetBurn",
    "drift": "PolyfuseModalityDrift",
    "accuracy": "PolyfuseAccuracyBelowFloor",
    "canary": "PolyfuseCanaryRolledBack",
}

#: Objectives whose error ratio is per route (the alerts carry a ``route`` label).
PER_ROUTE = frozenset({"availability", "latency", "firewall_block"})

#: What each objective's error ratio counts, for the alerts' descriptions.
BAD_EVENTS: dict[str, str] = {
    "availability": "answers with a 5xx status",
    "latency": "requests slower than the threshold",
    "degraded": "answers given without a failed modality",
    "firewall_block": "requests blocked by the firewall",
    "drift": "time with a drifted modality",
    "accuracy": "time with the accuracy estimate under its floor",
}


@dataclass(frozen=True)
class BurnPolicy:
    """One multi-window burn-rate alert: ``budget_share`` of the objective's error budget
    consumed within ``long`` (checked again over ``short`` so it resets quickly)."""

    severity: str
    long: str
    short: str
    budget_share: float
    hold: str

    def factor(self, window: str) -> float:
        """Burn rate (multiple of the sustainable error rate) the policy alerts at."""
        return round(self.budget_share * seconds(window) / seconds(self.long), 6)


#: The workbook's three policies; for a 30-day window: 14.4x, 6x and 1x.
BURN_POLICIES = (
    BurnPolicy("page", "1h", "5m", 0.02, "2m"),
    BurnPolicy("page", "6h", "30m", 0.05, "15m"),
    BurnPolicy("ticket", "3d", "6h", 0.10, "1h"),
)


@dataclass(frozen=True)
class RecordingRule:
    """``record: expr`` with extra labels."""

    record: str
    expr: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """The rule as Prometheus's rule file writes it."""
        out: dict[str, object] = {"record": self.record, "expr": self.expr}
        if self.labels:
            out["labels"] = dict(self.labels)
        return out


@dataclass(frozen=True)
class AlertRule:
    """An alert: fires once ``expr`` has returned series for ``hold`` (``for``)."""

    alert: str
    expr: str
    hold: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]

    def to_dict(self) -> dict[str, object]:
        """The rule as Prometheus's rule file writes it."""
        return {
            "alert": self.alert,
            "expr": self.expr,
            "for": self.hold,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
        }


@dataclass(frozen=True)
class RuleGroup:
    """A named group of rules, evaluated in order."""

    name: str
    rules: tuple[RecordingRule | AlertRule, ...]

    def to_dict(self) -> dict[str, object]:
        """The group as Prometheus's rule file writes it."""
        return {"name": self.name, "rules": [r.to_dict() for r in self.rules]}


# ---- PromQL building blocks ------------------------------------------------------------


def selector(metric: str, matchers: Sequence[str], extra: str = "") -> str:
    """``metric{m1,m2,extra}`` (``metric`` alone without matchers)."""
    parts = [*matchers, *([extra] if extra else [])]
    return f"{metric}{{{','.join(parts)}}}" if parts else metric


def route_matcher(routes: Sequence[str]) -> str:
    """``route="/a"`` for one route, ``route=~"/a|/b"`` (regex-escaped) for several."""
    if len(routes) == 1:
        return f'route="{routes[0]}"'
    special = set("\\.+*?()|[]{}^$")
    escaped = ["".join(f"\\\\{c}" if c in special else c for c in r) for r in routes]
    return f'route=~"{"|".join(escaped)}"'


def number(value: float) -> str:
    """A float as PromQL text without binary noise (``0.0010000000000000009`` -> ``0.001``)."""
    return format(value, ".10g")


def _ratio(bad: str, total: str) -> str:
    # `or total * 0`: a route without bad events yet has ratio 0, not no data
    return f"({bad} or {total} * 0) / {total}"


# ---- recording rules -------------------------------------------------------------------


def runtime_rule(series: RuntimeSeries, extra: str = "") -> RecordingRule:
    """The rule that turns one family of name-embedded runtime gauges into labels."""
    expr = selector("", [f'__name__=~"{series.pattern}"'], extra)
    for i, label in enumerate(series.labels, start=1):
        expr = f'label_replace({expr}, "{label}", "${i}", "__name__", "{series.pattern}")'
    return RecordingRule(series.record, expr)


def runtime_group(extra: str = "") -> RuleGroup:
    """Normalised runtime gauges and p99 latencies (the dashboards read them)."""
    rules = [runtime_rule(s, extra) for s in RUNTIME_SERIES]
    for record, (histogram, labels) in LATENCY_QUANTILES.items():
        by = ", ".join((*labels, "le"))
        rate = f"rate({selector(histogram + '_bucket', [], extra)}[5m])"
        rules.append(RecordingRule(record, f"histogram_quantile(0.99, sum by ({by}) ({rate}))"))
    return RuleGroup("polyfuse-runtime", tuple(rules))


@dataclass(frozen=True)
class Sli:
    """One error-ratio time series of an objective: its labels and its PromQL per window."""

    slo: str
    labels: Mapping[str, str]
    ratio: Mapping[str, str]  # window -> expression of the error ratio

    @property
    def all_labels(self) -> dict[str, str]:
        """``slo`` plus the SLI's own labels."""
        return {"slo": self.slo, **self.labels}


def _windows(objective: Objective) -> dict[str, str]:
    """Record-name suffix -> window: the burn windows plus the objective's period."""
    return {**{f"rate{w}": w for w in WINDOWS}, "period": objective.window}


def availability_sli(o: RouteObjective, extra: str) -> Iterator[Sli]:
    """Share of answers with a 5xx status, per route."""
    routes = route_matcher(o.routes)

    def ratio(w: str) -> str:
        req = "polyfuse_requests_total"
        errors = selector(req, [routes, 'status=~"5.."'], extra)
        bad = f"sum by (route) (rate({errors}[{w}]))"
        total = f"sum by (route) (rate({selector(req, [routes], extra)}[{w}]))"
        return _ratio(bad, total)

    yield Sli("availability", {}, {k: ratio(w) for k, w in _windows(o).items()})


def latency_sli(o: LatencyObjective, extra: str) -> Iterator[Sli]:
    """Share of requests slower than the route's threshold, one SLI per route."""
    for route, limit in o.routes.items():
        le = next(b for b in LATENCY_BUCKETS if float(b) == limit)

        def ratio(w: str, route: str = route, le: str = le) -> str:
            m = [f'route="{route}"']
            bucket = selector("polyfuse_request_seconds_bucket", [*m, f'le="{le}"'], extra)
            fast = f"rate({bucket}[{w}])"
            total = f"rate({selector('polyfuse_request_seconds_count', m, extra)}[{w}])"
            return f"1 - sum by (route) ({fast}) / sum by (route) ({total})"

        labels = {"route": route, "threshold": f"{number(limit)}s"}
        yield Sli("latency", labels, {k: ratio(w) for k, w in _windows(o).items()})


def degraded_sli(o: Objective, extra: str) -> Iterator[Sli]:
    """Share of the runtime's answers given without a failed modality."""

    def ratio(w: str) -> str:
        bad = f"sum(rate({selector('polyfuse_runtime_requests_degraded', [], extra)}[{w}]))"
        total = f"sum(rate({selector('polyfuse_runtime_requests_requests', [], extra)}[{w}]))"
        return f"{bad} / {total}"

    yield Sli("degraded", {}, {k: ratio(w) for k, w in _windows(o).items()})


def firewall_sli(o: RouteObjective, extra: str) -> Iterator[Sli]:
    """Share of requests the firewall blocked, per route."""
    routes = route_matcher(o.routes)

    def ratio(w: str) -> str:
        blocked = selector("polyfuse_errors_total", [routes, 'code="blocked_by_policy"'], extra)
        bad = f"sum by (route) (rate({blocked}[{w}]))"
        requests = selector("polyfuse_requests_total", [routes], extra)
        total = f"sum by (route) (rate({requests}[{w}]))"
        return _ratio(bad, total)

    yield Sli("firewall_block", {}, {k: ratio(w) for k, w in _windows(o).items()})


def drift_bad(extra: str) -> str:
    """1 while any modality's latest window is drifted, else 0."""
    return f"max({selector('polyfuse_monitor_drift', [], extra)}) > bool 0"


def accuracy_bad(o: AccuracyObjective, extra: str) -> str:
    """1 while the accuracy estimate is under its floor or too far under the reference."""
    est = selector("polyfuse_monitor_estimated_accuracy", [], extra)
    ref = selector("polyfuse_monitor_reference_accuracy", [], extra)
    terms = []
    if o.floor is not None:
        terms.append(f"({est} < bool {number(o.floor)})")
    if o.max_drop is not None:
        terms.append(f"({est} < bool ({ref} - {number(o.max_drop)}))")
    return f"max(clamp_max({' + '.join(terms)}, 1))"


def threshold_sli(slo: str, o: Objective) -> Sli:
    """Share of time a threshold objective's ``polyfuse_slo:bad`` was 1."""
    bad = f'polyfuse_slo:bad{{slo="{slo}"}}'
    return Sli(slo, {}, {k: f"avg_over_time({bad}[{w}])" for k, w in _windows(o).items()})


def slo_group(name: str, o: Objective, slis: Sequence[Sli], bad: str | None) -> RuleGroup:
    """The recording rules of one objective."""
    rules = [
        RecordingRule("polyfuse_slo:objective", number(o.target), {"slo": name, "window": o.window})
    ]
    if bad is not None:
        rules.append(RecordingRule("polyfuse_slo:bad", bad, {"slo": name}))
    for sli in slis:
        for suffix, expr in sli.ratio.items():
            rules.append(
                RecordingRule(f"polyfuse_slo:sli_error:ratio_{suffix}", expr, sli.all_labels)
            )
    return RuleGroup(f"polyfuse-slo-{name}", tuple(rules))


def objective_slis(slo: SloFile) -> Iterator[tuple[str, Objective, list[Sli], str | None]]:
    """(name, objective, SLIs, bad-expression of threshold objectives) per objective set."""
    o, extra = slo.objectives, slo.selector
    if o.availability is not None:
        yield "availability", o.availability, list(availability_sli(o.availability, extra)), None
    if o.latency is not None:
        yield "latency", o.latency, list(latency_sli(o.latency, extra)), None
    if o.degraded is not None:
        yield "degraded", o.degraded, list(degraded_sli(o.degraded, extra)), None
    if o.firewall_block is not None:
        fw = o.firewall_block
        yield "firewall_block", fw, list(firewall_sli(fw, extra)), None
    if o.drift is not None:
        yield "drift", o.drift, [threshold_sli("drift", o.drift)], drift_bad(extra)
    if o.accuracy is not None:
        bad = accuracy_bad(o.accuracy, extra)
        yield "accuracy", o.accuracy, [threshold_sli("accuracy", o.accuracy)], bad


def recording_groups(slo: SloFile) -> list[RuleGroup]:
    """Every recording rule group: runtime normalisation, then one group per objective."""
    groups = [runtime_group(slo.selector)]
    for name, objective, slis, bad in objective_slis(slo):
        groups.append(slo_group(name, objective, slis, bad))
    return groups


# ---- alert rules -----------------------------------------------------------------------


def runbook_url(slo: SloFile, name: str, objective: Objective) -> str:
    """The objective's runbook, or its page under ``slo.runbooks``."""
    return objective.runbook or f"{slo.runbooks.rstrip('/')}/{ALERTS[name]}.md"


def burn_alerts(slo: SloFile, name: str, o: Objective, sli: Sli) -> Iterator[AlertRule]:
    """The three burn-rate alerts of one ratio SLI."""
    budget = 1.0 - o.target
    matcher = ",".join(f'{k}="{v}"' for k, v in sli.all_labels.items())
    for policy in BURN_POLICIES:
        factor = policy.factor(o.window)
        if factor * budget >= 1.0:
            raise ConfigError(
                f"slo.objectives.{name}.target",
                f"{o.target} leaves an error budget of {number(budget)}: burning it at "
                f"{number(factor)}x over {policy.long} needs an error ratio above 1",
                hint=f"raise the target above {number(1 - 1 / factor)} or shorten the window",
            )
        threshold = f"({number(factor)} * {number(budget)})"
        expr = (
            f"polyfuse_slo:sli_error:ratio_rate{policy.long}{{{matcher}}} > {threshold}\n"
            f"and\npolyfuse_slo:sli_error:ratio_rate{policy.short}{{{matcher}}} > {threshold}"
        )
        where = " on {{ $labels.route }}" if name in PER_ROUTE else ""
        labels = {
            "severity": policy.severity,
            **sli.all_labels,
            "long_window": policy.long,
            "short_window": policy.short,
        }
        percent = number(round(policy.budget_share * 100, 4))
        annotations = {
            "summary": f"{name} error budget burning at {number(factor)}x{where}",
            "description": (
                f"{BAD_EVENTS[name].capitalize()}: {{{{ $value | humanizePercentage }}}} over "
                f"{policy.long} (and over {policy.short}); the objective allows "
                f"{number(budget * 100)} % over {o.window}. At this rate {percent} % of the "
                f"{o.window} budget is gone in {policy.long}."
            ),
            "runbook_url": runbook_url(slo, name, o),
        }
        yield AlertRule(ALERTS[name], expr, policy.hold, labels, annotations)


def drift_alert(slo: SloFile, o: DriftObjective) -> AlertRule:
    """A modality whose drift flag stays up for ``for``."""
    expr = f"max by (modality) ({selector('polyfuse_monitor_drift', [], slo.selector)}) > 0"
    return AlertRule(
        ALERTS["drift"],
        expr,
        o.for_,
        {"severity": o.severity, "slo": "drift"},
        {
            "summary": "{{ $labels.modality }} inputs drifted from the reference profile",
            "description": (
                f"The live monitor has flagged {{{{ $labels.modality }}}} as drifted for at "
                f"least {o.for_}. Check whether the drift hurts (estimated accuracy with and "
                f"without the modality) before acting."
            ),
            "runbook_url": runbook_url(slo, "drift", o),
        },
    )


def accuracy_alert(slo: SloFile, o: AccuracyObjective) -> AlertRule:
    """The label-free accuracy estimate under its floor (or too far under the reference)."""
    est = selector("polyfuse_monitor_estimated_accuracy", [], slo.selector)
    ref = selector("polyfuse_monitor_reference_accuracy", [], slo.selector)
    terms, bounds = [], []
    if o.floor is not None:
        terms.append(f"{est} < {number(o.floor)}")
        bounds.append(f"the floor {number(o.floor)}")
    if o.max_drop is not None:
        terms.append(f"{est} < ({ref} - {number(o.max_drop)})")
        bounds.append(f"{number(o.max_drop)} under the reference estimate")
    return AlertRule(
        ALERTS["accuracy"],
        "\nor\n".join(terms),
        o.for_,
        {"severity": o.severity, "slo": "accuracy"},
        {
            "summary": "estimated accuracy {{ $value | humanizePercentage }} is under its floor",
            "description": (
                f"The label-free accuracy estimate has been under {' or '.join(bounds)} "
                f"for at least {o.for_}."
            ),
            "runbook_url": runbook_url(slo, "accuracy", o),
        },
    )


def canary_alert(slo: SloFile) -> AlertRule:
    """A canary the service rolled back (its sequential test found it worse, or an
    operator took its traffic away): no SLO, a fact to look at. Generated always; a
    service without a canary never has the series."""
    expr = f"max by (version) ({selector('polyfuse_canary_rolled_back', [], slo.selector)}) > 0"
    return AlertRule(
        ALERTS["canary"],
        expr,
        "0m",
        {"severity": "ticket", "slo": "canary"},
        {
            "summary": "canary {{ $labels.version }} was rolled back",
            "description": (
                "The service took all traffic away from canary {{ $labels.version }}: its "
                "sequential test found it worse than the champion with confidence (or an "
                "operator rolled it back). GET /v1/versions shows the decision and its evidence."
            ),
            "runbook_url": f"{slo.runbooks.rstrip('/')}/{ALERTS['canary']}.md",
        },
    )


def alert_groups(slo: SloFile) -> list[RuleGroup]:
    """One alert group per objective, and the canary's."""
    groups = []
    for name, objective, slis, _ in objective_slis(slo):
        rules: list[RecordingRule | AlertRule] = []
        if isinstance(objective, DriftObjective):
            rules.append(drift_alert(slo, objective))
        elif isinstance(objective, AccuracyObjective):
            rules.append(accuracy_alert(slo, objective))
        else:
            for sli in slis:
                rules.extend(burn_alerts(slo, name, objective, sli))
        groups.append(RuleGroup(f"polyfuse-alerts-{name}", tuple(rules)))
    groups.append(RuleGroup("polyfuse-alerts-canary", (canary_alert(slo),)))
    return groups


@dataclass(frozen=True)
class RuleFiles:
    """The two rule files `write_rules` wrote."""

    recording: Path
    alerts: Path


RECORDING_FILE = "polyfuse-recording.rules.yml"
ALERTS_FILE = "polyfuse-alerts.rules.yml"


def render(groups: Sequence[RuleGroup]) -> str:
    """A Prometheus rule file (YAML) of ``groups``."""
    import yaml

    class Dumper(yaml.SafeDumper):
        """Multi-line expressions as literal blocks (``|``), as people write them."""

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    header = "# Generated by `polyfuse ops rules` from slo.yaml: edit slo.yaml, not this file.\n"
    body = yaml.dump(
        {"groups": [g.to_dict() for g in groups]},
        Dumper=Dumper,
        sort_keys=False,
        width=100,
        allow_unicode=True,
    )
    return header + body


def write_rules(slo: SloFile, out: str | Path) -> RuleFiles:
    """Write the recording and the alert rule files into ``out`` (created)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    files = RuleFiles(folder / RECORDING_FILE, folder / ALERTS_FILE)
    files.recording.write_text(render(recording_groups(slo)), encoding="utf-8")
    files.alerts.write_text(render(alert_groups(slo)), encoding="utf-8")
    return files
