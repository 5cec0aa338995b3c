"""One modality's encoder + adapter as one module: the unit that serving batches, traces
and `polyfuse export` writes as one ONNX graph.

`EncodeStage` computes exactly what `MultimodalModel.encode` computes for one modality's
present items: the pooled vector and (for token fusions) the token sequence, both in the
fused space, and the valid-token mask. `StageFn` is the plain-function form every runner
of a stage shares (eager, traced, ONNX Runtime).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

#: ``(data, lengths) -> (pooled, tokens or None, mask)``, all adapted into the fused space.
StageFn = Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor | None, Tensor]]


class EncodeStage(nn.Module):
    """Encoder + adapter of one modality as one module (what gets traced or exported).

    Args:
        encoder: the modality's encoder (``encoder(data, lengths) -> EncoderOutput``).
        adapter: its adapter into the fused space.
        tokens: also adapt the token sequence (attention fusions read tokens).
        lengths: the contract's batches carry lengths (text, audio, series).
    """

    def __init__(self, encoder: nn.Module, adapter: nn.Module, *, tokens: bool, lengths: bool):
        super().__init__()
        self.encoder = encoder
        self.adapter = adapter
        self.tokens = tokens
        self.lengths = lengths

    def forward(self, data: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, ...]:
        """``(pooled (B, D), [tokens (B, T, D)], mask (B, T))``."""
        out = self.encoder(data, lengths if self.lengths else None)
        pooled = self.adapter(out.pooled)
        if self.tokens:
            return pooled, self.adapter(out.tokens), out.mask
        return pooled, out.mask

    def run(self, data: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
        """Eager call in the `StageFn` form."""
        return unpack_stage(self(data, lengths), self.tokens)


def unpack_stage(out: Sequence[Tensor], tokens: bool) -> tuple[Tensor, Tensor | None, Tensor]:
    """A stage's output tuple in the `StageFn` form ``(pooled, tokens or None, mask)``."""
    if tokens:
        return out[0], out[1], out[2]
    return out[0], None, out[1]


__all__ = ["EncodeStage", "StageFn", "unpack_stage"]
