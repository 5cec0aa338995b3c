"""The multimodal model: encoders -> adapters -> fusion -> head, plus per-modality auxiliary heads.

Staged like timm: `MultimodalModel.encode` runs encoders and adapters once;
`MultimodalModel.fuse` runs fusion and heads for any presence pattern, so
missing-modality analysis reuses encoder work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from polyfuse.core.errors import InvalidInputError
from polyfuse.encoders.base import Encoder, lengths_to_mask
from polyfuse.fusion.base import Fusion, FusionOutput
from polyfuse.modalities.base import ModalityBatch


@dataclass
class Encoded:
    """Adapted per-modality features of a batch (the output of `MultimodalModel.encode`).

    Attributes:
        pooled: name -> ``(B, D)``; zeros where absent.
        present: name -> ``(B,)`` bool.
        tokens: name -> ``(B, T, D)`` when the fusion reads tokens, else empty.
        masks: name -> ``(B, T)`` valid-token masks, matching ``tokens``.
    """

    pooled: dict[str, Tensor]
    present: dict[str, Tensor]
    tokens: dict[str, Tensor]
    masks: dict[str, Tensor]

    @property
    def batch_size(self) -> int:
        """Number of samples."""
        return int(next(iter(self.present.values())).shape[0])


@dataclass
class ModelOutput:
    """Everything one forward pass computes.

    Attributes:
        logits: ``(B, K)`` fused prediction.
        unimodal_logits: name -> ``(B, K)`` auxiliary-head predictions (valid where present).
        embedding: ``(B, D)`` fused embedding.
        present: name -> ``(B,)`` modalities the fusion saw.
        fusion: the fusion's own output (weights, attention).
        modalities: modality order of ``fusion.weights``.
    """

    logits: Tensor
    unimodal_logits: dict[str, Tensor]
    embedding: Tensor
    present: dict[str, Tensor]
    fusion: FusionOutput
    modalities: tuple[str, ...]


class MultimodalModel(nn.Module):
    """Composition of parts passed in; build one from a config with
    `polyfuse.models.build.build_model`.

    Args:
        encoders: name -> encoder.
        adapters: name -> adapter into the shared dimension.
        fusion: fusion over the adapted features.
        head: fused embedding -> logits; None when the fusion predicts itself.
        aux_heads: name -> per-modality head on the adapted pooled feature.
        prior_logits: ``(K,)`` answer for samples with no modality at all.
        detach_aux: modalities whose auxiliary head must not train the encoder.
    """

    def __init__(
        self,
        encoders: Mapping[str, Encoder],
        adapters: Mapping[str, nn.Module],
        fusion: Fusion,
        head: nn.Module | None,
        aux_heads: Mapping[str, nn.Module],
        prior_logits: Tensor,
        detach_aux: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__()
        names = sorted(encoders)
        if (
            set(names) != set(fusion.modalities)
            or set(names) != set(adapters)
            or set(names) != set(aux_heads)
        ):
            raise ValueError(
                "encoders, adapters, aux heads and fusion must cover the same modalities"
            )
        if head is None and not fusion.produces_logits:
            raise ValueError(f"fusion {type(fusion).__name__} needs a head")
        self.modalities: tuple[str, ...] = tuple(names)
        self.encoders = nn.ModuleDict({m: encoders[m] for m in names})
        self.adapters = nn.ModuleDict({m: adapters[m] for m in names})
        self.fusion = fusion
        self.head = head
        self.aux_heads = nn.ModuleDict({m: aux_heads[m] for m in names})
        self.register_buffer("prior_logits", prior_logits.detach().clone().float())
        self.detach_aux = detach_aux

    def encoder(self, name: str) -> Encoder:
        """The encoder of modality ``name`` (typed access to ``encoders``)."""
        return cast(Encoder, self.encoders[name])

    @property
    def prior(self) -> Tensor:
        """``(K,)`` logits answered for samples with no modality."""
        return cast(Tensor, self.prior_logits)

    def encode(self, batch: Mapping[str, ModalityBatch], batch_size: int) -> Encoded:
        """Run encoders on present items and adapt them; absent rows are zeros.

        Args:
            batch: name -> collated inputs; a missing key means absent for every sample.
            batch_size: ``B``.
        """
        for name in batch:
            if name not in self.encoders:
                raise InvalidInputError(
                    name,
                    f"the model has no modality '{name}'; it knows {', '.join(self.modalities)}",
                )
        device = self.prior.device
        out = Encoded({}, {}, {}, {})
        for m in self.modalities:
            mb = batch.get(m)
            if mb is None or mb.num_present == 0:
                self._absent(out, m, batch_size, device)
                continue
            tokens, mask, pooled = self._run_encoder(m, mb)
            adapter = self.adapters[m]
            idx = mb.present.nonzero().flatten()  # (P,)
            out.present[m] = mb.present
            out.pooled[m] = _scatter(adapter(pooled), idx, batch_size)
            if self.fusion.uses_tokens:
                out.tokens[m] = _scatter(adapter(tokens), idx, batch_size)
                out.masks[m] = _scatter(mask, idx, batch_size)
        return out

    def _run_encoder(self, m: str, mb: ModalityBatch) -> tuple[Tensor, Tensor, Tensor]:
        encoder = self.encoder(m)
        if mb.encoded:  # cached frozen-encoder tokens
            mask = lengths_to_mask(mb.lengths, mb.data.shape[0], mb.data.shape[1], mb.data.device)
            return mb.data, mask, encoder.pool(mb.data, mask)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not encoder.frozen):
            res = encoder(mb.data, mb.lengths)
        return res.tokens, res.mask, res.pooled

    def _absent(self, out: Encoded, m: str, batch: int, device: torch.device) -> None:
        dim = self.fusion.dim
        out.present[m] = torch.zeros(batch, dtype=torch.bool, device=device)
        out.pooled[m] = torch.zeros(batch, dim, device=device)
        if self.fusion.uses_tokens:
            out.tokens[m] = torch.zeros(batch, 1, dim, device=device)
            out.masks[m] = torch.zeros(batch, 1, dtype=torch.bool, device=device)

    def fuse(self, encoded: Encoded, present: Mapping[str, Tensor] | None = None) -> ModelOutput:
        """Fusion, head and auxiliary heads.

        Args:
            encoded: output of `encode`.
            present: optional presence override (modality dropout, ablations);
                intersected with what was actually encoded.
        """
        seen = {
            m: encoded.present[m] & present[m]
            if present is not None and m in present
            else encoded.present[m]
            for m in self.modalities
        }
        feats = encoded.tokens if self.fusion.uses_tokens else encoded.pooled
        feats = {m: f * _expand(seen[m], f) for m, f in feats.items()}
        fused = self.fusion(feats, seen, encoded.masks if self.fusion.uses_tokens else None)
        logits = fused.logits if self.head is None else self.head(fused.embedding)
        if logits is None:  # pragma: no cover - excluded by the constructor check
            raise RuntimeError("fusion returned no logits and the model has no head")
        empty = ~torch.stack(list(seen.values()), dim=1).any(1)  # (B,)
        logits = torch.where(empty[:, None], self.prior.to(logits.dtype), logits)
        unimodal = {}
        for m in self.modalities:
            pooled = encoded.pooled[m]
            unimodal[m] = self.aux_heads[m](pooled.detach() if m in self.detach_aux else pooled)
        return ModelOutput(logits, unimodal, fused.embedding, seen, fused, self.fusion.modalities)

    def forward(
        self,
        batch: Mapping[str, ModalityBatch],
        batch_size: int,
        present: Mapping[str, Tensor] | None = None,
    ) -> ModelOutput:
        """`encode` then `fuse`."""
        return self.fuse(self.encode(batch, batch_size), present)

    def trainable_parameters(self) -> int:
        """Number of parameters that receive gradients."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _scatter(values: Tensor, index: Tensor, batch: int) -> Tensor:
    """Rows of present samples -> full batch with zeros (False) for absent ones."""
    out = values.new_zeros((batch, *values.shape[1:]))
    out[index] = values
    return out


def _expand(present: Tensor, like: Tensor) -> Tensor:
    return present.view(-1, *([1] * (like.dim() - 1))).to(like.dtype)
