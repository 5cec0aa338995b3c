"""Cross-modal retrieval metrics (the Flickr/COCO protocol) and querybank normalisation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _ranks(sim: Tensor, relevant: Tensor) -> Tensor:
    """0-based rank of the best relevant item per query row.

    Args:
        sim: ``(Q, G)`` query-gallery similarities.
        relevant: ``(Q, G)`` bool, true for the gallery items that answer the query.
    """
    best = sim.masked_fill(~relevant, float("-inf")).max(1).values  # (Q,)
    return (sim > best[:, None]).sum(1)


def retrieval_metrics(
    sim: Tensor, caption_image: Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, dict[str, float]]:
    """Recall@K and median rank in both directions.

    Args:
        sim: ``(C, I)`` similarity of every caption (text) to every unique image.
        caption_image: ``(C,)`` index of each caption's image.
        ks: the K of Recall@K.

    Returns:
        ``{"text_to_image": {"R@1", ..., "median_rank"}, "image_to_text": {...}}``:
        a text query is answered when its image ranks within K; an image query when
        any of its captions does. Median rank is 1-based.
    """
    images = torch.arange(sim.shape[1], device=sim.device)
    relevant = caption_image[:, None] == images[None, :]  # (C, I)
    out = {}
    for name, s, rel in (
        ("text_to_image", sim, relevant),
        ("image_to_text", sim.T, relevant.T),
    ):
        ranks = _ranks(s, rel)
        res = {f"R@{k}": float((ranks < k).double().mean()) for k in ks}
        res["median_rank"] = float(ranks.double().median()) + 1
        out[name] = res
    return out


def querybank_normalise(sim: Tensor, bank: Tensor, beta: float) -> Tensor:
    """Querybank normalisation with an inverted softmax (Bogolin et al., CVPR 2022).

    Some gallery items ("hubs") are close to almost every query. Dividing each
    gallery item's softmax score by its total over a fixed bank of *training* queries
    removes that bias; it needs no test queries, so it works one query at a time:

        sim'(q, g) = sim(q, g) - logsumexp_b(beta * bank(b, g)) / beta

    Args:
        sim: ``(Q, G)`` query-gallery similarities.
        bank: ``(B, G)`` similarities of the bank queries to the same gallery.
        beta: inverse temperature (the model's learned logit scale is a good choice).
    """
    return sim - torch.logsumexp(beta * bank, dim=0, keepdim=True) / beta
