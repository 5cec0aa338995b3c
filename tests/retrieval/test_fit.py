"""Alignment adapters learn a shared space; features come from the real frozen encoders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polyfuse.models.alignment import AlignmentModel
from polyfuse.retrieval import retrieval_metrics
from polyfuse.retrieval.fit import fit_alignment


def _pairs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two views of a shared 8-d latent through different random maps, plus noise."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 8, generator=gen)
    ma, mb = torch.randn(8, 32, generator=gen), torch.randn(8, 24, generator=gen)
    a = z @ ma + 0.1 * torch.randn(n, 32, generator=gen)
    b = z @ mb + 0.1 * torch.randn(n, 24, generator=gen)
    return a, b, torch.arange(n)


def test_fit_alignment_recovers_the_shared_latent() -> None:
    a, b, groups = _pairs(612, 0)
    a, b, groups, va, vb = a[:512], b[:512], groups[:512], a[512:], b[512:]  # held-out pairs

    def r1(model: AlignmentModel) -> float:
        sim = model.embed("b", vb) @ model.embed("a", va).T
        return retrieval_metrics(sim, torch.arange(100))["text_to_image"]["R@1"]

    model = AlignmentModel({"a": 32, "b": 24}, dim=16, dropout=0.0)
    before = r1(model.eval())
    fit = fit_alignment(
        model,
        a,
        b,
        groups,
        names=("a", "b"),
        epochs=20,
        batch_size=64,
        lr=3e-3,
        weight_decay=0.0,
        score=r1,
        progress=False,
    )
    assert before < 0.2 and r1(fit.model) > 0.9
    assert 1 <= fit.best_epoch <= 20 and len(fit.history) == 20
    assert fit.history[-1]["loss"] < fit.history[0]["loss"]
    assert fit.model.scale > 1 / 0.07 * 0.5


@pytest.mark.integration
def test_pooled_features_from_real_encoders(shared_data: Path, tmp_path: Path) -> None:
    from polyfuse.data.manifest import Manifest
    from polyfuse.data.pooled import pooled_features
    from polyfuse.datasets.flickr8k import build_alignment
    from polyfuse.encoders import build_encoder, resolve_contract

    paths = build_alignment(shared_data, tmp_path)
    lines = paths["val"].read_text().splitlines()
    assert len(lines) == 1000  # 200 images x 5 captions
    small = tmp_path / "small.jsonl"
    small.write_text("\n".join(lines[:10]) + "\n")  # 2 images, 10 captions
    encoders = {
        m: build_encoder(name, resolve_contract(m, m, name, {}, {}), {}).eval()
        for m, name in (("image", "efficientnet_lite0"), ("text", "minilm"))
    }
    feats, rows = pooled_features(encoders, Manifest.load(small, ("image", "text")), progress=False)
    assert rows == list(range(10))
    assert feats["image"].shape == (10, 1280) and feats["text"].shape == (10, 384)
    # the five captions of one image share its (cached, identical) image feature
    assert torch.equal(feats["image"][0], feats["image"][4])
    assert not torch.equal(feats["image"][0], feats["image"][5])
