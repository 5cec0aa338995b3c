"""Modality dropout."""

from __future__ import annotations

import torch

from polyfuse.train import modality_dropout


def test_never_drops_every_modality_of_a_sample() -> None:
    gen = torch.Generator().manual_seed(0)
    present = {"a": torch.ones(5000, dtype=torch.bool), "b": torch.ones(5000, dtype=torch.bool)}
    out = modality_dropout(present, {"a": 0.9, "b": 0.9}, gen)
    assert (out["a"] | out["b"]).all()


def test_drop_rate_matches_probability_when_others_remain() -> None:
    gen = torch.Generator().manual_seed(1)
    n = 20000
    present = {"a": torch.ones(n, dtype=torch.bool), "b": torch.ones(n, dtype=torch.bool)}
    out = modality_dropout(present, {"a": 0.3}, gen)
    assert out["b"].all(), "b has probability 0"
    assert abs(float(1 - out["a"].float().mean()) - 0.3) < 0.02


def test_absent_stays_absent_and_single_modalities_survive() -> None:
    gen = torch.Generator().manual_seed(2)
    present = {"a": torch.tensor([True, False, True]), "b": torch.tensor([False, True, True])}
    out = modality_dropout(present, {"a": 0.99, "b": 0.99}, gen)
    assert out["a"][0] and out["b"][1], "a sample's only modality is never dropped"
    assert not out["a"][1] and not out["b"][0]
    assert int(out["a"][2]) + int(out["b"][2]) == 1


def test_zero_probabilities_are_identity() -> None:
    present = {"a": torch.tensor([True, False])}
    assert modality_dropout(present, {}) == present
