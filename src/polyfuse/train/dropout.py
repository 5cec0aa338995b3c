"""Modality dropout: hide whole modalities per training sample, never all of them."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor


def modality_dropout(
    present: Mapping[str, Tensor],
    probs: Mapping[str, float],
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Drop each present modality of each sample with its probability.

    A sample that would lose every modality it has keeps one of them, chosen
    uniformly. Samples keep at least what they had if nothing is dropped.

    Args:
        present: name -> ``(B,)`` bool presence.
        probs: name -> drop probability (missing names: 0).
        generator: RNG for reproducibility.

    Returns:
        name -> ``(B,)`` bool presence after dropout.
    """
    names = sorted(present)
    mask = torch.stack([present[m] for m in names], dim=1)  # (B, M)
    if not any(probs.get(m, 0.0) > 0 for m in names):
        return dict(present)
    device = mask.device
    p = torch.tensor([probs.get(m, 0.0) for m in names], device=device)
    rand = torch.rand(mask.shape, generator=generator, device="cpu").to(device)
    kept = mask & (rand >= p)
    lost_all = mask.any(1) & ~kept.any(1)  # (B,)
    if bool(lost_all.any()):
        scores = torch.rand(mask.shape, generator=generator, device="cpu").to(device)
        choice = scores.masked_fill(~mask, -1.0).argmax(1)  # one present modality per row
        restore = torch.nn.functional.one_hot(choice, len(names)).bool() & lost_all[:, None]
        kept = kept | restore
    return {m: kept[:, i] for i, m in enumerate(names)}
