"""Video encoders: an image encoder applied to every frame, then a temporal aggregator.

Tokens are one vector per frame ``(B, T, D)`` (the frame encoder's pooled vector), masked
where a clip has fewer frames than the longest of its batch; the pooled vector is the
aggregator's summary over time. With a frozen frame encoder (EfficientNet-Lite0) the frame
tokens are what the frozen-feature cache stores, so frames are encoded once and every later
epoch trains only the aggregator and what follows it.

Aggregators (`AGGREGATORS`): ``mean`` (masked mean over frames, no parameters),
``attention`` (attention pooling: a learned query scores each frame; masked frames get no
weight) and ``transformer`` (one self-attention layer over the frames with a learned
position embedding, then the masked mean).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

from polyfuse.core.errors import ConfigError
from polyfuse.core.registry import Registry
from polyfuse.encoders.base import Encoder, EncoderOutput, lengths_to_mask, masked_mean
from polyfuse.encoders.pretrained import EfficientNetLite0
from polyfuse.encoders.trainable import ImageCNN
from polyfuse.modalities.base import ModalityContract

#: Image encoders a video encoder can apply to its frames (registry names).
FRAME_ENCODERS: dict[str, type[Encoder]] = {
    "image_cnn": ImageCNN,
    "efficientnet_lite0": EfficientNetLite0,
}


class Aggregator(nn.Module, ABC):
    """Summarises per-frame features over time: ``(B, T, D), (B, T) -> (B, D)``.

    Args:
        dim: feature size ``D``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    @abstractmethod
    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """One vector per clip from the frames where ``mask`` is true."""


class MeanAggregator(Aggregator):
    """The masked mean over frames (no parameters)."""

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """``(B, T, D), (B, T) -> (B, D)``."""
        return masked_mean(tokens, mask)


class AttentionAggregator(Aggregator):
    """Attention pooling: a learned query scores each frame; the summary is the
    softmax-weighted sum of the frames (masked frames get weight 0)."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.score = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 1))

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """``(B, T, D), (B, T) -> (B, D)``."""
        logits = self.score(tokens).squeeze(-1).masked_fill(~mask, float("-inf"))  # (B, T)
        weights = torch.softmax(logits, dim=1).nan_to_num(0.0)  # a clip with no frame: zeros
        return (weights.unsqueeze(-1) * tokens).sum(1)


class TransformerAggregator(Aggregator):
    """A small temporal transformer: frames plus a learned position embedding go through
    one self-attention layer (padding frames masked out), then the masked mean.

    Args:
        dim: feature size.
        max_frames: longest clip the position embedding covers.
    """

    def __init__(self, dim: int, max_frames: int = 64) -> None:
        super().__init__(dim)
        self.position = nn.Parameter(torch.zeros(max_frames, dim))
        heads = next(h for h in (4, 2, 1) if dim % h == 0)
        self.layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True
        )

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """``(B, T, D), (B, T) -> (B, D)``; clips longer than ``max_frames`` are refused."""
        steps = tokens.shape[1]
        if steps > self.position.shape[0]:
            raise ValueError(f"{steps} frames exceed the aggregator's max_frames")
        x = self.layer(tokens + self.position[:steps], src_key_padding_mask=~mask)  # (B, T, D)
        return masked_mean(x, mask)


AGGREGATORS: Registry[Aggregator] = Registry("temporal aggregator")
AGGREGATORS.register("mean")(MeanAggregator)
AGGREGATORS.register("attention")(AttentionAggregator)
AGGREGATORS.register("transformer")(TransformerAggregator)


class VideoFrames(Encoder):
    """An image encoder on every frame, aggregated over time.

    Args:
        frame: the image encoder (``image_cnn`` or ``efficientnet_lite0``).
        frame_params: its parameters.
        aggregator: ``mean``, ``attention`` or ``transformer``.
    """

    kind = "video"

    def __init__(
        self,
        contract: ModalityContract,
        frame: str = "image_cnn",
        frame_params: dict[str, Any] | None = None,
        aggregator: str = "mean",
    ) -> None:
        frame_params = dict(frame_params or {})
        super().__init__(contract, frame=frame, frame_params=frame_params, aggregator=aggregator)
        where = f"modalities.{contract.name}.encoder"
        cls = _frame_class(frame, where)
        self.frame = cls(contract.frame_contract, **frame_params)  # type: ignore[attr-defined]
        self.out_dim = self.frame.out_dim
        self.aggregate = AGGREGATORS.build(
            aggregator, self.out_dim, where=f"{where}.aggregator", params={}
        )

    @classmethod
    def contract_defaults(cls, **params: Any) -> dict[str, Any]:
        """The frame encoder's preprocessing (size, channels, normalisation)."""
        frame = _frame_class(str(params.get("frame", "image_cnn")), "encoder.frame")
        return frame.contract_defaults(**dict(params.get("frame_params") or {}))

    def forward(self, data: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """``(B, T, C, H, W)`` -> tokens ``(B, T, D)``, one per frame (padding frames are
        never encoded)."""
        batch, steps = data.shape[:2]
        mask = lengths_to_mask(lengths, batch, steps, data.device)  # (B, T)
        frames = data[mask]  # (N, C, H, W): the real frames only
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frame.frozen):
            per_frame = self.frame(frames).pooled  # (N, D)
        tokens = per_frame.new_zeros(batch, steps, self.out_dim)
        tokens[mask] = per_frame
        return EncoderOutput(tokens, mask, self.pool(tokens, mask))

    def pool(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """The aggregator over frames: ``(B, T, D) -> (B, D)``."""
        out: Tensor = self.aggregate(tokens, mask)
        return out

    @property
    def cacheable(self) -> bool:
        """Frame tokens can be cached when the frame encoder is frozen (the aggregator
        may still train: it runs on the cached tokens)."""
        return self.frame.frozen

    def weights_digest(self) -> str | None:
        """The frame encoder's pretrained weights."""
        return self.frame.weights_digest()


def _frame_class(name: str, where: str) -> type[Encoder]:
    if name not in FRAME_ENCODERS:
        raise ConfigError(
            f"{where}.frame",
            f"unknown frame encoder '{name}'",
            hint=f"one of {', '.join(FRAME_ENCODERS)}",
        )
    return FRAME_ENCODERS[name]
