"""Fusion contract: per-modality features keyed by name + presence -> one typed output."""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn


class FusionOutput(NamedTuple):
    """What every fusion returns.

    Attributes:
        embedding: ``(B, out_dim)`` fused representation.
        logits: ``(B, K)`` when the fusion predicts by itself (``late``), else None.
        weights: ``(B, M)`` per-sample modality importance in ``Fusion.modalities``
            order, 0 for absent modalities; None when the fusion has none.
        attention: ``(B, L, L)`` attention map over fusion tokens (head-averaged,
            last layer) for attention fusions, else None.
    """

    embedding: Tensor
    logits: Tensor | None = None
    weights: Tensor | None = None
    attention: Tensor | None = None


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last axis restricted to ``mask``; all-masked rows give zeros."""
    scores = scores.masked_fill(~mask, float("-inf"))
    out = torch.softmax(scores, dim=-1)
    return torch.nan_to_num(out, nan=0.0)


class Fusion(nn.Module, ABC):
    """Base class of fusions.

    Args:
        modalities: modality names; stored sorted, so order in configs never matters.
        dim: dimension of the per-modality features (the shared space).
        num_outputs: size of the prediction (used by fusions that predict).

    Every fusion accepts any subset of present modalities per sample, including
    none (its output is then finite but meaningless; the model answers those
    samples with the label prior).
    """

    #: Reads token sequences ``(B, T, D)`` with masks rather than pooled ``(B, D)``.
    uses_tokens: ClassVar[bool] = False
    #: Returns logits itself; the model then has no separate head.
    produces_logits: ClassVar[bool] = False

    def __init__(self, modalities: Sequence[str], dim: int, num_outputs: int) -> None:
        super().__init__()
        if not modalities:
            raise ValueError("a fusion needs at least one modality")
        self.modalities: tuple[str, ...] = tuple(sorted(modalities))
        self.dim = dim
        self.num_outputs = num_outputs
        self.out_dim = dim

    @abstractmethod
    def forward(
        self,
        features: Mapping[str, Tensor],
        present: Mapping[str, Tensor],
        masks: Mapping[str, Tensor] | None = None,
    ) -> FusionOutput:
        """Fuse.

        Args:
            features: name -> ``(B, D)`` pooled features (or ``(B, T, D)`` tokens
                when `uses_tokens`); rows of absent samples hold zeros.
            present: name -> ``(B,)`` bool presence.
            masks: name -> ``(B, T)`` bool valid-token masks (token fusions).
        """

    def presence(self, present: Mapping[str, Tensor]) -> Tensor:
        """``(B, M)`` bool presence in `modalities` order."""
        return torch.stack([present[m] for m in self.modalities], dim=1)

    def stacked(self, features: Mapping[str, Tensor]) -> Tensor:
        """``(B, M, D)`` features in `modalities` order."""
        return torch.stack([features[m] for m in self.modalities], dim=1)


def mlp(dims: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear-GELU-Dropout stack; no activation after the last layer."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers += [nn.GELU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)
