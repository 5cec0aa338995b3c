"""Prediction heads and adapters into the shared space."""

from __future__ import annotations

from torch import Tensor, nn

from polyfuse.fusion.base import mlp


class Adapter(nn.Module):
    """Projects one encoder's features (tokens or pooled) into the shared dimension.

    Args:
        in_dim: encoder output size.
        out_dim: shared dimension.
        kind: ``linear`` (Linear + LayerNorm) or ``mlp`` (two layers + LayerNorm).
        dropout: dropout on the input features.
    """

    def __init__(
        self, in_dim: int, out_dim: int, kind: str = "linear", dropout: float = 0.1
    ) -> None:
        super().__init__()
        dims = [in_dim, out_dim] if kind == "linear" else [in_dim, max(in_dim, out_dim), out_dim]
        self.net = nn.Sequential(nn.Dropout(dropout), mlp(dims, dropout), nn.LayerNorm(out_dim))

    def forward(self, x: Tensor) -> Tensor:
        """``(..., in_dim) -> (..., out_dim)``."""
        out: Tensor = self.net(x)
        return out


class PredictionHead(nn.Module):
    """Fused embedding -> logits (the task decides softmax, sigmoid or identity).

    Args:
        in_dim: embedding size.
        num_outputs: classes, labels or regression targets.
        hidden: hidden units (0: a single linear layer).
        dropout: dropout before each linear layer.
    """

    def __init__(
        self, in_dim: int, num_outputs: int, hidden: int = 0, dropout: float = 0.1
    ) -> None:
        super().__init__()
        dims = [in_dim, hidden, num_outputs] if hidden else [in_dim, num_outputs]
        self.net = nn.Sequential(nn.Dropout(dropout), mlp(dims, dropout))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_dim) -> (B, num_outputs)``."""
        out: Tensor = self.net(x)
        return out
