"""Contrastive alignment losses."""

from __future__ import annotations

import torch
from torch import Tensor


def info_nce(
    a: Tensor,
    b: Tensor,
    logit_scale: Tensor | float,
    groups: Tensor | None = None,
) -> Tensor:
    """Symmetric InfoNCE (CLIP loss) between row-aligned embeddings, multi-positive aware.

    Row ``i`` of ``a`` and row ``i`` of ``b`` are a positive pair. With ``groups``
    (e.g. the image id of every caption), every pair of rows from the same group is a
    positive too, and each row's target spreads evenly over its positives, so several
    captions of one image in a batch are not pushed apart as negatives.

    Args:
        a: ``(B, D)`` embeddings of one modality (normalised inside).
        b: ``(B, D)`` embeddings of the other.
        logit_scale: ``exp`` of it multiplies the cosine similarities (learnable in CLIP;
            pass the log-temperature parameter).
        groups: ``(B,)`` group id per row, or None (only the diagonal is positive).

    Returns:
        Scalar: the mean of the a->b and b->a cross-entropies.
    """
    za = torch.nn.functional.normalize(a, dim=1)
    zb = torch.nn.functional.normalize(b, dim=1)
    scale = torch.as_tensor(logit_scale, dtype=za.dtype, device=za.device).exp()
    logits = scale * za @ zb.T  # (B, B)
    n = logits.shape[0]
    if groups is None:
        target = torch.eye(n, dtype=logits.dtype, device=logits.device)
    else:
        target = (groups[:, None] == groups[None, :]).to(logits.dtype)
    a_to_b = -(target / target.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    b_to_a = -(target / target.sum(0, keepdim=True) * logits.log_softmax(0)).sum(0).mean()
    return (a_to_b + b_to_a) / 2
