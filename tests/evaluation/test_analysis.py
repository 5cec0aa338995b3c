"""The full analysis on a small trained model over all four modalities."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import torch

from polyfuse.cli import main
from polyfuse.core.config import Config
from polyfuse.core.errors import ConfigError, PolyfuseError
from polyfuse.evaluation.analyses import (
    Ablation,
    AblationResult,
    Agreement,
    AgreementResult,
    AnalysisContext,
    AnalysisSpec,
    Contributions,
    ContributionsResult,
    Failures,
    FailuresResult,
    Robustness,
    RobustnessResult,
    Slices,
)
from polyfuse.evaluation.analysis import Analysis, analyses_for, analyze, build_context
from polyfuse.evaluation.report.html import SECTIONS, render_report
from polyfuse.inference.predict import Predictor
from polyfuse.train import Trainer
from tests.conftest import SMALL_CONFIG, relabel, write_manifest, write_synthetic


@pytest.fixture(scope="module", params=["gated", "cross_attention"])
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    root = tmp_path_factory.mktemp(f"analysis-{request.param}")
    rows = write_synthetic(root / "data", 80)
    for i, r in enumerate(rows):
        r["site"] = "north" if i % 3 else "south"
    train = write_manifest(root / "data" / "train.jsonl", rows[:56])
    test = write_manifest(root / "data" / "test.jsonl", rows[56:])
    cfg = copy.deepcopy(SMALL_CONFIG)
    cfg["model"]["fusion"] = request.param
    result = Trainer(Config.from_dict(cfg), root / "art", progress=False).fit(train, test)
    return result.path, test


@pytest.fixture(scope="module")
def analysis(trained: tuple) -> Analysis:
    art, test = trained
    analyses = analyses_for(robustness=True, severities=(1, 5), saliency=2, bootstrap=100)
    return analyze(art, test, analyses, progress=False)


def test_shapley_efficiency_per_sample(analysis: Analysis) -> None:
    contrib = analysis.contributions["value_functions"]
    assert set(contrib) == {"log_prob", "accuracy"}
    for entry in contrib.values():
        assert entry["efficiency_max_error"] < 1e-6
    phi = analysis.shapley["log_prob"]
    assert phi.shape == (analysis.n, 4)
    # a modality a sample lacks gets exactly zero
    bank = analysis.bank
    assert bank is not None
    for j, m in enumerate(bank.modalities):
        assert (
            phi[~bank.present[m], j].abs().max().item() == 0 if (~bank.present[m]).any() else True
        )


def test_every_subset_is_evaluated(analysis: Analysis) -> None:
    subsets = analysis.ablation["subsets"]
    assert len(subsets) == 2**4 - 1
    assert subsets["audio+image+series+text"]["accuracy"] == analysis.metrics["accuracy"]
    assert len(analysis.ablation["curve"]) == 4
    assert 0 <= analysis.ablation["relative_robustness"] <= 1


def test_bank_fusion_matches_plain_prediction(trained: tuple, analysis: Analysis) -> None:
    art, test = trained
    predictor = Predictor.load(art, "cpu")
    ds = predictor.dataset(predictor_manifest(predictor, test), labelled=True)
    plain = predictor.run(ds, progress=False)
    assert analysis.fused is not None
    torch.testing.assert_close(analysis.fused.logits, plain.logits, atol=1e-4, rtol=1e-4)


def predictor_manifest(predictor: Predictor, path: Path):  # type: ignore[no-untyped-def]
    from polyfuse.data.manifest import Manifest

    return Manifest.load(path, predictor.modalities, predictor.artifact.config.label)


def test_agreement_failures_slices_robustness(analysis: Analysis) -> None:
    ag = analysis.agreement
    assert ag is not None and len(ag["pairs"]) == 6 and "fleiss_kappa" in ag
    fail = analysis.failures
    assert fail is not None
    assert fail["n_errors"] == round((1 - analysis.metrics["accuracy"]) * analysis.n)
    assert sum(fail["categories"].values()) == fail["n_errors"]
    assert "site" in analysis.slices and set(analysis.slices["site"]["slices"]) == {
        "north",
        "south",
    }
    curves = analysis.robustness["curves"] if analysis.robustness else {}
    assert {c.split("/")[0] for c in curves} == {"image", "audio", "text", "timeseries"}
    for c in curves.values():
        assert c["severities"] == [0, 1, 5] and len(c["accuracy"]) == 3
    ci = analysis.metrics["confidence_intervals"]["accuracy"]
    assert ci["low"] <= analysis.metrics["accuracy"] <= ci["high"]


def test_json_and_report(analysis: Analysis) -> None:
    data = json.loads(json.dumps(analysis.to_dict()))
    assert data["n"] == analysis.n and "accuracy" in data
    page = render_report(analysis)
    for key, _ in SECTIONS:
        assert f"id='{key}'" in page
    assert not re.search(r"""(src|href)=["']https?:""", page), "the report must be offline"
    assert "<script" not in page
    assert page.count("<svg") >= 8


def test_cli_evaluate_out(
    trained: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    art, test = trained
    out = tmp_path / "eval"
    code = main(["evaluate", str(art), "--data", str(test), "--out", str(out), "-q", "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "metrics.json").read_text())
    assert printed["accuracy"] == saved["accuracy"] and "ablation" in saved
    assert (out / "report.html").stat().st_size > 10_000
    assert main(["evaluate", str(art), "--data", str(test), "--slices", "nope", "-q"]) == 2


def test_report_renders_in_headless_chromium(analysis: Analysis, tmp_path: Path) -> None:
    """The real browser: no console errors, every embedded image decodes, charts have size."""
    from tests.browser import open_page

    path = tmp_path / "report.html"
    path.write_text(render_report(analysis), encoding="utf-8")
    with open_page(path) as page:
        assert page.errors == [], page.errors
        broken = page.evaluate(
            "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length"
        )
        assert broken == 0
        sizes = page.evaluate(
            "Array.from(document.querySelectorAll('svg')).map(s => s.getBoundingClientRect().width)"
        )
        assert len(sizes) >= 8 and min(sizes) > 50
        assert page.evaluate("document.querySelectorAll('audio').length") > 0


@pytest.mark.parametrize("task", ["multilabel", "regression"])
def test_analysis_of_other_tasks(tmp_path: Path, task: str) -> None:
    rows = relabel(write_synthetic(tmp_path / "data", 40), task)
    train = write_manifest(tmp_path / "data" / "train.jsonl", rows[:30])
    val = write_manifest(tmp_path / "data" / "val.jsonl", rows[30:])
    cfg = copy.deepcopy(SMALL_CONFIG)
    cfg["task"], cfg["train"]["epochs"] = task, 2
    art = Trainer(Config.from_dict(cfg), tmp_path / "run", progress=False).fit(train, val).path
    result = analyze(art, val, analyses_for(robustness=True, severities=(3,)), progress=False)
    for entry in result.contributions["value_functions"].values():
        assert entry["efficiency_max_error"] < 1e-6
    assert len(result.ablation["subsets"]) == 15
    assert result.agreement is None and result.failures is None  # multi-class only
    assert "<h2 id='robustness'>" in render_report(result)
    json.dumps(result.to_dict())


# --- each analysis' calculate on its own (typed results, parameters that matter) ---


@pytest.fixture(scope="module")
def context(trained: tuple) -> AnalysisContext:
    art, test = trained
    return build_context(art, test)


@pytest.mark.parametrize(
    ("spec", "result_type", "keys"),
    [
        (Ablation(), AblationResult, {"metric", "subsets", "curve", "relative_robustness"}),
        (Contributions(permutations=1), ContributionsResult, {"value_functions", "modalities"}),
        (Agreement(), AgreementResult, {"pairs", "contradictions", "confident_threshold"}),
        (Failures(), FailuresResult, {"n_errors", "categories", "errors", "clusters"}),
        (Robustness(severities=(2,)), RobustnessResult, {"metric", "curves"}),
    ],
)
def test_calculate_returns_its_typed_result(
    context: AnalysisContext, spec: AnalysisSpec, result_type: type, keys: set[str]
) -> None:
    result = spec.calculate(context)
    assert isinstance(result, result_type)
    data = json.loads(json.dumps(result.to_dict()))
    assert keys <= set(data)
    for key in keys:
        assert result[key] == getattr(result, key)


def test_parameters_change_the_results(context: AnalysisContext) -> None:
    assert Contributions(permutations=1).calculate(context).permutation_importance["repeats"] == 1
    never = Agreement(confident=1.01).calculate(context)
    assert never is not None and never.contradictions == [] and never.contradiction_rate == 0
    loose = Agreement(confident=0.0).calculate(context)
    assert loose is not None and loose.confident_threshold == 0.0
    assert len(loose.contradictions) >= len(never.contradictions)
    for curve in Robustness(severities=(2,)).calculate(context).curves.values():
        assert curve["severities"] == [0, 2]
    flagged = Slices(columns=("site",), gap=-1.0).calculate(context)
    calm = Slices(columns=("site",), gap=1.0).calculate(context)
    assert flagged["site"]["flagged"] and not calm["site"]["flagged"]
    assert set(flagged) == {"site"} and len(flagged) == 1


def test_unknown_slice_column_is_an_error(context: AnalysisContext) -> None:
    with pytest.raises(PolyfuseError, match="nope"):
        Slices(columns=("nope",)).calculate(context)


def test_analyze_runs_only_what_it_is_given(trained: tuple) -> None:
    art, test = trained
    only = analyze(art, test, [Ablation()], progress=False)
    assert only.ablation is not None and "accuracy" in only.metrics  # metrics always
    assert only.contributions is None and only.slices is None and only.failures is None
    assert only.to_dict()["contributions"] is None
    assert "Not computed" in render_report(only)
    with pytest.raises(ConfigError, match="more than once"):
        analyze(art, test, [Ablation(), Ablation()], progress=False)


def test_result_json_leaves_out_unset_fields() -> None:
    result = AgreementResult(0.8, {}, 0.0, [])
    assert "fleiss_kappa" not in result and "fleiss_kappa" not in result.to_dict()
    assert result.get("fleiss_kappa", 1.5) == 1.5
    with pytest.raises(KeyError):
        result["nope"]
    assert FailuresResult(0, {}, [], []).to_dict() == {
        "n_errors": 0,
        "categories": {},
        "errors": [],
        "clusters": [],
    }
