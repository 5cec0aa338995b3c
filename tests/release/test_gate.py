"""The quality gate: rules file, every kind of rule, verdict JSON, exit codes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from polyfuse.cli import main
from polyfuse.core.config import Config
from polyfuse.core.errors import ConfigError
from polyfuse.evaluation.analysis import build_context
from polyfuse.release.gate import GateFile, GateRule, flat_metrics, run_gate
from polyfuse.train import Trainer
from tests.conftest import SMALL_CONFIG, write_manifest, write_synthetic


def _train(root: Path, train: Path, val: Path, **changes: object) -> Path:
    cfg = copy.deepcopy(SMALL_CONFIG)
    for key, value in changes.items():
        cfg["train"][key] = value
    return Trainer(Config.from_dict(cfg), root, progress=False).fit(train, val).path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two trained candidates (3 epochs and 1 epoch) and a test manifest with a site column."""
    root = tmp_path_factory.mktemp("gate")
    rows = write_synthetic(root / "data", 90)
    for i, r in enumerate(rows):
        r["site"] = "north" if i % 3 else "south"
    train = write_manifest(root / "data" / "train.jsonl", rows[:60])
    test = write_manifest(root / "data" / "test.jsonl", rows[60:])
    return {
        "good": _train(root / "good", train, test),
        "weak": _train(root / "weak", train, test, epochs=1, lr=1e-4),
        "test": test,
    }


def _rules(tmp_path: Path, *rules: dict[str, object], **top: object) -> Path:
    path = tmp_path / "gates.yaml"
    path.write_text(json.dumps({"rules": list(rules), **top}))  # JSON is YAML
    return path


def test_every_kind_of_rule_is_measured(models: dict[str, Path], tmp_path: Path) -> None:
    rules = _rules(
        tmp_path,
        {"metric": "accuracy", "min": 0.0},
        {"metric": "accuracy", "modalities": ["audio"], "min": 0.0},
        {"metric": "macro_f1", "slice": "site", "max_gap": 1.0},
        {"metric": "accuracy", "slice": "label", "max_gap": 1.0},
        {"metric": "ece", "max": 1.0},
        {"metric": "log_loss", "max": 100.0},
        {"metric": "relative_robustness", "min": 0.0},
        {"metric": "accuracy", "corruption": "image/blur", "severity": 5, "min": 0.0},
        {"metric": "latency_p95_ms", "max": 1e6},
        {"metric": "accuracy", "champion": "non_inferior", "margin": 1.0},
        latency_requests=5,
        bootstrap=200,
    )
    result = run_gate(models["good"], models["test"], rules, champion=models["weak"])
    data = result.to_dict()
    assert data["passed"] is True and data["n"] == 30
    assert [set(r) >= {"rule", "value", "threshold", "passed"} for r in data["rules"]] == [
        True
    ] * 10
    by = {r["rule"]: r for r in data["rules"]}
    # the same number `evaluate` computes, fed only audio
    ctx = build_context(models["good"], models["test"])
    audio = ctx.task.probabilities(ctx.coalition_logits[frozenset({"audio"})])
    assert by["accuracy[audio] >= 0.0"]["value"] == pytest.approx(
        flat_metrics(ctx.task, audio, ctx.target)["accuracy"]
    )
    gap = by["macro_f1 worst site gap <= 1.0"]
    assert set(gap["slices"]) == {"north", "south"}
    assert gap["value"] == pytest.approx(gap["overall"] - gap["worst_value"])
    per_class = by["accuracy worst label gap <= 1.0"]  # the label column: one slice per class
    assert set(per_class["slices"]) == {"c0", "c1", "c2"}
    assert by["latency_p95_ms <= 1000000.0"]["value"] > 0
    versus = by["accuracy non-inferior to champion (margin -1.0)"]
    assert versus["interval"]["low"] <= versus["difference"] <= versus["interval"]["high"]
    assert versus["value"] == versus["interval"]["low"] and versus["threshold"] == -1.0
    json.dumps(data)


def test_failing_rules_are_named_and_exit_one(
    models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = _rules(
        tmp_path,
        {"metric": "accuracy", "min": 0.0},
        {"metric": "accuracy", "modalities": ["image"], "min": 1.01},
        {"metric": "ece", "max": -1.0, "name": "impossible calibration"},
    )
    out = tmp_path / "verdict.json"
    code = main(
        ["gate", str(models["weak"]), "--data", str(models["test"]), "--rules", str(rules),
         "--json", "--out", str(out), "-q"]
    )  # fmt: skip
    assert code == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    failed = [r["rule"] for r in printed["rules"] if not r["passed"]]
    assert failed == ["accuracy[image] >= 1.01", "impossible calibration"]
    assert printed["passed"] is False
    code = main(["gate", str(models["weak"]), "--data", str(models["test"]), "--rules",
                 str(_rules(tmp_path, {"metric": "accuracy", "min": 0.0})), "-q"])  # fmt: skip
    assert code == 0 and "PASSED" in capsys.readouterr().out


def test_a_worse_candidate_fails_non_inferiority(models: dict[str, Path], tmp_path: Path) -> None:
    rules = _rules(tmp_path, {"metric": "accuracy", "champion": "non_inferior", "margin": 0.02})
    worse = run_gate(models["weak"], models["test"], rules, champion=models["good"])
    better = run_gate(models["good"], models["test"], rules, champion=models["weak"])
    (w,), (b,) = worse.verdicts, better.verdicts
    assert w.detail["difference"] < 0 < b.detail["difference"]
    assert w.passed is (w.value >= -0.02) and b.value > w.value
    same = run_gate(models["good"], models["test"], rules, champion=models["good"])
    # the same model: every paired resample differs by exactly 0
    assert same.verdicts[0].detail["interval"] == {"low": 0.0, "high": 0.0}
    assert same.passed


def test_bad_rules_are_config_errors_with_the_key(
    models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match="exactly one check"):
        GateFile.load(_rules(tmp_path, {"metric": "accuracy"}))
    with pytest.raises(ConfigError, match="max_gap and slice"):
        GateFile.load(_rules(tmp_path, {"metric": "accuracy", "max_gap": 0.1}))
    assert GateRule(metric="accuracy", min=0.5).label == "accuracy >= 0.5"
    with pytest.raises(ConfigError, match="unknown key"):
        GateFile.load(_rules(tmp_path, {"metric": "accuracy", "minimum": 0.9}))
    with pytest.raises(ConfigError, match="not found"):
        GateFile.load(tmp_path / "nope.yaml")
    cases = [
        ({"metric": "accuracy", "champion": "non_inferior"}, "--champion"),
        ({"metric": "accuracy", "modalities": ["video"], "min": 0}, "no modality"),
        ({"metric": "acuracy", "min": 0}, "not measured"),
        ({"metric": "accuracy", "slice": "region", "max_gap": 0.1}, "no evaluated row"),
        ({"metric": "accuracy", "corruption": "video/shake", "min": 0}, "applies to none"),
    ]
    for rule, message in cases:
        with pytest.raises(ConfigError, match=message):
            run_gate(models["good"], models["test"], _rules(tmp_path, rule))
    # the CLI: exit 2 with the message on stderr
    code = main(["gate", str(models["good"]), "--data", str(models["test"]), "--rules",
                 str(_rules(tmp_path, {"metric": "acuracy", "min": 0}))])  # fmt: skip
    assert code == 2 and "acuracy" in capsys.readouterr().err


def test_lower_is_better_metrics_flip_the_comparison() -> None:
    """A champion rule on log loss: the candidate with lower loss is the better one."""
    from polyfuse.heads.tasks import MulticlassTask
    from polyfuse.release.gate import LOWER_IS_BETTER

    task = MulticlassTask(["a", "b"])
    target = torch.tensor([0, 1, 0, 1])
    sure = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]])
    unsure = torch.tensor([[0.6, 0.4], [0.4, 0.6], [0.6, 0.4], [0.4, 0.6]])
    assert "log_loss" in LOWER_IS_BETTER
    assert (
        flat_metrics(task, sure, target)["log_loss"]
        < flat_metrics(task, unsure, target)["log_loss"]
    )
