"""One contract test over every registered fusion and every missing-modality subset."""

from __future__ import annotations

import itertools

import pytest
import torch

from polyfuse.fusion import FUSIONS, Fusion, build_fusion

NAMES = ("audio", "image", "text")
DIM, K = 8, 3
#: every presence pattern over three modalities, the empty one included: (8, 3)
PATTERNS = torch.tensor(list(itertools.product([False, True], repeat=len(NAMES))))


def _make(name: str, seed: int = 0) -> Fusion:
    torch.manual_seed(seed)
    params = {"heads": 2} if name == "cross_attention" else {}
    return build_fusion(name, list(NAMES), DIM, K, params).eval()


def _inputs(
    fusion: Fusion, seed: int = 1
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    gen = torch.Generator().manual_seed(seed)
    b = PATTERNS.shape[0]
    present = {m: PATTERNS[:, i].clone() for i, m in enumerate(NAMES)}
    if fusion.uses_tokens:
        feats = {m: torch.randn(b, 4, DIM, generator=gen) for m in NAMES}
        masks = {
            m: torch.tensor([[True, True, i % 2 == 0, False]] * b) for i, m in enumerate(NAMES)
        }
        return feats, present, masks
    return {m: torch.randn(b, DIM, generator=gen) for m in NAMES}, present, None


@pytest.fixture(params=FUSIONS.list())
def fusion(request: pytest.FixtureRequest) -> Fusion:
    return _make(request.param)


def test_every_fusion_is_covered() -> None:
    assert set(FUSIONS.list()) == {"concat", "late", "gated", "cross_attention", "set"}


def test_shapes_for_every_missing_subset(fusion: Fusion) -> None:
    feats, present, masks = _inputs(fusion)
    out = fusion(feats, present, masks)
    b = PATTERNS.shape[0]
    assert out.embedding.shape == (b, fusion.out_dim)
    assert torch.isfinite(out.embedding).all(), "all-absent rows must stay finite too"
    if fusion.produces_logits:
        assert out.logits is not None and out.logits.shape == (b, K)
    if out.weights is not None:
        assert out.weights.shape == (b, len(NAMES))
        assert (out.weights[~PATTERNS] == 0).all(), "absent modalities get no weight"
        some = PATTERNS.any(1)
        assert torch.allclose(out.weights[some].sum(1), torch.ones(int(some.sum())), atol=1e-5)


def test_absent_modalities_do_not_influence_the_output(fusion: Fusion) -> None:
    feats, present, masks = _inputs(fusion)
    ref = fusion(feats, present, masks)
    changed = {m: torch.where(_rows(present[m], f), f, f * 100 + 7) for m, f in feats.items()}
    out = fusion(changed, present, masks)
    assert torch.allclose(ref.embedding, out.embedding, atol=1e-5)
    if ref.logits is not None:
        assert torch.allclose(ref.logits, out.logits, atol=1e-5)  # type: ignore[arg-type]


def test_masked_tokens_do_not_influence_token_fusions() -> None:
    fusion = _make("cross_attention")
    feats, present, masks = _inputs(fusion)
    assert masks is not None
    ref = fusion(feats, present, masks).embedding
    noisy = {m: torch.where(masks[m][..., None], f, f + 50.0) for m, f in feats.items()}
    assert torch.allclose(ref, fusion(noisy, present, masks).embedding, atol=1e-5)


def test_gradients_reach_parameters_and_present_inputs_only(fusion: Fusion) -> None:
    fusion.train()
    torch.manual_seed(0)
    feats, present, masks = _inputs(fusion)
    feats = {m: f.requires_grad_(True) for m, f in feats.items()}
    out = fusion(feats, present, masks)
    target = out.logits if out.logits is not None else out.embedding
    (target.pow(2).sum() + (0 if out.weights is None else out.weights.sum())).backward()
    for m, f in feats.items():
        assert f.grad is not None
        absent = _rows(~present[m], f.grad)
        assert (f.grad[absent] == 0).all(), f"gradient leaked into absent '{m}' features"
    used = [p for p in fusion.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert used, "no parameter received a gradient"


def test_deterministic_under_seed(fusion: Fusion) -> None:
    name = {v: k for k, v in FUSIONS._builders.items()}[type(fusion)]
    a, b = _make(name, seed=5), _make(name, seed=5)
    feats, present, masks = _inputs(a)
    assert torch.equal(a(feats, present, masks).embedding, b(feats, present, masks).embedding)


def test_key_order_does_not_matter(fusion: Fusion) -> None:
    feats, present, masks = _inputs(fusion)
    rev = dict(reversed(list(feats.items())))
    assert torch.equal(
        fusion(feats, present, masks).embedding,
        fusion(rev, dict(reversed(list(present.items()))), masks).embedding,
    )


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1))).expand_as(like)
