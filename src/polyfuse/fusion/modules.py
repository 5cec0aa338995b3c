"""The fusion strategies: concat, late, gated, cross_attention, set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from polyfuse.core.errors import ConfigError
from polyfuse.fusion.base import Fusion, FusionOutput, masked_softmax, mlp


class ConcatFusion(Fusion):
    """Feature-level (early) fusion: concatenate every modality, a learned placeholder
    standing in for each missing one, plus presence bits; then an MLP.

    Args:
        hidden: hidden units of the MLP.
        dropout: dropout in the MLP.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        dim: int,
        num_outputs: int,
        hidden: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(modalities, dim, num_outputs)
        self.placeholders = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(dim) * 0.02) for m in self.modalities}
        )
        m = len(self.modalities)
        self.mlp = mlp([m * dim + m, hidden, dim], dropout)

    def forward(
        self,
        features: Mapping[str, Tensor],
        present: Mapping[str, Tensor],
        masks: Mapping[str, Tensor] | None = None,
    ) -> FusionOutput:
        """Concatenate and project: ``(B, M*D + M) -> (B, D)``."""
        parts = [
            torch.where(present[m][:, None], features[m], self.placeholders[m].to(features[m]))
            for m in self.modalities
        ]
        bits = self.presence(present).to(parts[0].dtype)  # (B, M)
        return FusionOutput(self.mlp(torch.cat([*parts, bits], dim=1)))


class LateFusion(Fusion):
    """Decision-level fusion: one head per modality, logits combined over present modalities.

    Args:
        combine: ``mean`` (equal weights), ``learned`` (a softmax over learned
            per-modality weights, renormalised over present ones) or
            ``stacking`` (a linear layer over all per-modality logits and presence bits).
        hidden: hidden units of each modality head (0: linear).
        dropout: dropout in the heads.
    """

    produces_logits = True
    COMBINES = ("mean", "learned", "stacking")

    def __init__(
        self,
        modalities: Sequence[str],
        dim: int,
        num_outputs: int,
        combine: str = "mean",
        hidden: int = 0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(modalities, dim, num_outputs)
        if combine not in self.COMBINES:
            raise ConfigError("model.fusion.combine", f"must be one of {', '.join(self.COMBINES)}")
        self.combine = combine
        dims = [dim, hidden, num_outputs] if hidden else [dim, num_outputs]
        self.heads = nn.ModuleDict({m: mlp(dims, dropout) for m in self.modalities})
        m = len(self.modalities)
        self.weight_logits = nn.Parameter(torch.zeros(m))
        self.stack = nn.Linear(m * num_outputs + m, num_outputs) if combine == "stacking" else None

    def forward(
        self,
        features: Mapping[str, Tensor],
        present: Mapping[str, Tensor],
        masks: Mapping[str, Tensor] | None = None,
    ) -> FusionOutput:
        """Per-modality logits ``(B, M, K)`` combined into ``(B, K)``."""
        mask = self.presence(present)  # (B, M)
        per = torch.stack([self.heads[m](features[m]) for m in self.modalities], dim=1)  # (B, M, K)
        per = per * mask[..., None].to(per.dtype)
        if self.combine == "learned":
            weights = masked_softmax(self.weight_logits.expand_as(mask), mask)
        else:
            weights = mask.to(per.dtype) / mask.sum(1, keepdim=True).clamp_min(1).to(per.dtype)
        if self.stack is not None:
            logits = self.stack(torch.cat([per.flatten(1), mask.to(per.dtype)], dim=1))
        else:
            logits = (weights[..., None] * per).sum(1)
        embedding = (weights[..., None] * self.stacked(features)).sum(1)
        return FusionOutput(
            embedding, logits=logits, weights=None if self.stack is not None else weights
        )


class GatedFusion(Fusion):
    """Gated multimodal unit: each modality is projected (tanh), a gate network that sees
    every present modality scores them per sample, and a softmax over the present ones
    weights the sum. The weights are the per-sample modality importance.

    Args:
        hidden: hidden units of the gate network.
        dropout: dropout in the gate network.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        dim: int,
        num_outputs: int,
        hidden: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(modalities, dim, num_outputs)
        m = len(self.modalities)
        self.project = nn.ModuleDict({k: nn.Linear(dim, dim) for k in self.modalities})
        self.gate = mlp([m * dim + m, hidden, m], dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(
        self,
        features: Mapping[str, Tensor],
        present: Mapping[str, Tensor],
        masks: Mapping[str, Tensor] | None = None,
    ) -> FusionOutput:
        """Gate-weighted sum of projected modalities: ``(B, D)``."""
        mask = self.presence(present)  # (B, M)
        feats = self.stacked(features)  # (B, M, D)
        x = feats * mask[..., None].to(feats.dtype)
        scores = self.gate(torch.cat([x.flatten(1), mask.to(x.dtype)], dim=1))  # (B, M)
        weights = masked_softmax(scores, mask)
        h = torch.stack([torch.tanh(self.project[m](features[m])) for m in self.modalities], dim=1)
        return FusionOutput(self.norm((weights[..., None] * h).sum(1)), weights=weights)


class _AttentionLayer(nn.Module):
    """Pre-norm transformer layer that keeps its attention map."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = mlp([dim, 2 * dim, dim], dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, padding: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, L, D)``, ``padding (B, L)`` true where masked -> ``(x, attention (B, L, L))``."""
        h = self.norm1(x)
        out, attn = self.attn(
            h, h, h, key_padding_mask=padding, need_weights=True, average_attn_weights=True
        )
        x = x + self.dropout(out)
        return x + self.dropout(self.ff(self.norm2(x))), attn


class CrossAttentionFusion(Fusion):
    """A transformer over the tokens of every present modality plus a learned summary
    token; key-padding masks hide absent modalities and padded tokens. The summary
    token's output is the embedding; its attention mass per modality (last layer)
    is exposed as ``weights`` and the full map as ``attention``.

    Args:
        layers: transformer layers.
        heads: attention heads.
        dropout: attention and feed-forward dropout.
        tokens: attend over token sequences (true) or one pooled token per modality.
    """

    uses_tokens = True

    def __init__(
        self,
        modalities: Sequence[str],
        dim: int,
        num_outputs: int,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
        tokens: bool = True,
    ) -> None:
        super().__init__(modalities, dim, num_outputs)
        if dim % heads:
            raise ConfigError("model.fusion.heads", f"dim {dim} is not divisible by {heads} heads")
        self.uses_tokens = tokens  # type: ignore[misc]
        self.summary = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.modality_embed = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(dim) * 0.02) for m in self.modalities}
        )
        self.layers = nn.ModuleList(_AttentionLayer(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(
        self,
        features: Mapping[str, Tensor],
        present: Mapping[str, Tensor],
        masks: Mapping[str, Tensor] | None = None,
    ) -> FusionOutput:
        """Attend over ``1 + sum_m T_m`` tokens; returns the summary token ``(B, D)``."""
        batch = present[self.modalities[0]].shape[0]
        seqs, valid, owner = [self.summary.expand(batch, -1, -1)], [], []
        for i, m in enumerate(self.modalities):
            x = features[m]
            x = x.unsqueeze(1) if x.dim() == 2 else x  # (B, T, D)
            token_mask = (
                masks[m]
                if masks is not None and m in masks and x.shape[1] > 1
                else torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            )
            seqs.append(x + self.modality_embed[m])
            valid.append(token_mask & present[m][:, None])
            owner += [i] * x.shape[1]
        seq = torch.cat(seqs, dim=1)  # (B, L, D)
        summary_valid = torch.ones(batch, 1, dtype=torch.bool, device=seq.device)
        padding = ~torch.cat([summary_valid, *valid], dim=1)  # (B, L)
        attn = seq.new_zeros(batch, seq.shape[1], seq.shape[1])
        for layer in self.layers:
            seq, attn = layer(seq, padding)
        owner_t = torch.tensor(owner, device=seq.device)
        mass = seq.new_zeros(batch, len(self.modalities)).index_add_(
            1, owner_t, attn[:, 0, 1:]
        )  # (B, M) summary-token attention per modality
        weights = mass / mass.sum(1, keepdim=True).clamp_min(1e-9)
        return FusionOutput(self.norm(seq[:, 0]), weights=weights, attention=attn)


class SetFusion(Fusion):
    """Deep Sets: a shared network per present modality, permutation-invariant pooling,
    then a second network.

    Args:
        pool: ``mean``, ``sum`` or ``max`` over present modalities.
        identity: add a learned per-modality embedding before the shared network
            (turn off for strict invariance to which modality a vector came from).
        hidden: hidden units of both networks.
        dropout: dropout in both networks.
    """

    POOLS = ("mean", "sum", "max")

    def __init__(
        self,
        modalities: Sequence[str],
        dim: int,
        num_outputs: int,
        pool: str = "mean",
        identity: bool = True,
        hidden: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(modalities, dim, num_outputs)
        if pool not in self.POOLS:
            raise ConfigError("model.fusion.pool", f"must be one of {', '.join(self.POOLS)}")
        self.pool = pool
        self.modality_embed = (
            nn.ParameterDict({m: nn.Parameter(torch.randn(dim) * 0.02) for m in self.modalities})
            if identity
            else None
        )
        self.phi = mlp([dim, hidden, dim], dropout)
        self.rho = mlp([dim, hidden, dim], dropout)

    def forward(
        self,
        features: Mapping[str, Tensor],
        present: Mapping[str, Tensor],
        masks: Mapping[str, Tensor] | None = None,
    ) -> FusionOutput:
        """Pool ``phi(x_m)`` over present modalities: ``(B, D)``."""
        mask = self.presence(present)  # (B, M)
        x = self.stacked(features)  # (B, M, D)
        if self.modality_embed is not None:
            x = x + torch.stack([self.modality_embed[m] for m in self.modalities])[None]
        h = self.phi(x)
        keep = mask[..., None]
        if self.pool == "max":
            pooled = h.masked_fill(~keep, float("-inf")).amax(1)
            pooled = torch.where(mask.any(1, keepdim=True), pooled, torch.zeros_like(pooled))
        else:
            pooled = (h * keep.to(h.dtype)).sum(1)
            if self.pool == "mean":
                pooled = pooled / mask.sum(1, keepdim=True).clamp_min(1).to(h.dtype)
        return FusionOutput(self.rho(pooled))
