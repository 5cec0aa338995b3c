"""Encoder + adapter stages for serving, optionally compiled with TorchScript tracing.

A served encoder runs on its batcher's thread while the event loop parses HTTP requests
on another. Eager PyTorch needs the GIL between every small op, so the two slow each
other down; a traced module runs its whole graph in C++ without the GIL (measured in
docs/benchmarks.md, "Serving over HTTP").

Tracing records one run and replays it, so code whose behaviour depends on input values
or on Python-side shape arithmetic can be recorded wrong. `trace_stage` therefore checks
the traced stage against the eager one on batches of different sizes and lengths and
keeps the eager stage when anything differs or tracing fails (the reason is reported).
`torch.jit.trace` is deprecated since torch 2.13 in favour of `torch.export`, which has no
GIL-free CPU runner without a compiler toolchain yet; tracing still works and stays
optional (``RuntimeConfig(trace=False)``).

Convolutional stages also get their 4-D weights in the channels-last memory format
(`channels_last`): oneDNN's convolutions run faster on it on CPU (the demo audio CNN
1.16-1.53x at batch 1 to 16 on one thread, `benchmarks/serve_stages.py`). It changes
the layout, not the values; the traced copy is still checked against the original.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.jit._trace import TracerWarning

from polyfuse.modalities.base import ModalityBatch
from polyfuse.models.multimodal import Encoded, MultimodalModel
from polyfuse.models.stages import EncodeStage, StageFn, unpack_stage

log = logging.getLogger("polyfuse.serve.runtime.stages")


def eager_stage(
    encoder: nn.Module, adapter: nn.Module, *, tokens: bool, fast_layout: bool = True
) -> StageFn:
    """The eager `StageFn` of one modality (a batch's lengths pass through as they come;
    ``lengths`` only matters for tracing); convolutional stages in channels-last when
    ``fast_layout`` (a copy: ``encoder`` is left as it is)."""
    stage = EncodeStage(encoder, adapter, tokens=tokens, lengths=True).eval()
    fast = channels_last(stage) if fast_layout else None
    return (fast or stage).run


def channels_last(stage: EncodeStage) -> EncodeStage | None:
    """A copy of ``stage`` with its 4-D parameters and buffers in the channels-last memory
    format, or None when it has no 2-D convolution (nothing to gain). A copy, so the
    model's own encoder keeps its layout (training, export and eager fallbacks read it)."""
    if not any(isinstance(m, nn.Conv2d) for m in stage.modules()):
        return None
    fast = copy.deepcopy(stage)
    fast.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # untyped overload
    return fast


def _inputs(batch: ModalityBatch, lengths: bool) -> tuple[Tensor, ...]:
    if lengths:
        if batch.lengths is None:
            raise ValueError("the contract's batch has no lengths")
        return batch.data, batch.lengths
    return (batch.data,)


def trace_stage(
    stage: EncodeStage,
    batches: Sequence[ModalityBatch],
    *,
    reference: EncodeStage | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> tuple[StageFn | None, str]:
    """Trace ``stage`` on the first batch and check it on every batch.

    Args:
        stage: the eager stage (in eval mode).
        batches: example batches; use different batch sizes and sequence lengths so a
            recording that fixed a shape is caught.
        reference: the stage whose outputs the traced one must match (default
            ``stage``; the original when ``stage`` is a `channels_last` copy).
        atol, rtol: tolerance of the comparison with the eager outputs.

    Returns:
        The traced `StageFn` and ``"traced"``, or None and why it was not used.
    """
    if not batches:
        return None, "no example batches"
    try:
        # TracerWarnings say a value may have been recorded as a constant: the check
        # against eager below is what decides; the deprecation is in the module docstring
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", TracerWarning)
            warnings.filterwarnings("ignore", "`torch.jit.trace", DeprecationWarning)
            traced: Any = torch.jit.trace(
                stage, _inputs(batches[0], stage.lengths), strict=False, check_trace=False
            )
            for batch in batches:
                args = _inputs(batch, stage.lengths)
                want, got = (reference or stage)(*args), traced(*args)
                if len(want) != len(got):
                    return None, "traced outputs differ in number"
                for w, g in zip(want, got, strict=True):
                    if w.shape != g.shape or not torch.allclose(
                        w.float(), g.float(), atol=atol, rtol=rtol
                    ):
                        return (
                            None,
                            f"traced output differs on a batch of shape {tuple(args[0].shape)}",
                        )
    except Exception as exc:  # tracing is an optimisation: any failure keeps eager
        return None, f"tracing failed: {type(exc).__name__}: {str(exc)[:200]}"

    def run(data: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
        out = traced(data, lengths) if stage.lengths else traced(data)
        return unpack_stage(out, stage.tokens)

    return run, "traced"


#: ``(encoded, shown) -> (logits, unimodal logits by modality, fusion weights or None)``:
#: fusion and heads over a batch of embeddings, ``shown`` the presence the fusion sees.
FuseFn = Callable[[Encoded, Mapping[str, Tensor]], tuple[Tensor, dict[str, Tensor], Tensor | None]]


class FuseStage(nn.Module):
    """Fusion + fused head + auxiliary heads of a model as one module over flat tensors
    (what gets traced): per modality, in ``model.modalities`` order, its pooled
    embeddings ``(B, D)`` and presence ``(B,)``, then (fusions that read tokens) its
    tokens ``(B, T, D)`` and mask ``(B, T)``. Returns the logits, each modality's
    auxiliary logits and, when the fusion has them, its weights."""

    def __init__(self, model: MultimodalModel) -> None:
        super().__init__()
        self.model = model
        self.names = tuple(model.modalities)
        self.tokens = bool(model.fusion.uses_tokens)
        self.weights = True  # set by `fuse_stage` after one eager call

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        n = len(self.names)
        pooled = dict(zip(self.names, args[:n], strict=True))
        present = dict(zip(self.names, args[n : 2 * n], strict=True))
        tokens = dict(zip(self.names, args[2 * n : 3 * n], strict=True)) if self.tokens else {}
        masks = dict(zip(self.names, args[3 * n : 4 * n], strict=True)) if self.tokens else {}
        out = self.model.fuse(Encoded(pooled, present, tokens, masks))
        extra = (out.fusion.weights,) if self.weights and out.fusion.weights is not None else ()
        return (out.logits, *(out.unimodal_logits[m] for m in self.names), *extra)

    def flat(self, encoded: Encoded, shown: Mapping[str, Tensor]) -> tuple[Tensor, ...]:
        """The module's inputs for ``encoded`` with presence ``shown``."""
        names = self.names
        args = [encoded.pooled[m] for m in names] + [shown[m] for m in names]
        if self.tokens:
            args += [encoded.tokens[m] for m in names] + [encoded.masks[m] for m in names]
        return tuple(args)

    def unflat(self, out: Sequence[Tensor]) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
        """The module's outputs in the `FuseFn` form."""
        n = len(self.names)
        weights = out[n + 1] if len(out) > n + 1 else None
        return out[0], dict(zip(self.names, out[1 : n + 1], strict=True)), weights


def eager_fuse(model: MultimodalModel) -> FuseFn:
    """``model.fuse`` in the `FuseFn` form."""

    def fuse(
        encoded: Encoded, shown: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
        out = model.fuse(encoded, shown)
        return out.logits, out.unimodal_logits, out.fusion.weights

    return fuse


def trace_fuse(
    model: MultimodalModel, examples: Sequence[tuple[Encoded, Mapping[str, Tensor]]]
) -> tuple[FuseFn | None, str]:
    """Trace fusion + heads on the first example and check every example against eager
    (``model.fuse``) within 1e-5: fusion is many small operations, which a traced graph
    runs without the interpreter (and the GIL) between them.

    Returns the traced `FuseFn` and ``"traced"``, or None and why it was not used."""
    if not examples:
        return None, "no example batches"
    stage = FuseStage(model).eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", TracerWarning)
            warnings.filterwarnings("ignore", "`torch.jit.trace", DeprecationWarning)
            first = examples[0]
            stage.weights = model.fuse(*first).fusion.weights is not None
            traced: Any = torch.jit.trace(
                stage, stage.flat(*first), strict=False, check_trace=False
            )
            for encoded, shown in examples:
                want = stage(*stage.flat(encoded, shown))
                got = traced(*stage.flat(encoded, shown))
                if len(want) != len(got) or not all(
                    w.shape == g.shape and torch.allclose(w, g, atol=1e-5, rtol=1e-4)
                    for w, g in zip(want, got, strict=True)
                ):
                    return None, f"traced fusion differs on a batch of {encoded.batch_size}"
    except Exception as exc:  # tracing is an optimisation: any failure keeps eager
        return None, f"tracing failed: {type(exc).__name__}: {str(exc)[:200]}"

    def fuse(
        encoded: Encoded, shown: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
        return stage.unflat(traced(*stage.flat(encoded, shown)))

    return fuse, "traced"


__all__ = [
    "EncodeStage",
    "FuseFn",
    "FuseStage",
    "StageFn",
    "channels_last",
    "eager_fuse",
    "eager_stage",
    "trace_fuse",
    "trace_stage",
]


def stage_digest(*modules: nn.Module) -> str:
    """SHA-256 (hex) of the modules' state: every parameter and buffer by name, dtype,
    shape and bytes. Two stages with equal digests compute the same function, so versions
    of a model may share them (`polyfuse.serve.runtime.shared`)."""
    import hashlib

    h = hashlib.sha256()
    for i, module in enumerate(modules):
        for name, value in sorted(module.state_dict().items()):
            t = value.detach().to("cpu").contiguous()
            h.update(f"{i}.{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
