"""slo.yaml validation: every mistake is a ConfigError naming the key and how to fix it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from polyfuse.cli import main
from polyfuse.core.errors import ConfigError
from polyfuse.ops.slo import DEFAULT_SLO, load_slo, parse_slo, seconds


def test_the_shipped_slo_has_every_objective() -> None:
    slo = load_slo()
    o = slo.objectives
    assert all(
        x is not None
        for x in (o.availability, o.latency, o.degraded, o.firewall_block, o.drift, o.accuracy)
    )
    assert o.availability is not None and o.availability.target == 0.999
    assert o.availability.window == "30d" and DEFAULT_SLO.is_file()


@pytest.mark.parametrize(
    ("duration", "expected"),
    [("5m", 300), ("1h", 3600), ("3d", 259200), ("30d", 2592000), ("2w", 1209600)],
)
def test_durations(duration: str, expected: int) -> None:
    assert seconds(duration) == expected


BAD: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "unknown objective",
        {"objectives": {"availabilty": {"target": 0.99}}},
        "slo.objectives.availabilty: unknown key",
        "availability",
    ),
    (
        "target of 1 leaves no budget",
        {"objectives": {"availability": {"target": 1.0}}},
        "slo.objectives.availability.target",
        "[0.5, 1)",
    ),
    (
        "window without a unit",
        {"objectives": {"degraded": {"target": 0.95, "window": "30"}}},
        "slo.objectives.degraded.window",
        "30d",
    ),
    (
        "latency threshold between histogram bounds",
        {"objectives": {"latency": {"target": 0.99, "routes": {"/v1/predict": 0.3}}}},
        "slo.objectives.latency.routes",
        "0.25, 0.5",
    ),
    (
        "accuracy without floor or max_drop",
        {"objectives": {"accuracy": {"target": 0.95, "max_drop": None}}},
        "slo.objectives.accuracy",
        "floor",
    ),
    (
        "drift severity outside page|ticket",
        {"objectives": {"drift": {"target": 0.95, "severity": "email"}}},
        "slo.objectives.drift.severity",
        "ticket",
    ),
    (
        "selector that is not label matchers",
        {"selector": "job=polyfuse", "objectives": {}},
        "slo.selector",
        'job="polyfuse"',
    ),
    ("no objectives section", {"version": 1}, "slo.objectives: is required", ""),
]


@pytest.mark.parametrize(("case", "data", "key", "says"), BAD, ids=[b[0] for b in BAD])
def test_when_slo_is_wrong_then_config_error_names_the_key(
    case: str, data: dict[str, Any], key: str, says: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_slo(data)
    text = str(info.value) + " " + (info.value.hint or "")
    assert key in text and says in text, text


def test_for_is_read_from_yaml() -> None:
    slo = parse_slo({"objectives": {"drift": {"target": 0.9, "for": "1h"}}})
    assert slo.objectives.drift is not None and slo.objectives.drift.for_ == "1h"


def test_cli_writes_rules_and_dashboards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ops", "all", "--out", str(tmp_path / "ops")]) == 0
    written = capsys.readouterr().out.split()
    names = sorted(Path(p).name for p in written)
    assert names == [
        "polyfuse-alerts.rules.yml",
        "polyfuse-debug.json",
        "polyfuse-executive.json",
        "polyfuse-on-call.json",
        "polyfuse-recording.rules.yml",
    ]
    assert all(Path(p).stat().st_size > 1000 for p in written)


def test_cli_reports_a_bad_slo_file_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slo = tmp_path / "slo.yaml"
    slo.write_text("objectives:\n  latency: {target: 0.99, window: 1month}\n", encoding="utf-8")
    assert main(["ops", "rules", "--slo", str(slo), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "slo.objectives.latency.window" in err and "30d" in err
    assert not (tmp_path / "o").exists()


def test_schema_command_knows_slo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "slo"]) == 0
    out = capsys.readouterr().out
    assert '"objectives"' in out and '"max_drop"' in out
