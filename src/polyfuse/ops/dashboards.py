"""Grafana dashboards of a polyfuse service, generated from code as plain JSON.

Three dashboards, each a list of `Panel`:

- **executive**: SLO attainment, error budget remaining, the label-free accuracy estimate;
- **on-call**: burn rates, latency per route, stage and modality, errors, breakers, queues,
  quarantine, degraded answers by reason;
- **debug**: per-modality drift score and p-value, missing rates, cache, batch sizes, batch
  times, firewall findings.

Every query names only series of `polyfuse.ops.catalogue` (raw metrics or what the
generated recording rules write), so ``polyfuse ops rules`` must be loaded in the
Prometheus the dashboards read. The datasource is a template variable (``${datasource}``)
chosen when the dashboard is imported.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

PanelKind = Literal["timeseries", "stat", "table"]

#: Grafana's dashboard JSON schema version the output follows (Grafana 10.x / 11.x).
SCHEMA_VERSION = 39
_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
_STAGE_P99 = (
    "histogram_quantile(0.99, sum by (stage, le) "
    '(rate(polyfuse_stage_seconds_bucket{{stage{op}"runtime:(preprocess|encode):.+"}}[5m])))'
)
_BURN = "polyfuse_slo:sli_error:ratio_{w} / on (slo) group_left () (1 - polyfuse_slo:objective)"


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel and its legend (``{{label}}`` placeholders)."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """One panel: a title, its queries, how to draw them and the unit of the values."""

    title: str
    targets: tuple[Target, ...]
    kind: PanelKind = "timeseries"
    unit: str = "short"
    description: str = ""
    width: int = 12


@dataclass(frozen=True)
class Dashboard:
    """A dashboard: a stable uid (links survive re-imports), a title, its panels."""

    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """The dashboard as Grafana imports it."""
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["polyfuse"],
            "timezone": "utc",
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "editable": True,
            "refresh": "30s",
            "time": {"from": "now-6h", "to": "now"},
            "templating": {"list": [_datasource_variable()]},
            "annotations": {"list": []},
            "links": [],
            "panels": _layout(self.panels),
        }


def _datasource_variable() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "options": [],
    }


def _layout(panels: Sequence[Panel]) -> list[dict[str, Any]]:
    """Panels left to right, wrapping at Grafana's 24 columns."""
    out, x, y, row_height = [], 0, 0, 0
    for i, panel in enumerate(panels, start=1):
        height = 5 if panel.kind == "stat" else 8
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        out.append(_panel_json(panel, i, {"x": x, "y": y, "w": panel.width, "h": height}))
        x, row_height = x + panel.width, max(row_height, height)
    return out


def _panel_json(panel: Panel, panel_id: int, grid: dict[str, int]) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": _DATASOURCE,
        "gridPos": grid,
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": _DATASOURCE,
                "expr": t.expr,
                "legendFormat": t.legend,
                "instant": panel.kind != "timeseries",
                "range": panel.kind == "timeseries",
            }
            for i, t in enumerate(panel.targets)
        ],
    }


def _p(title: str, *targets: Target, **options: Any) -> Panel:
    return Panel(title, tuple(targets), **options)


def executive() -> Dashboard:
    """SLO attainment, error budget and the accuracy estimate, for people who decide."""
    return Dashboard(
        "polyfuse-executive",
        "polyfuse: executive",
        "Are we meeting our objectives, how much error budget is left, is the model accurate?",
        (
            _p(
                "SLO attainment over each objective's window",
                Target("1 - polyfuse_slo:sli_error:ratio_period", "{{slo}} {{route}}"),
                kind="stat",
                unit="percentunit",
                width=12,
            ),
            _p(
                "Error budget remaining",
                Target(
                    "1 - polyfuse_slo:sli_error:ratio_period / on (slo) group_left () "
                    "(1 - polyfuse_slo:objective)",
                    "{{slo}} {{route}}",
                ),
                kind="stat",
                unit="percentunit",
                width=12,
            ),
            _p(
                "Objectives",
                Target("polyfuse_slo:objective", "{{slo}} over {{window}}"),
                kind="table",
                unit="percentunit",
            ),
            _p(
                "Estimated accuracy (label-free) vs reference",
                Target("polyfuse_monitor_estimated_accuracy", "estimated"),
                Target("polyfuse_monitor_reference_accuracy", "reference"),
                Target("polyfuse_monitor_observed_accuracy", "observed (delayed labels)"),
                unit="percentunit",
            ),
            _p(
                "Accuracy from delayed labels (feedback, 1 d)",
                Target(
                    'sum(rate(polyfuse_feedback_total{outcome="correct"}[1d])) / '
                    "sum(rate(polyfuse_feedback_total[1d]))",
                    "labelled accuracy",
                ),
                unit="percentunit",
            ),
            _p(
                "Unimodal heads agreeing with the fusion",
                Target("polyfuse_monitor_agreement_rate", "agreement"),
                unit="percentunit",
            ),
            _p(
                "Traffic by route",
                Target("sum by (route) (rate(polyfuse_requests_total[5m]))", "{{route}}"),
                unit="reqps",
            ),
        ),
    )


def on_call() -> Dashboard:
    """What the person paged looks at: burn rates and the service's moving parts."""
    return Dashboard(
        "polyfuse-on-call",
        "polyfuse: on-call",
        "Burn rates, latency per route, stage and modality, errors, breakers, queues, "
        "quarantine and degraded answers.",
        (
            _p(
                "Error budget burn rate (1 = on budget; page at 14.4 over 1h, 6 over 6h)",
                Target(_BURN.format(w="rate5m"), "{{slo}} {{route}} 5m"),
                Target(_BURN.format(w="rate1h"), "{{slo}} {{route}} 1h"),
                Target(_BURN.format(w="rate6h"), "{{slo}} {{route}} 6h"),
                width=24,
            ),
            _p(
                "Latency p99 per route",
                Target("polyfuse:request_seconds:p99_rate5m", "{{route}}"),
                unit="s",
            ),
            _p(
                "Latency p99 per stage",
                Target(
                    _STAGE_P99.format(op="!~"),
                    "{{stage}}",
                ),
                unit="s",
            ),
            _p(
                "Latency p99 per modality (preprocess, encode)",
                Target(
                    _STAGE_P99.format(op="=~"),
                    "{{stage}}",
                ),
                unit="s",
            ),
            _p(
                "Errors by route and code",
                Target(
                    "sum by (route, code) (rate(polyfuse_errors_total[5m]))", "{{route}} {{code}}"
                ),
                unit="reqps",
            ),
            _p(
                "Breaker state per modality",
                Target(
                    "max by (modality, state) (polyfuse:runtime_breaker_state)",
                    "{{modality}} {{state}}",
                ),
                kind="table",
            ),
            _p(
                "Queue depth and items in flight per batcher",
                Target("sum by (batcher) (polyfuse:runtime_queue_depth)", "{{batcher}} queued"),
                Target("sum by (batcher) (polyfuse:runtime_in_flight)", "{{batcher}} in flight"),
            ),
            _p(
                "Items refused by full queues",
                Target("sum by (batcher) (rate(polyfuse:runtime_rejected[5m]))", "{{batcher}}"),
                unit="ops",
            ),
            _p(
                "Quarantined modalities",
                Target("max by (modality) (polyfuse_monitor_quarantined)", "{{modality}}"),
            ),
            _p(
                "Degraded answers by modality and reason",
                Target(
                    "sum by (modality, reason) (rate(polyfuse_degraded_total[5m]))",
                    "{{modality}} {{reason}}",
                ),
                unit="reqps",
            ),
            _p(
                "Answers without a modality",
                Target(
                    "sum by (modality) (rate(polyfuse_missing_modality_total[5m]))",
                    "{{modality}}",
                ),
                unit="reqps",
            ),
        ),
    )


def debug() -> Dashboard:
    """Per-modality drift and the runtime's internals, for finding the cause."""
    return Dashboard(
        "polyfuse-debug",
        "polyfuse: debug",
        "Per-modality drift, missing rates, cache, batching and firewall findings.",
        (
            _p(
                "Drift flag per modality",
                Target("max by (modality) (polyfuse_monitor_drift)", "{{modality}}"),
            ),
            _p(
                "Drift score per modality",
                Target("max by (modality) (polyfuse_monitor_drift_score)", "{{modality}}"),
            ),
            _p(
                "Drift p-value per modality",
                Target("min by (modality) (polyfuse_monitor_p_value)", "{{modality}}"),
            ),
            _p(
                "Missing rate per modality (monitor window)",
                Target("max by (modality) (polyfuse_monitor_missing_rate)", "{{modality}}"),
                Target("sum(polyfuse_monitor_window_samples)", "window samples"),
                unit="percentunit",
            ),
            _p(
                "Monitor windows assessed (1 h)",
                Target("sum(changes(polyfuse_monitor_windows[1h]))", "windows"),
            ),
            _p(
                "Answers without a modality (share of runtime requests)",
                Target(
                    "sum by (modality) (rate(polyfuse_missing_modality_total[5m])) / scalar("
                    "sum(rate(polyfuse_runtime_requests_requests[5m])))",
                    "{{modality}}",
                ),
                unit="percentunit",
            ),
            _p(
                "Embedding cache",
                Target("avg(polyfuse_runtime_cache_hit_ratio)", "hit ratio"),
                Target(
                    "sum(rate(polyfuse_runtime_cache_hits[5m])) / "
                    "(sum(rate(polyfuse_runtime_cache_hits[5m])) "
                    "+ sum(rate(polyfuse_runtime_cache_misses[5m])))",
                    "hit ratio (5m)",
                ),
                unit="percentunit",
            ),
            _p(
                "Cache size",
                Target("sum(polyfuse_runtime_cache_entries)", "entries"),
                Target("sum(polyfuse_runtime_cache_bytes)", "bytes"),
                Target("sum(rate(polyfuse_runtime_cache_evictions[5m]))", "evictions/s"),
            ),
            _p(
                "Mean batch size per batcher",
                Target(
                    "sum by (batcher) (rate(polyfuse:runtime_batch_items[5m])) / "
                    "sum by (batcher) (rate(polyfuse:runtime_batches[5m]))",
                    "{{batcher}}",
                ),
            ),
            _p(
                "Batches per size",
                Target(
                    "sum by (batcher, size) (polyfuse:runtime_batch_sizes)",
                    "{{batcher}} x{{size}}",
                ),
                kind="table",
            ),
            _p(
                "Mean batch time per batcher",
                Target("max by (batcher) (polyfuse:runtime_batch_ms)", "{{batcher}}"),
                unit="ms",
            ),
            _p(
                "Firewall findings by type and action",
                Target(
                    "sum by (type, action) (rate(polyfuse_firewall_findings_total[5m]))",
                    "{{type}} {{action}}",
                ),
                unit="ops",
            ),
            _p(
                "Firewall block rate per route",
                Target('polyfuse_slo:sli_error:ratio_rate5m{slo="firewall_block"}', "{{route}} 5m"),
                Target('polyfuse_slo:sli_error:ratio_rate1h{slo="firewall_block"}', "{{route}} 1h"),
                unit="percentunit",
            ),
        ),
    )


#: The dashboards by file stem.
DASHBOARDS = {"executive": executive, "on-call": on_call, "debug": debug}


def all_dashboards() -> list[Dashboard]:
    """Every dashboard."""
    return [make() for make in DASHBOARDS.values()]


def write_dashboards(out: str | Path) -> list[Path]:
    """Write ``polyfuse-<name>.json`` per dashboard into ``out`` (created)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, make in DASHBOARDS.items():
        path = folder / f"polyfuse-{name}.json"
        path.write_text(json.dumps(make().to_json(), indent=2) + "\n", encoding="utf-8")
        paths.append(path)
    return paths
