"""The generated rules through Prometheus's own tooling: ``promtool check rules`` and
``promtool test rules`` with series that burn an error budget at 14.4x, 6x and 1x (the
right alert fires, with exact labels and annotations) and healthy series (nothing fires)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from polyfuse.ops.rules import AlertRule, alert_groups, write_rules
from polyfuse.ops.slo import SloFile, load_slo


def counter(*phases: tuple[int, int]) -> str:
    """promtool series notation of a counter scraped every minute: ``(increase per
    minute, minutes)`` per phase, e.g. ``counter((0, 4320), (26, 60))``."""
    (step, minutes), *rest = phases
    parts, value = [f"0+{step}x{minutes}"], step * minutes
    for step, minutes in rest:
        parts.append(f"{value + step}+{step}x{minutes - 1}")
        value += step * minutes
    return " ".join(parts)


def gauge(*phases: tuple[float, int]) -> str:
    """A gauge holding each value for its minutes."""
    (first, minutes), *rest = phases
    return " ".join([f"{first}x{minutes}", *(f"{v}x{m - 1}" for v, m in rest)])


def humanize_percentage(value: float) -> str:
    """Prometheus's ``humanizePercentage`` template function (``%.4g%%`` of value * 100)."""
    return f"{value * 100:.4g}%"


@dataclass(frozen=True)
class Scenario:
    """Series and the alerts expected to fire at the end of one promtool test group."""

    name: str
    series: dict[str, str]
    minutes: int
    expected: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)
    # alert name -> (labels, $value) of each alert that fires; a name with [] fires nothing


STEP = 2  # minutes between samples and between rule evaluations
HEALTHY = 3 * 24 * 60 // STEP  # samples of health before a burn: the 3 d window sees health
END = HEALTHY + 370 // STEP  # every long series ends here (a 6 h burn plus margin)
REQUESTS = "polyfuse_requests_total"
AVAILABILITY = "PolyfuseAvailabilityBudgetBurn"


def requests(
    route: str, good: int, bad: list[tuple[int, int]], status: str = "500"
) -> dict[str, str]:
    """A route's 200s at ``good`` per sample and its ``status`` answers in phases."""
    return {
        f'{REQUESTS}{{route="{route}",status="200"}}': counter((good, END)),
        f'{REQUESTS}{{route="{route}",status="{status}"}}': counter(*bad),
    }


def page_fast(route: str) -> dict[str, str]:
    return {"severity": "page", "route": route, "long_window": "1h", "short_window": "5m"}


def page_slow(route: str) -> dict[str, str]:
    return {"severity": "page", "route": route, "long_window": "6h", "short_window": "30m"}


def ticket(route: str) -> dict[str, str]:
    return {"severity": "ticket", "route": route, "long_window": "3d", "short_window": "6h"}


FAST, SLOW = 70 // STEP, 370 // STEP  # burn lengths in samples: each window sees only burn

#: Routes of the availability and firewall objectives in the test SLO (one scenario each).
ROUTES = ["/fast", "/slow", "/ticket", "/healthy", "/blocked"]

SCENARIOS = [
    Scenario(
        "burn rates after 3 d: 25x for 70 min (fast page), 9x for 370 min (slow page), "
        "2x throughout (ticket), 0.5x (nothing); latency, degraded and firewall likewise",
        {
            # 1 bad per 10000 while healthy (0.1x): counters never start a window at zero
            **requests("/fast", 10000, [(1, END - FAST), (260, FAST)]),
            **requests("/slow", 10000, [(1, END - SLOW), (90, SLOW)]),
            **requests("/ticket", 1000, [(2, END)]),
            **requests("/healthy", 2000, [(1, END)]),
            **requests("/blocked", 980, [(20, END)], status="422"),
            'polyfuse_errors_total{route="/blocked",code="blocked_by_policy"}': counter((20, END)),
            'polyfuse_request_seconds_bucket{route="/v1/predict",le="1.0"}': counter(
                (1000, END - FAST), (800, FAST)
            ),
            'polyfuse_request_seconds_count{route="/v1/predict"}': counter((1000, END)),
            "polyfuse_runtime_requests_requests": counter((100, END)),
            "polyfuse_runtime_requests_degraded": counter((1, END - SLOW), (35, SLOW)),
        },
        END * STEP,
        {
            AVAILABILITY: [
                (page_fast("/fast"), 260 / 10260),
                (page_slow("/slow"), 90 / 10090),
                (ticket("/ticket"), 2 / 1002),
            ],
            "PolyfuseLatencyBudgetBurn": [
                ({**page_fast("/v1/predict"), "threshold": "1s"}, 1 - 800 / 1000)
            ],
            "PolyfuseDegradedBudgetBurn": [
                ({"severity": "page", "long_window": "6h", "short_window": "30m"}, 35 / 100)
            ],
            "PolyfuseFirewallBlockBudgetBurn": [(ticket("/blocked"), 20 / 1000)],
        },
    ),
    Scenario(
        "drift: audio flagged for 40 min (over the 30 min hold) fires, video for 20 min not",
        {
            'polyfuse_monitor_drift{modality="audio"}': gauge((0, 5), (1, 21)),
            'polyfuse_monitor_drift{modality="video"}': gauge((0, 15), (1, 11)),
            'polyfuse_monitor_drift{modality="image"}': gauge((0, 26)),
        },
        50,
        {"PolyfuseModalityDrift": [({"severity": "ticket", "modality": "audio"}, 1.0)]},
    ),
    Scenario(
        "accuracy: 10 points under the reference for 40 min fires",
        {
            "polyfuse_monitor_estimated_accuracy": gauge((0.9, 5), (0.8, 21)),
            "polyfuse_monitor_reference_accuracy": gauge((0.9, 26)),
        },
        50,
        {"PolyfuseAccuracyBelowFloor": [({"severity": "page"}, 0.8)]},
    ),
    Scenario(
        "canary: a rolled-back canary fires at once; one still serving does not",
        {
            'polyfuse_canary_rolled_back{version="digits-v4-aa11bb22"}': gauge((0, 10), (1, 16)),
            'polyfuse_canary_rolled_back{version="digits-v5-cc33dd44"}': gauge((0, 26)),
        },
        50,
        {
            "PolyfuseCanaryRolledBack": [
                ({"severity": "ticket", "version": "digits-v4-aa11bb22"}, 1)
            ]
        },
    ),
    Scenario(
        "accuracy: 3 points under the reference (allowed drop 5) fires nothing",
        {
            "polyfuse_monitor_estimated_accuracy": gauge((0.87, 26)),
            "polyfuse_monitor_reference_accuracy": gauge((0.9, 26)),
        },
        50,
        {"PolyfuseAccuracyBelowFloor": []},
    ),
]

SLO_OF = {
    AVAILABILITY: "availability",
    "PolyfuseLatencyBudgetBurn": "latency",
    "PolyfuseDegradedBudgetBurn": "degraded",
    "PolyfuseFirewallBlockBudgetBurn": "firewall_block",
    "PolyfuseModalityDrift": "drift",
    "PolyfuseAccuracyBelowFloor": "accuracy",
    "PolyfuseCanaryRolledBack": "canary",
}


def scenario_slo() -> SloFile:
    """The shipped slo.yaml, with one availability and firewall route per scenario."""
    slo = load_slo()
    assert slo.objectives.availability is not None and slo.objectives.firewall_block is not None
    slo.objectives.availability.routes = ROUTES
    slo.objectives.firewall_block.routes = ROUTES
    return slo


def _rule_for(alert: str, labels: dict[str, str]) -> AlertRule:
    """The generated rule an expected alert comes from (same name and window labels)."""
    for group in alert_groups(scenario_slo()):
        for rule in group.rules:
            if (
                isinstance(rule, AlertRule)
                and rule.alert == alert
                and all(labels.get(k, v) == v for k, v in rule.labels.items())
            ):
                return rule
    raise AssertionError(f"no generated rule for {alert} {labels}")


def _expected(alert: str, fires: list[tuple[dict[str, str], float]]) -> list[dict[str, Any]]:
    """promtool's exp_alerts: exact labels and the annotations rendered by hand."""
    out = []
    for fired, value in fires:
        labels = {"slo": SLO_OF[alert], **fired}
        annotations = {}
        for key, template in _rule_for(alert, labels).annotations.items():
            text = template.replace("{{ $value | humanizePercentage }}", humanize_percentage(value))
            for name, label in labels.items():
                text = text.replace(f"{{{{ $labels.{name} }}}}", label)
            annotations[key] = text
        out.append({"exp_labels": labels, "exp_annotations": annotations})
    return out


def _test_file(rules: list[Path], scenarios: list[Scenario]) -> dict[str, Any]:
    """A promtool test file: per scenario, every alert name, expected to fire or not."""
    return {
        "rule_files": [str(p) for p in rules],
        "evaluation_interval": f"{STEP}m",
        "tests": [
            {
                "name": s.name,
                "interval": f"{STEP}m",
                "input_series": [{"series": k, "values": v} for k, v in s.series.items()],
                "alert_rule_test": [
                    {
                        "eval_time": f"{s.minutes}m",
                        "alertname": alert,
                        "exp_alerts": _expected(alert, s.expected.get(alert, [])),
                    }
                    for alert in SLO_OF
                ],
            }
            for s in scenarios
        ],
    }


def _promtool_test(
    promtool: str, content: dict[str, Any], path: Path
) -> subprocess.CompletedProcess[str]:
    path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    return subprocess.run(
        [promtool, "test", "rules", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    files = write_rules(scenario_slo(), tmp_path_factory.mktemp("rules"))
    return [files.recording, files.alerts]


def test_promtool_checks_the_generated_rules(promtool: str, rules: list[Path]) -> None:
    done = subprocess.run(
        [promtool, "check", "rules", *map(str, rules)], check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout and "FAILED" not in done.stdout


def test_the_shipped_slo_rules_pass_promtool_check(promtool: str, tmp_path: Path) -> None:
    files = write_rules(load_slo(), tmp_path)
    done = subprocess.run(
        [promtool, "check", "rules", str(files.recording), str(files.alerts)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_burn_rates_fire_the_right_alerts_in_promtool(
    promtool: str, rules: list[Path], tmp_path: Path
) -> None:
    done = _promtool_test(promtool, _test_file(rules, SCENARIOS), tmp_path / "slo_test.yml")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "SUCCESS" in done.stdout


@pytest.mark.parametrize(
    ("index", "alert", "wrong"),
    [
        (1, "PolyfuseModalityDrift", ({"severity": "ticket", "modality": "video"}, 1.0)),
        (3, "PolyfuseAccuracyBelowFloor", ({"severity": "page"}, 0.87)),
    ],
    ids=["drift-wrong-modality", "accuracy-fires-within-the-allowed-drop"],
)
def test_promtool_notices_a_wrong_expectation(
    promtool: str,
    rules: list[Path],
    tmp_path: Path,
    index: int,
    alert: str,
    wrong: tuple[dict[str, str], float],
) -> None:
    """The harness can fail: a short scenario with a wrong expectation is refused."""
    scenario = SCENARIOS[index]
    changed = Scenario(scenario.name, scenario.series, scenario.minutes, {alert: [wrong]})
    done = _promtool_test(promtool, _test_file(rules, [changed]), tmp_path / "wrong.yml")
    assert done.returncode == 1 and "FAILED" in done.stdout + done.stderr
