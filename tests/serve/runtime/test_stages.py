"""Traced encoder stages: used when they match eager PyTorch, refused when tracing
recorded something that only held for the example (a shape, a branch)."""

from __future__ import annotations

import asyncio

import pytest
import torch
from torch import Tensor, nn

from polyfuse.artifacts.classifier import Artifact
from polyfuse.encoders.base import EncoderOutput
from polyfuse.modalities.base import ModalityBatch
from polyfuse.serve.runtime.model import ModelRuntime
from polyfuse.serve.runtime.settings import RuntimeConfig
from polyfuse.serve.runtime.stages import EncodeStage, channels_last, trace_stage
from polyfuse.serve.types import ServeRequest


class Toy(nn.Module):
    """Tokens from a linear map; ``mode`` plants what tracing gets wrong."""

    def __init__(self, mode: str = "plain") -> None:
        super().__init__()
        self.proj = nn.Linear(4, 8)
        self.mode = mode

    def forward(self, data: Tensor, lengths: Tensor | None) -> EncoderOutput:
        tokens = self.proj(data)  # (B, T, 8)
        steps = torch.arange(data.shape[1])
        assert lengths is not None
        mask = steps[None, :] < lengths[:, None]
        if self.mode == "branch" and bool(data.sum() > 0):  # a value decides the path
            tokens = tokens * 2
        pooled = (tokens * mask[..., None]).sum(1) / lengths[:, None]
        if self.mode == "shape":  # a Python int: the recorded batch size sticks
            pooled = (
                pooled
                + torch.zeros(int(data.shape[0]), 8)[: data.shape[0]] * 0
                + float(data.shape[0])
            )
        if self.mode == "broken":
            return {"pooled": "not a tensor"}  # type: ignore[return-value]
        return EncoderOutput(tokens, mask, pooled)


def _batch(sizes: list[int], sign: float = 1.0, seed: int = 0) -> ModalityBatch:
    g = torch.Generator().manual_seed(seed)
    longest = max(sizes)
    data = sign * torch.rand(len(sizes), longest, 4, generator=g)
    return ModalityBatch(data, torch.ones(len(sizes), dtype=torch.bool), torch.tensor(sizes))


def _stage(mode: str, tokens: bool = True) -> EncodeStage:
    torch.manual_seed(0)
    return EncodeStage(Toy(mode), nn.Linear(8, 3), tokens=tokens, lengths=True).eval()


@pytest.mark.parametrize("tokens", [True, False])
def test_a_traceable_stage_is_traced_and_matches_eager(tokens: bool) -> None:
    stage = _stage("plain", tokens)
    fn, status = trace_stage(stage, [_batch([5]), _batch([2, 7, 4], seed=1)])
    assert status == "traced" and fn is not None
    other = _batch([3, 9, 1, 6], seed=2)  # a size it never saw
    with torch.no_grad():
        want = stage.run(other.data, other.lengths)
    got = fn(other.data, other.lengths)
    assert (got[1] is None) is (not tokens)
    for w, g in zip(want, got, strict=True):
        if w is not None:
            assert g is not None and torch.allclose(w, g, atol=1e-6)


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("shape", "differs"), ("branch", "differs"), ("broken", "tracing failed")],
)
def test_a_wrong_recording_keeps_eager(mode: str, reason: str) -> None:
    stage = _stage(mode)
    batches = [_batch([5]), _batch([2, 7, 4], sign=-1.0, seed=1)]
    fn, status = trace_stage(stage, batches)
    assert fn is None and reason in status


@pytest.mark.parametrize("trace", [True, False])
@pytest.mark.parametrize("layout", [True, False])
def test_the_runtime_traces_and_answers_like_eager(
    artifact: Artifact, png: bytes, trace: bool, layout: bool
) -> None:
    def answer(trace: bool, layout: bool) -> tuple[object, dict[str, str]]:
        config = RuntimeConfig(preprocess="thread", cache="none", trace=trace, channels_last=layout)
        rt = ModelRuntime(artifact, config)
        rt.setup()

        async def go() -> object:
            try:
                return await rt.predict(ServeRequest({"image": png, "text": "red apple"}, "r"))
            finally:
                await rt.close()

        return asyncio.run(go()), rt.stats()["encoders"]

    got, status = answer(trace, layout)
    # the image encoder is a CNN: its stage runs in channels-last when asked; text has
    # no 2-D convolution and keeps its layout
    assert status["image"] == ("traced" if trace else "eager (trace off)") + (
        ", channels_last" if layout else ""
    )
    assert status["text"] == ("traced" if trace else "eager (trace off)")
    conv = next(m for m in artifact.model.encoder("image").modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous()  # the model itself keeps its layout (a copy changed)
    eager, _ = answer(False, False)
    assert got.label == eager.label  # type: ignore[attr-defined]
    for lab, p in eager.probabilities.items():  # type: ignore[attr-defined]
        assert got.probabilities[lab] == pytest.approx(p, abs=1e-5)  # type: ignore[attr-defined]


def test_channels_last_copies_only_convolutional_stages() -> None:
    stage = _stage("plain")
    assert channels_last(stage) is None  # no 2-D convolution: nothing to gain
    conv = EncodeStage(nn.Conv2d(3, 4, 3), nn.Identity(), tokens=False, lengths=False)
    fast = channels_last(conv)
    assert fast is not None and fast is not conv
    weight = fast.encoder.weight  # type: ignore[union-attr]
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert not weight.is_contiguous()
    assert conv.encoder.weight.is_contiguous()  # type: ignore[union-attr]
