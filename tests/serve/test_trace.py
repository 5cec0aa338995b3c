"""Traced encoder stages: used when they match eager PyTorch, refused when tracing
recorded something that only held for the example (a shape, a branch)."""

from __future__ import annotations

import asyncio

import pytest
import torch
from torch import Tensor, nn

from polyfuse.artifact import Artifact
from polyfuse.encoders.base import EncoderOutput
from polyfuse.modalities.base import ModalityBatch
from polyfuse.serve.runtime import ModelRuntime, RuntimeConfig
from polyfuse.serve.trace import EncodeStage, trace_stage
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


def test_the_runtime_traces_and_answers_like_eager(artifact: Artifact, png: bytes) -> None:
    answers = {}
    for trace in (True, False):
        config = RuntimeConfig(preprocess="thread", cache="none", trace=trace)
        rt = ModelRuntime(artifact, config)
        rt.setup()
        status = rt.stats()["encoders"]

        async def go(rt: ModelRuntime = rt) -> object:
            try:
                request = ServeRequest({"image": png, "text": "red apple"}, "r")
                return await rt.predict(request)
            finally:
                await rt.close()

        answers[trace] = asyncio.run(go())
        if trace:
            assert set(status) == {"image", "text"}
            assert all(s == "traced" or s.startswith("eager (") for s in status.values())
            assert "traced" in status.values()
        else:
            assert set(status.values()) == {"eager (trace off)"}
    traced, eager = answers[True], answers[False]
    assert traced.label == eager.label  # type: ignore[attr-defined]
    for lab, p in eager.probabilities.items():  # type: ignore[attr-defined]
        assert traced.probabilities[lab] == pytest.approx(p, abs=1e-5)  # type: ignore[attr-defined]
