"""Shapley, kappa, ECE, ROC-AUC, bootstrap and robustness formulas against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from polyfuse.evaluation.agreement import agreement, cohen_kappa, fleiss_kappa
from polyfuse.evaluation.metrics import (
    calibration,
    confidence_intervals,
    resample_weights,
    resampled,
    roc_auc,
    roc_auc_ovr,
)
from polyfuse.evaluation.robustness import effective_robustness, relative_robustness
from polyfuse.evaluation.shapley import coalitions, shapley_values, shares, value_functions
from polyfuse.heads.tasks import MulticlassTask, MultilabelTask, RegressionTask


def _game(table: dict[str, float]) -> dict[frozenset[str], torch.Tensor]:
    return {frozenset(k): torch.tensor([v]) for k, v in table.items()}


def test_shapley_two_players_by_hand() -> None:
    # v(a)=1, v(b)=2, v(ab)=4: phi_a = (1-0)/2 + (4-2)/2 = 1.5, phi_b = 2/2 + 3/2 = 2.5
    phi = shapley_values(_game({"": 0, "a": 1, "b": 2, "ab": 4}), ["a", "b"])
    assert phi[0].tolist() == pytest.approx([1.5, 2.5])


def test_shapley_three_players_by_hand() -> None:
    # weights 1/3 (|S|=0), 1/6 (|S|=1), 1/3 (|S|=2)
    v = {"": 0, "a": 1, "b": 0, "c": 0, "ab": 3, "ac": 1, "bc": 0, "abc": 4}
    phi = shapley_values(_game(v), ["a", "b", "c"])
    assert phi[0].tolist() == pytest.approx([7 / 3, 4 / 3, 1 / 3])
    assert float(phi.sum()) == pytest.approx(4.0)


def test_shapley_efficiency_symmetry_and_dummy_on_random_games() -> None:
    gen = torch.Generator().manual_seed(0)
    players = ["w", "x", "y", "z"]
    values = {c: torch.randn(50, generator=gen, dtype=torch.float64) for c in coalitions(players)}
    values[frozenset()] = torch.zeros(50, dtype=torch.float64)
    # z is a dummy: adding it never changes the value
    for c in coalitions(players):
        if "z" in c:
            values[c] = values[c - {"z"}]
    phi = shapley_values(values, players)
    gap = values[frozenset(players)] - values[frozenset()]
    assert (phi.sum(1) - gap).abs().max() < 1e-12
    assert phi[:, 3].abs().max() == 0
    assert len(coalitions(players)) == 16


def test_shapley_rejects_incomplete_games() -> None:
    with pytest.raises(ValueError, match="misses coalitions"):
        shapley_values(_game({"": 0, "a": 1}), ["a", "b"])


def test_shares_and_value_functions() -> None:
    phi = torch.tensor([[1.0, -1.0], [2.0, 0.0]])
    assert shares(phi, ["a", "b"]) == pytest.approx({"a": 0.75, "b": 0.25})
    task = MulticlassTask(("x", "y"))
    logits = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    vals = value_functions(task, logits, torch.tensor([1, 0]))
    assert vals["log_prob"][0] == pytest.approx(torch.log(torch.tensor(0.5)).item())
    assert vals["accuracy"].tolist() == [0.0, 1.0]  # a tie predicts class 0


def test_cohen_kappa_by_hand() -> None:
    # p_o = 3/4, p_e = .5*.25 + .5*.75 = .5 -> kappa = .5
    a, b = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1])
    assert cohen_kappa(a, b, 2) == pytest.approx(0.5)
    assert cohen_kappa(a, a, 2) == pytest.approx(1.0)
    assert cohen_kappa(torch.tensor([0, 0]), torch.tensor([0, 0]), 2) == 1.0


def test_fleiss_kappa_by_hand() -> None:
    # subjects rated [0,0,0], [1,1,1], [0,0,1]: P = 7/9, P_e = 41/81 -> kappa = 22/40
    labels = torch.tensor([[0, 0, 0], [1, 1, 1], [0, 0, 1]])
    assert fleiss_kappa(labels, 2) == pytest.approx(0.55)


def test_agreement_contradictions() -> None:
    probs = {
        "a": torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4]]),
        "b": torch.tensor([[0.1, 0.9], [0.95, 0.05], [0.1, 0.9]]),
    }
    present = {m: torch.ones(3, dtype=torch.bool) for m in probs}
    out = agreement(probs, present, ["x", "y"], ["r0", "r1", "r2"], torch.tensor([0, 0, 1]))
    pair = out["pairs"]["a|b"]
    assert pair["contradictions"] == 1 and pair["n"] == 3
    assert out["contradictions"][0]["id"] == "r0" and out["contradictions"][0]["true"] == "x"
    assert pair["confusion"] == [[1, 2], [0, 0]]  # rows: a's label, columns: b's label


def test_ece_by_hand() -> None:
    # bins (0.9, 1.0]: conf .95 acc .5; (0.5, 0.6]: conf .55 acc 1 -> ECE = (2*.45 + 2*.45)/4
    cal = calibration(torch.tensor([0.95, 0.95, 0.55, 0.55]), torch.tensor([1, 0, 1, 1]), bins=10)
    assert cal["ece"] == pytest.approx(0.45)
    assert cal["mce"] == pytest.approx(0.45)
    assert sum(b["n"] for b in cal["bins"]) == 4
    perfect = calibration(torch.tensor([1.0, 1.0]), torch.tensor([1, 1]))
    assert perfect["ece"] == 0.0


def test_roc_auc_by_hand() -> None:
    assert roc_auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == 0.75
    assert roc_auc(torch.tensor([0.5, 0.5]), torch.tensor([0, 1])) == 0.5  # tie counts half
    assert roc_auc(torch.tensor([0.5, 0.6]), torch.tensor([1, 1])) is None
    probs = torch.tensor([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    # class a: positives .8, .3 vs negative .6 -> 1/2; class b: positive .4 vs .2, .7 -> 1/2
    ovr = roc_auc_ovr(probs, torch.eye(2)[torch.tensor([0, 0, 1])], ["a", "b"])
    assert ovr["per_class"] == {"a": 0.5, "b": 0.5} and ovr["macro"] == 0.5


def test_bootstrap_interval() -> None:
    target = torch.arange(200) % 4
    perfect = torch.nn.functional.one_hot(target, 4).float()
    task = MulticlassTask(["a", "b", "c", "d"])
    ci = confidence_intervals(task, perfect, target, samples=200)
    assert ci["accuracy"] == {"low": 1.0, "high": 1.0}
    gen = torch.Generator().manual_seed(1)
    noisy = perfect + 2.0 * torch.rand(200, 4, generator=gen)
    acc = float((noisy.argmax(1) == target).double().mean())
    ci = confidence_intervals(task, noisy, target, samples=500)
    assert ci["accuracy"]["low"] < acc < ci["accuracy"]["high"]
    assert ci["accuracy"]["high"] - ci["accuracy"]["low"] < 0.2


def test_multilabel_bootstrap_interval() -> None:
    gen = torch.Generator().manual_seed(2)
    target = (torch.rand(300, 3, generator=gen) > 0.5).float()
    probs = target * 0.4 + 0.6 * torch.rand(300, 3, generator=gen)  # some labels wrong
    task = MultilabelTask(["x", "y", "z"])
    ci = confidence_intervals(task, probs, target, samples=400)
    pred = probs >= 0.5
    exact = float((pred == (target > 0.5)).all(1).double().mean())
    assert ci["accuracy"]["low"] < exact < ci["accuracy"]["high"]
    assert set(ci) == {"accuracy", "micro_f1", "macro_f1"}
    perfect = confidence_intervals(task, target, target, samples=50)
    assert perfect["micro_f1"] == {"low": 1.0, "high": 1.0}


def test_paired_resamples_share_draws() -> None:
    """The same weights on the same rows pair two models: identical models differ by 0 in
    every resample, and a model right on one more row is ahead in nearly every resample."""
    target = torch.arange(100) % 2
    task = MulticlassTask(["a", "b"])
    good = torch.nn.functional.one_hot(target, 2).float()
    worse = good.clone()
    worse[:10] = 1 - worse[:10]  # ten rows wrong
    weights = resample_weights(100, 300, seed=3)
    a = resampled(task, good, target, weights)["accuracy"]
    b = resampled(task, worse, target, weights)["accuracy"]
    assert torch.equal(a - resampled(task, good, target, weights)["accuracy"], torch.zeros(300))
    assert float((a > b).double().mean()) > 0.99
    assert abs(float((a - b).mean()) - 0.10) < 0.02
    zeros = torch.zeros(4, 1)
    assert resampled(RegressionTask(["y"]), zeros, zeros, weights[:, :4]) == {}


def test_multibench_robustness_by_hand() -> None:
    # trapezoids over levels 0, .5, 1: (.9+.7)/2*.5 + (.7+.5)/2*.5 = .7
    assert relative_robustness([0.9, 0.7, 0.5]) == pytest.approx(0.7)
    # reference shifted to start at .9: [.9, .6, .3] -> sum of differences 0 + .1 + .2
    assert effective_robustness([0.9, 0.7, 0.5], [0.8, 0.5, 0.2]) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        effective_robustness([1.0], [1.0, 0.5])
