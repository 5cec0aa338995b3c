"""Token-level consistency scorer, colour tokens, score combination and adapter ensembles."""

from __future__ import annotations

import numpy as np
import torch

from polyfuse.evaluation.metrics import roc_auc
from polyfuse.models.alignment import AlignmentEnsemble, AlignmentModel
from polyfuse.retrieval.colour import NAMES, colour_names, colour_tokens
from polyfuse.retrieval.consistency import (
    ConsistencyData,
    ConsistencyScorer,
    fit_consistency,
    score_pairs,
)
from polyfuse.retrieval.scoring import Combination


def test_colour_names_of_pure_colours() -> None:
    colours = {
        "black": (10, 10, 10),
        "white": (250, 250, 250),
        "grey": (128, 128, 128),
        "red": (220, 20, 20),
        "orange": (250, 140, 0),
        "yellow": (240, 230, 20),
        "green": (30, 200, 40),
        "blue": (20, 40, 230),
        "purple": (140, 30, 200),
        "pink": (250, 150, 170),
        "brown": (120, 70, 20),
    }
    for name, rgb in colours.items():
        pixel = np.array([[rgb]], dtype=np.uint8)
        assert NAMES[int(colour_names(pixel)[0, 0])] == name, name


def test_colour_tokens_locate_colour_cells() -> None:
    img = np.zeros((70, 70, 3), dtype=np.uint8)  # black, with a red top-left quarter-ish block
    img[:20, :20] = (220, 20, 20)
    tok = colour_tokens(img, grid=7, size=70)
    assert tok.shape == (50, len(NAMES))
    np.testing.assert_allclose(tok.sum(1), 1.0, atol=1e-6)  # shares per cell
    red, black = NAMES.index("red"), NAMES.index("black")
    assert tok[0, red] == 1.0 and tok[1, red] == 1.0 and tok[2, red] == 0.0  # cells are 10 px
    assert tok[48, black] == 1.0
    np.testing.assert_allclose(tok[49, red], 400 / 4900, atol=1e-6)  # whole-image token
    gray = colour_tokens(np.full((70, 70, 1), 128, dtype=np.uint8), size=70)
    assert gray[49, NAMES.index("grey")] == 1.0  # single-channel images work too


def _planted(n_items: int, seed: int) -> ConsistencyData:
    """Items carry one of 4 'colour' tokens at a random position; texts name a colour.
    A true pair names the item's colour; its swaps name the other colours."""
    gen = torch.Generator().manual_seed(seed)
    colours = torch.randint(4, (n_items,), generator=gen)
    items = 0.3 * torch.randn(n_items, 9, 16, generator=gen)
    pos = torch.randint(9, (n_items,), generator=gen)
    items[torch.arange(n_items), pos, colours] += 3.0
    vocab = torch.Generator().manual_seed(99)  # the same words in every split
    words = torch.randn(4, 12, generator=vocab)  # token of each colour word
    filler = torch.randn(5, 3, 12, generator=vocab)
    texts = torch.cat([torch.cat([words[c][None], filler[k]]) for c in range(4) for k in range(5)])
    texts = texts.view(20, 4, 12)  # text 5c+k: colour word c + filler sentence k
    k = torch.randint(5, (n_items,), generator=gen)
    pairs = torch.stack([torch.arange(n_items), 5 * colours + k], 1)
    swaps = [[5 * c + int(k[i]) for c in range(4) if c != int(colours[i])] for i in range(n_items)]
    return ConsistencyData(
        items.half(),
        torch.ones(n_items, 9, dtype=torch.bool),
        texts.half(),
        torch.ones(20, 4, dtype=torch.bool),
        pairs,
        swaps,
    )


def test_scorer_learns_a_planted_attribute() -> None:
    torch.manual_seed(0)
    train, val = _planted(1024, 0), _planted(200, 1)
    # validation: every true pair and one swap of it
    swap_text = torch.tensor([s[0] for s in val.swaps])
    item_idx = torch.cat([val.pairs[:, 0], val.pairs[:, 0]])
    text_idx = torch.cat([val.pairs[:, 1], swap_text])
    agree = torch.cat([torch.ones(200, dtype=torch.bool), torch.zeros(200, dtype=torch.bool)])

    def auc(m: ConsistencyScorer) -> float:
        return roc_auc(score_pairs(m, val, item_idx, text_idx), agree) or 0.0

    model = ConsistencyScorer(16, 12, dim=32, heads=2, dropout=0.0)
    before = auc(model)
    fit = fit_consistency(model, train, epochs=8, batch_size=64, lr=1e-2, score=auc, progress=False)
    assert before < 0.7 and auc(fit.model) > 0.95
    assert 1 <= fit.best_epoch <= 8 and len(fit.history) == 8


def test_scorer_with_extra_tokens_needs_them() -> None:
    model = ConsistencyScorer(16, 12, dim=32, heads=2, extra_dim=3).eval()
    items, mask = torch.randn(2, 9, 16), torch.ones(2, 9, dtype=torch.bool)
    q, qm = torch.randn(2, 4, 12), torch.ones(2, 4, dtype=torch.bool)
    tokens, tmask = model.encode_items(items, mask, torch.rand(2, 10, 3))
    assert tokens.shape == (2, 10, 32) and tmask.shape == (2, 10) and bool(tmask.all())
    assert model(items, mask, q, qm, torch.rand(2, 10, 3)).shape == (2,)
    try:
        model(items, mask, q, qm)
    except ValueError as exc:
        assert "extra" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("missing extra tokens must be refused")


def test_combination_flags_either_kind_of_contradiction() -> None:
    gen = torch.Generator().manual_seed(0)
    n = 400
    agree = torch.arange(2 * n) < n
    kinds = [""] * n + ["random"] * (n // 2) + ["swap"] * (n // 2)
    cosine = torch.randn(2 * n, generator=gen) * 0.1
    logit = torch.randn(2 * n, generator=gen)
    rel = -torch.rand(2 * n, generator=gen)
    cosine[n : n + n // 2] -= 0.5  # random mismatches: low cosine, ordinary scorer
    logit[n + n // 2 :] -= 3.0  # swaps: ordinary cosine, low scorer and relative score
    rel[n + n // 2 :] -= 2.0
    combo = Combination.fit(cosine, logit, rel, agree, kinds)
    assert combo.cosine_w > 0 and combo.scorer_w > 0 and combo.relative_w > 0
    score = combo(cosine, logit, rel)
    for kind in ("random", "swap"):
        sel = agree | torch.tensor([k == kind for k in kinds])
        alone = max(roc_auc(x[sel], agree[sel]) or 0 for x in (cosine, logit, rel))
        assert (roc_auc(score[sel], agree[sel]) or 0) > 0.97 >= alone - 0.03
    assert torch.equal(Combination(2.0, 1.0)(torch.ones(3)), torch.full((3,), 3.0))


def test_relative_scores_are_log_probabilities_among_variants() -> None:
    from polyfuse.retrieval.scoring import relative_scores

    class Fixed(ConsistencyScorer):  # logit = the text's first feature
        def score(self, i: torch.Tensor, m: torch.Tensor, q: torch.Tensor, qm: torch.Tensor):  # type: ignore[override]
            return q[:, 0, 0]

    texts = torch.tensor([2.0, 0.0, 1.0, 5.0]).view(4, 1, 1)  # query 0 + 2 variants; query 1
    data = ConsistencyData(
        torch.zeros(2, 1, 1),
        torch.ones(2, 1, dtype=torch.bool),
        texts,
        torch.ones(4, 1, dtype=torch.bool),
        torch.tensor([[0, 0], [0, 1], [0, 2], [1, 3]]),
        [[], [], [], []],
    )
    raw, rel = relative_scores([Fixed(1, 1, dim=2, heads=1)], data, torch.tensor([0, 0, 0, 1]), 2)
    torch.testing.assert_close(raw, torch.tensor([2.0, 5.0]))
    expected = 2.0 - torch.logsumexp(torch.tensor([2.0, 0.0, 1.0]), 0)
    torch.testing.assert_close(rel, torch.stack([expected, torch.tensor(0.0)]))


def test_ensemble_cosine_is_the_mean_of_member_cosines() -> None:
    torch.manual_seed(0)
    members = [AlignmentModel({"a": 6, "b": 5}, dim=4).eval() for _ in range(3)]
    ens = AlignmentEnsemble(members).eval()
    a, b = torch.randn(7, 6), torch.randn(7, 5)
    za, zb = ens.embed("a", a), ens.embed("b", b)
    assert za.shape == (7, 12)
    torch.testing.assert_close(za.norm(dim=1), torch.ones(7))
    mean = sum((m.embed("a", a) * m.embed("b", b)).sum(1) for m in members) / 3
    torch.testing.assert_close((za * zb).sum(1), mean)
