"""The dashboards: valid Grafana JSON whose every query names only catalogued series."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from polyfuse.ops.catalogue import metric_names, recorded_names
from polyfuse.ops.dashboards import DASHBOARDS, SCHEMA_VERSION, all_dashboards, write_dashboards

_QUOTED = re.compile(r'"[^"]*"')
_NAME = re.compile(r"(?<![\w:])(polyfuse[a-zA-Z0-9_:]*)")


def series_in(expr: str) -> set[str]:
    """Series names a PromQL expression selects (quoted strings and label values skipped)."""
    return set(_NAME.findall(_QUOTED.sub('""', expr)))


def unknown_names(expr: str) -> set[str]:
    """Names in ``expr`` that neither the service exports nor our recording rules write."""
    return series_in(expr) - metric_names() - recorded_names()


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum(rate(polyfuse_requests_total{route="/v1/predict"}[5m]))',
            {"polyfuse_requests_total"},
        ),
        ("1 - polyfuse_slo:sli_error:ratio_period", {"polyfuse_slo:sli_error:ratio_period"}),
        ('label_replace(x, "a", "$1", "__name__", "polyfuse_runtime_(.+)")', set()),
    ],
)
def test_series_in(expr: str, names: set[str]) -> None:
    assert series_in(expr) == names


def test_unknown_names_catches_a_typo() -> None:
    assert unknown_names("rate(polyfuse_request_total[5m])") == {"polyfuse_request_total"}


PANELS = [(d.uid, p) for d in all_dashboards() for p in d.panels]


@pytest.mark.parametrize(("uid", "panel"), PANELS, ids=[f"{u}:{p.title}" for u, p in PANELS])
def test_every_panel_query_names_only_catalogued_series(uid: str, panel: object) -> None:
    for target in panel.targets:  # type: ignore[attr-defined]
        assert series_in(target.expr), target.expr
        assert not unknown_names(target.expr), (uid, target.expr)


def test_dashboards_cover_what_the_issue_asks() -> None:
    titles = {d.uid: " | ".join(p.title for p in d.panels).lower() for d in all_dashboards()}
    for word in ("attainment", "error budget", "accuracy"):
        assert word in titles["polyfuse-executive"]
    for word in (
        "burn rate",
        "per route",
        "per stage",
        "per modality",
        "breaker",
        "queue",
        "quarantine",
        "degraded",
    ):
        assert word in titles["polyfuse-on-call"], word
    for word in ("drift score", "p-value", "missing rate", "cache", "batch size", "firewall"):
        assert word in titles["polyfuse-debug"], word


def test_written_dashboards_are_grafana_json(tmp_path: Path) -> None:
    paths = write_dashboards(tmp_path)
    assert [p.name for p in paths] == [f"polyfuse-{n}.json" for n in DASHBOARDS]
    for path in paths:
        board = json.loads(path.read_text(encoding="utf-8"))
        assert board["schemaVersion"] == SCHEMA_VERSION
        variables = board["templating"]["list"]
        assert variables[0]["name"] == "datasource" and variables[0]["query"] == "prometheus"
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0
            assert panel["datasource"]["uid"] == "${datasource}"
            refs = [t["refId"] for t in panel["targets"]]
            assert refs == [chr(ord("A") + i) for i in range(len(refs))]
