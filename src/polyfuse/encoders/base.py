"""Encoder contract: modality input -> token features ``(B, T, D)`` + mask + pooled vector."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from polyfuse.core.errors import ConfigError
from polyfuse.modalities.base import ModalityContract


class EncoderOutput(NamedTuple):
    """What every encoder returns.

    Attributes:
        tokens: ``(B, T, D)`` token features.
        mask: ``(B, T)`` bool, true for valid tokens.
        pooled: ``(B, D)`` one vector per sample.
    """

    tokens: Tensor
    mask: Tensor
    pooled: Tensor


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean over valid tokens: ``(B, T, D), (B, T) -> (B, D)``."""
    weights = mask.to(tokens.dtype).unsqueeze(-1)  # (B, T, 1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def lengths_to_mask(lengths: Tensor | None, batch: int, steps: int, device: torch.device) -> Tensor:
    """``(B,)`` lengths -> ``(B, T)`` bool mask; all valid when ``lengths`` is None."""
    if lengths is None:
        return torch.ones(batch, steps, dtype=torch.bool, device=device)
    return torch.arange(steps, device=device)[None, :] < lengths.to(device)[:, None]


class Encoder(nn.Module, ABC):
    """Base class of encoders.

    Subclasses set ``kind`` (the contract kind they read) and ``version`` (bump
    when the same weights would compute something else), take the modality
    contract plus their own keyword parameters, and set ``out_dim``.

    A *frozen* encoder never trains; its outputs depend only on the input, so
    they are cached on disk between epochs (see `FeatureCache`).
    """

    kind: ClassVar[str]
    version: ClassVar[int] = 1
    #: Pretrained encoders are frozen unless built with ``trainable=True``.
    pretrained: ClassVar[bool] = False

    out_dim: int

    def __init__(self, contract: ModalityContract, **params: Any) -> None:
        super().__init__()
        if contract.kind != self.kind:
            raise ConfigError(
                f"modalities.{contract.name}.encoder",
                f"{type(self).__name__} reads '{self.kind}' inputs, not '{contract.kind}'",
            )
        self.contract = contract
        self.params = params
        self.frozen = False

    @classmethod
    def contract_defaults(cls, **params: Any) -> dict[str, Any]:
        """Contract parameters this encoder needs (its preprocessing config).

        The config's own ``contract`` values override these.
        """
        return {}

    @abstractmethod
    def forward(self, data: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """Encode a batch of preprocessed inputs of the present samples."""

    def pool(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """Pooled vector from tokens; must equal ``forward(...).pooled``."""
        return masked_mean(tokens, mask)

    def freeze(self) -> None:
        """Stop training this encoder (weights fixed, eval mode for ever)."""
        self.frozen = True
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Encoder:
        """Frozen encoders stay in eval mode (no dropout, fixed batch-norm statistics)."""
        return super().train(mode and not self.frozen)

    def fingerprint(self) -> str:
        """Identity of what this encoder computes: class, version, parameters
        and (for pretrained ones) a digest of the weights. Used in cache keys."""
        blob = json.dumps(
            [
                type(self).__name__,
                self.version,
                self.params,
                self.contract.fingerprint(),
                self.weights_digest(),
            ],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def weights_digest(self) -> str | None:
        """Digest of pretrained weights (None for trainable encoders)."""
        return None

    @property
    def cacheable(self) -> bool:
        """Outputs can be cached: the encoder is frozen."""
        return self.frozen
