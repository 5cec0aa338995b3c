"""The release-gate examples: the CI script run for real (gate, card, MLflow register), and
the GitHub Actions workflow checked against the CLI it calls."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from polyfuse.cli import build_parser
from polyfuse.core.config import Config
from polyfuse.train import Trainer
from tests.conftest import SMALL_CONFIG, write_manifest, write_synthetic

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "release" / "release-gate.sh"
WORKFLOW = ROOT / "examples" / "release" / "release-gate.yml"


@pytest.fixture(scope="module")
def candidate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("release-gate")
    rows = write_synthetic(root / "data", 60)
    train = write_manifest(root / "data" / "train.jsonl", rows[:40])
    gate = write_manifest(root / "data" / "gate.jsonl", rows[40:])
    art = Trainer(Config.from_dict(copy.deepcopy(SMALL_CONFIG)), root / "art", progress=False)
    return art.fit(train, gate).path, gate


def _run(args: list[str], out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OUT": str(out), "POLYFUSE": f"{sys.executable} -m polyfuse"}
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_passing_candidate_is_registered_with_its_verdict(
    candidate: tuple[Path, Path], tmp_path: Path, mlflow_store: str
) -> None:
    from polyfuse.release.registry import ModelRegistry

    art, gate = candidate
    rules = tmp_path / "gates.yaml"
    rules.write_text("rules:\n  - {metric: accuracy, min: 0.0}\n  - {metric: ece, max: 1.0}\n")
    proc = _run([str(art), str(gate), str(rules), "", "digits"], tmp_path / "release")
    assert proc.returncode == 0, proc.stderr
    assert "release gate: PASSED" in proc.stdout
    verdict = json.loads((tmp_path / "release" / "gate.json").read_text())
    assert verdict["passed"] is True and len(verdict["rules"]) == 2
    assert (tmp_path / "release" / "card.md").read_text().startswith("# Model card")
    (version,) = ModelRegistry().versions("digits")
    assert version.aliases == ("challenger",) and version.gate_passed is True
    assert version.description.startswith("# Model card")


def test_a_failing_candidate_stops_the_job_and_is_not_registered(
    candidate: tuple[Path, Path], tmp_path: Path, mlflow_store: str
) -> None:
    from polyfuse.release.registry import ModelRegistry

    art, gate = candidate
    rules = tmp_path / "gates.yaml"
    rules.write_text("rules:\n  - {metric: accuracy, min: 1.01, name: perfect accuracy}\n")
    proc = _run([str(art), str(gate), str(rules), "", "digits"], tmp_path / "release")
    assert proc.returncode == 1
    assert "FAIL  perfect accuracy" in proc.stdout and "FAILED" in proc.stderr
    assert json.loads((tmp_path / "release" / "gate.json").read_text())["passed"] is False
    assert ModelRegistry().models() == {}
    assert _run([], tmp_path / "x").returncode == 2  # usage


def test_the_workflow_calls_commands_and_flags_that_exist() -> None:
    flow = yaml.safe_load(WORKFLOW.read_text())
    steps = flow["jobs"]["gate"]["steps"]
    runs = [" ".join(s["run"].split()) for s in steps if "run" in s]
    parser = build_parser()
    commands = [r.split("polyfuse ", 1)[1] for r in runs if r.startswith("polyfuse ")]
    assert commands, runs
    for line in commands:
        parser.parse_args(line.split())  # exits (SystemExit) on an unknown command or flag
    assert any(str(SCRIPT.relative_to(ROOT)) in r for r in runs)
    assert "MLFLOW_TRACKING_URI" in flow["jobs"]["gate"]["env"]
    # every command the script runs parses too
    script = SCRIPT.read_text()
    for command in ("gate", "card", "register"):
        assert f'"${{polyfuse[@]}}" {command}' in script or f"args=({command} " in script
