"""Error categories, k-means and slice gaps."""

from __future__ import annotations

import torch

from polyfuse.evaluation.failures import categorise, failure_analysis, kmeans
from polyfuse.evaluation.slices import slice_columns, slice_metrics


def test_categories() -> None:
    assert categorise(1, 0, {"audio": 1, "image": 0}) == "audio misled the fusion"
    assert categorise(2, 0, {"audio": 1, "image": 0}) == "fusion wrong although image was right"
    assert categorise(1, 0, {"audio": 1, "image": 2}) == "both wrong"
    assert categorise(1, 0, {"a": 1, "b": 2, "c": 3}) == "all modalities wrong"
    assert categorise(1, 0, {"a": 1, "b": 1, "c": 0}) == "a+b misled the fusion"
    assert categorise(1, 0, {"a": 0, "b": 0, "c": 2}) == "fusion wrong although a+b were right"
    assert categorise(1, 0, {"image": 2}) == "only image present, wrong"
    assert categorise(1, 0, {}) == "no modality present"


def test_kmeans_separates_blobs() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(20, 2, generator=gen) * 0.1
    b = torch.randn(20, 2, generator=gen) * 0.1 + 5
    assign, centres = kmeans(torch.cat([a, b]), 2)
    assert len(set(assign[:20].tolist())) == 1 and len(set(assign[20:].tolist())) == 1
    assert assign[0] != assign[20] and centres.shape == (2, 2)


def test_failure_analysis_counts_and_clusters() -> None:
    n = 40
    target = torch.zeros(n, dtype=torch.long)
    fused = torch.tensor([1] * 20 + [0] * 20)
    uni = {"audio": torch.tensor([1] * 10 + [2] * 10 + [0] * 20), "image": torch.zeros(n).long()}
    present = {m: torch.ones(n, dtype=torch.bool) for m in uni}
    emb = torch.cat([torch.zeros(10, 3), torch.ones(10, 3) * 4, torch.zeros(20, 3)])
    emb += 0.01 * torch.randn(n, 3, generator=torch.Generator().manual_seed(0))
    out = failure_analysis(
        fused, target, uni, present, emb, ["x", "y", "z"], [str(i) for i in range(n)]
    )
    assert out["n_errors"] == 20
    assert out["categories"] == {
        "audio misled the fusion": 10,
        "fusion wrong although image was right": 10,
    }
    assert sum(c["size"] for c in out["clusters"]) == 20


def test_slices_flag_the_worst_gap() -> None:
    meta = [{"speaker": "a" if i < 30 else "b", "id2": str(i)} for i in range(60)]
    correct = torch.tensor([True] * 30 + [True] * 15 + [False] * 15)

    def compute(sel: torch.Tensor) -> dict:
        return {"n": int(sel.sum()), "accuracy": float(correct[sel].double().mean())}

    assert slice_columns(meta) == ["speaker"]  # id2 is unique per row: not a slice
    out = slice_metrics(meta, ["speaker"], compute, gap_threshold=0.1)
    sp = out["speaker"]
    assert sp["worst"] == "b" and sp["flagged"]
    assert sp["gap"] == 0.75 - 0.5
    assert sp["slices"]["a"]["accuracy"] == 1.0
