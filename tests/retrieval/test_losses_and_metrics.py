"""InfoNCE, retrieval metrics and querybank normalisation against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from polyfuse.retrieval import info_nce, querybank_normalise, retrieval_metrics


def test_info_nce_by_hand() -> None:
    # orthonormal pairs, scale 1: logits = I; each row: -log(e / (e + 1)) = log(1 + 1/e)
    a = torch.eye(2)
    loss = info_nce(a, a.clone(), logit_scale=0.0)
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-1)))
    # swapped pairs: the positive has logit 0, the negative 1
    swapped = info_nce(a, a.flip(0), logit_scale=0.0)
    assert float(swapped) == pytest.approx(math.log(1 + math.e))


def test_info_nce_multi_positive_groups() -> None:
    # rows 0 and 1 are two captions of one image: both images equal, so the target
    # spreads over both and the loss is log 2 minus nothing (uniform logits within group)
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert float(info_nce(a, b, 0.0, groups=torch.tensor([0, 0]))) == pytest.approx(math.log(2))
    assert float(info_nce(a, b, 0.0)) == pytest.approx(math.log(2))  # same logits, one target


def test_info_nce_gradient_and_scale() -> None:
    a = torch.randn(8, 4, requires_grad=True)
    scale = torch.tensor(math.log(10.0), requires_grad=True)
    info_nce(a, torch.randn(8, 4), scale).backward()
    assert a.grad is not None and scale.grad is not None


def test_retrieval_metrics_by_hand() -> None:
    # 2 images, 4 captions (2 each); caption 3 prefers the wrong image
    sim = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.7], [0.6, 0.5]])
    cap_img = torch.tensor([0, 0, 1, 1])
    out = retrieval_metrics(sim, cap_img, ks=(1, 2))
    t2i = out["text_to_image"]
    assert t2i["R@1"] == 0.75 and t2i["R@2"] == 1.0
    assert t2i["median_rank"] == 1.0  # ranks 1, 1, 1, 2
    i2t = out["image_to_text"]
    # image 0: best caption 0 (0.9) is first; image 1: best own caption 2 (0.7) is first
    assert i2t["R@1"] == 1.0 and i2t["median_rank"] == 1.0


def test_querybank_normalisation_removes_a_hub() -> None:
    # image 1 is a hub: every bank query likes it; normalising flips the query to image 0
    sim = torch.tensor([[0.50, 0.55]])
    bank = torch.tensor([[0.1, 0.6], [0.2, 0.6], [0.1, 0.7]])
    out = querybank_normalise(sim, bank, beta=10.0)
    assert out.argmax(1).item() == 0
    shift = torch.logsumexp(10 * bank, 0) / 10
    torch.testing.assert_close(out, sim - shift[None, :])


def test_attribute_swap() -> None:
    import numpy as np

    from polyfuse.data.negatives import COLOURS, attribute_swap

    rng = np.random.default_rng(0)
    out = attribute_swap("a man in a red shirt", rng)
    assert out is not None and out != "a man in a red shirt"
    changed = [
        (a, b)
        for a, b in zip(["a", "man", "in", "a", "red", "shirt"], out.split(), strict=True)
        if a != b
    ]
    assert len(changed) == 1
    a, b = changed[0]
    assert (a, b) == ("man", "woman") or (a == "red" and b in COLOURS)
    assert attribute_swap("a photo of nothing in particular", rng) is None
    from polyfuse.data.negatives import alternatives

    assert alternatives("two dogs") == ["three dogs", "four dogs", "five dogs"]
    assert alternatives("a dog") == ["a cat"]
    assert len(alternatives("a man in a red shirt")) == 1 + 9 and alternatives("a cup") == []
    assert attribute_swap("two dogs", rng) in {"three dogs", "four dogs", "five dogs", "two cats"}
