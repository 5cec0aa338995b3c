"""The rule generator by hand-computed tables: burn factors, thresholds, labels, runbooks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from polyfuse.core.errors import ConfigError
from polyfuse.ops.rules import (
    ALERTS,
    BURN_POLICIES,
    AlertRule,
    RecordingRule,
    alert_groups,
    recording_groups,
    route_matcher,
    write_rules,
)
from polyfuse.ops.slo import DEFAULT_SLO, load_slo, parse_slo

RUNBOOKS = Path(__file__).resolve().parents[2] / "docs" / "runbooks"


@pytest.mark.parametrize(
    ("window", "factors"),
    [
        ("30d", (14.4, 6.0, 1.0)),  # the workbook's numbers
        ("28d", (13.44, 5.6, 0.933333)),
        ("7d", (3.36, 1.4, 0.233333)),
    ],
)
def test_burn_factors_spend_2_5_10_percent_of_the_budget(
    window: str, factors: tuple[float, ...]
) -> None:
    assert tuple(p.factor(window) for p in BURN_POLICIES) == factors


def _alerts(data: dict[str, object], canary: bool = False) -> list[AlertRule]:
    """The alerts of the objectives in ``data`` (and the canary's, always generated)."""
    slo = parse_slo(data)
    groups = [g for g in alert_groups(slo) if canary or g.name != "polyfuse-alerts-canary"]
    return [r for g in groups for r in g.rules if isinstance(r, AlertRule)]


def test_the_canary_alert_is_generated_without_an_objective() -> None:
    (alert,) = _alerts({"selector": 'job="polyfuse"', "objectives": {}}, canary=True)
    assert alert.alert == "PolyfuseCanaryRolledBack" and alert.hold == "0m"
    assert alert.expr == 'max by (version) (polyfuse_canary_rolled_back{job="polyfuse"}) > 0'
    assert alert.labels == {"severity": "ticket", "slo": "canary"}
    assert alert.annotations["runbook_url"].endswith("/docs/runbooks/PolyfuseCanaryRolledBack.md")


def test_availability_gets_three_burn_alerts_with_workbook_windows() -> None:
    alerts = _alerts({"objectives": {"availability": {"target": 0.999}}})
    got = [
        (a.labels["severity"], a.labels["long_window"], a.labels["short_window"], a.hold)
        for a in alerts
    ]
    assert got == [
        ("page", "1h", "5m", "2m"),
        ("page", "6h", "30m", "15m"),
        ("ticket", "3d", "6h", "1h"),
    ]
    assert {a.alert for a in alerts} == {"PolyfuseAvailabilityBudgetBurn"}
    assert alerts[0].expr == (
        'polyfuse_slo:sli_error:ratio_rate1h{slo="availability"} > (14.4 * 0.001)\n'
        "and\n"
        'polyfuse_slo:sli_error:ratio_rate5m{slo="availability"} > (14.4 * 0.001)'
    )
    assert alerts[2].expr.startswith(
        'polyfuse_slo:sli_error:ratio_rate3d{slo="availability"} > (1 * 0.001)'
    )


def test_latency_alerts_are_per_route_and_threshold() -> None:
    alerts = _alerts(
        {"objectives": {"latency": {"target": 0.99, "routes": {"/a": 0.5, "/b": 2.5}}}}
    )
    assert len(alerts) == 6
    assert {(a.labels["route"], a.labels["threshold"]) for a in alerts} == {
        ("/a", "0.5s"),
        ("/b", "2.5s"),
    }
    assert 'route="/a",threshold="0.5s"' in alerts[0].expr and "(14.4 * 0.01)" in alerts[0].expr


def test_latency_ratio_reads_the_threshold_bucket() -> None:
    slo = parse_slo({"objectives": {"latency": {"target": 0.99, "routes": {"/a": 1.0}}}})
    rules = [r for g in recording_groups(slo) for r in g.rules if isinstance(r, RecordingRule)]
    five = next(r for r in rules if r.record == "polyfuse_slo:sli_error:ratio_rate5m")
    assert 'polyfuse_request_seconds_bucket{route="/a",le="1.0"}[5m]' in five.expr
    assert five.labels == {"slo": "latency", "route": "/a", "threshold": "1s"}


def test_objective_window_is_recorded_as_the_period() -> None:
    slo = parse_slo({"objectives": {"degraded": {"target": 0.95, "window": "28d"}}})
    rules = {
        r.record: r for g in recording_groups(slo) for r in g.rules if isinstance(r, RecordingRule)
    }
    assert "[28d]" in rules["polyfuse_slo:sli_error:ratio_period"].expr
    assert rules["polyfuse_slo:objective"].expr == "0.95"
    assert rules["polyfuse_slo:objective"].labels == {"slo": "degraded", "window": "28d"}


def test_a_target_too_low_to_page_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        _alerts({"objectives": {"availability": {"target": 0.9}}})
    assert info.value.key == "slo.objectives.availability.target"
    assert "14.4x" in str(info.value) and "0.9305" in (info.value.hint or "")


def test_selector_goes_into_every_raw_selector() -> None:
    slo = parse_slo(
        {
            "selector": 'job="api"',
            "objectives": {
                "availability": {"target": 0.999, "routes": ["/a"]},
                "degraded": {"target": 0.9},
            },
        }
    )
    text = yaml.safe_dump([g.to_dict() for g in recording_groups(slo)])
    raw = re.findall(r"(?:polyfuse_[a-z_]+)?\{[^}]*\}", text)
    assert len(raw) > 20 and all('job="api"' in r for r in raw), raw


@pytest.mark.parametrize(
    ("routes", "matcher"),
    [
        (["/v1/predict"], 'route="/v1/predict"'),
        (["/a", "/b"], 'route=~"/a|/b"'),
        (
            ["/v1/predict", "/v2/models/{model}/infer"],
            r'route=~"/v1/predict|/v2/models/\\{model\\}/infer"',
        ),
    ],
)
def test_route_matcher(routes: list[str], matcher: str) -> None:
    assert route_matcher(routes) == matcher


def test_drift_and_accuracy_are_threshold_alerts() -> None:
    alerts = {
        a.alert: a
        for a in _alerts(
            {
                "objectives": {
                    "drift": {"target": 0.95, "for": "45m"},
                    "accuracy": {"target": 0.95, "floor": 0.7, "max_drop": 0.1},
                }
            }
        )
    }
    drift, accuracy = alerts["PolyfuseModalityDrift"], alerts["PolyfuseAccuracyBelowFloor"]
    assert drift.expr == "max by (modality) (polyfuse_monitor_drift) > 0" and drift.hold == "45m"
    assert drift.labels == {"severity": "ticket", "slo": "drift"}
    assert accuracy.expr == (
        "polyfuse_monitor_estimated_accuracy < 0.7\nor\n"
        "polyfuse_monitor_estimated_accuracy < (polyfuse_monitor_reference_accuracy - 0.1)"
    )
    assert accuracy.labels == {"severity": "page", "slo": "accuracy"}


def test_every_alert_has_summary_description_and_runbook() -> None:
    for alert in _alerts(yaml.safe_load(Path(DEFAULT_SLO).read_text()), canary=True):
        assert set(alert.annotations) == {"summary", "description", "runbook_url"}
        assert alert.labels["severity"] in ("page", "ticket")
        assert alert.annotations["runbook_url"].endswith(f"/docs/runbooks/{alert.alert}.md")


def test_every_generated_alert_has_a_runbook_file_and_every_runbook_an_alert() -> None:
    names = {a.alert for a in _alerts(yaml.safe_load(Path(DEFAULT_SLO).read_text()), canary=True)}
    assert names == set(ALERTS.values())
    files = {p.stem for p in RUNBOOKS.glob("*.md") if p.stem != "README"}
    assert files == names
    for name in names:
        text = (RUNBOOKS / f"{name}.md").read_text(encoding="utf-8")
        assert text.startswith(f"# {name}")
        for section in ("## Symptom", "## Checks", "## Mitigation", "## Rollback"):
            assert section in text, f"{name}.md lacks {section}"
        assert "```promql" in text and "polyfuse " in text


def test_runbook_queries_name_only_catalogued_series() -> None:
    from tests.ops.test_dashboards import unknown_names

    for path in RUNBOOKS.glob("Polyfuse*.md"):
        blocks = re.findall(r"```promql\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
        for block in blocks:
            assert not unknown_names(block), (path.name, unknown_names(block))


def test_an_objective_with_its_own_runbook_keeps_it() -> None:
    alerts = _alerts({"objectives": {"degraded": {"target": 0.95, "runbook": "https://wiki/x"}}})
    assert {a.annotations["runbook_url"] for a in alerts} == {"https://wiki/x"}


def test_written_files_are_prometheus_rule_files(tmp_path: Path) -> None:
    files = write_rules(load_slo(), tmp_path)
    recording = yaml.safe_load(files.recording.read_text())
    alerts = yaml.safe_load(files.alerts.read_text())
    assert [g["name"] for g in recording["groups"]][:2] == [
        "polyfuse-runtime",
        "polyfuse-slo-availability",
    ]
    assert all("record" in r for g in recording["groups"] for r in g["rules"])
    assert all("alert" in r and "for" in r for g in alerts["groups"] for r in g["rules"])
