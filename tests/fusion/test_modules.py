"""Hand-computed checks of individual fusions."""

from __future__ import annotations

import torch

from polyfuse.fusion import LateFusion, SetFusion, masked_softmax


def test_masked_softmax_by_hand() -> None:
    scores = torch.tensor([[0.0, 0.0, 5.0], [1.0, 2.0, 3.0]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out = masked_softmax(scores, mask)
    assert torch.allclose(out, torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]))


def test_late_mean_averages_present_modality_logits() -> None:
    fusion = LateFusion(["a", "b"], dim=2, num_outputs=2, combine="mean").eval()
    with torch.no_grad():
        for head, w in ((fusion.heads["a"], 1.0), (fusion.heads["b"], -1.0)):
            lin = head[0]
            lin.weight.copy_(torch.eye(2) * w)
            lin.bias.zero_()
    feats = {
        "a": torch.tensor([[1.0, 2.0], [1.0, 2.0]]),
        "b": torch.tensor([[3.0, 5.0], [3.0, 5.0]]),
    }
    present = {"a": torch.tensor([True, True]), "b": torch.tensor([True, False])}
    out = fusion(feats, present)
    # row 0: mean([1, 2], [-3, -5]) = [-1, -1.5]; row 1: only a -> [1, 2]
    assert torch.allclose(out.logits, torch.tensor([[-1.0, -1.5], [1.0, 2.0]]))
    assert torch.allclose(out.weights, torch.tensor([[0.5, 0.5], [1.0, 0.0]]))


def test_set_fusion_without_identity_is_permutation_invariant() -> None:
    torch.manual_seed(0)
    fusion = SetFusion(["a", "b", "c"], dim=4, num_outputs=2, identity=False).eval()
    x = {m: torch.randn(3, 4) for m in "abc"}
    present = {m: torch.ones(3, dtype=torch.bool) for m in "abc"}
    swapped = {"a": x["c"], "b": x["a"], "c": x["b"]}
    assert torch.allclose(
        fusion(x, present).embedding, fusion(swapped, present).embedding, atol=1e-6
    )
