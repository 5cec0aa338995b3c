"""Which frames of a video mattered to one answer: each frame left out in turn.

The video is encoded once (every frame through the frame encoder); then, for each real
frame, the temporal aggregator runs again without it, the result goes through the adapter
and the fusion with the other modalities as they were, and the effect of the frame is how
much the answered class's probability drops without it (negative: the answer is surer
without it). Cost: one encode plus one aggregation and fusion per frame (no frame is
encoded twice).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from polyfuse.core.errors import InvalidInputError
from polyfuse.inference.batches import assemble

if TYPE_CHECKING:
    from polyfuse.heads.tasks import Task
    from polyfuse.modalities.base import ModalityContract
    from polyfuse.models.multimodal import MultimodalModel


@dataclass(frozen=True)
class FrameEffects:
    """The effect of each sampled frame on one answer.

    Attributes:
        modality: the video modality.
        label: the class whose probability is measured (the answer).
        probability: its probability with every frame.
        times: each frame's time (seconds).
        effects: probability with every frame minus probability without this one.
    """

    modality: str
    label: str
    probability: float
    times: list[float]
    effects: list[float]

    def to_dict(self) -> dict[str, Any]:
        """``{"label", "probability", "frames": [{"t", "effect"}]}``."""
        return {
            "label": self.label,
            "probability": round(self.probability, 6),
            "frames": [
                {"t": round(t, 3), "effect": round(e, 6)}
                for t, e in zip(self.times, self.effects, strict=True)
            ],
        }


@torch.no_grad()
def frame_effects(
    model: MultimodalModel,
    contracts: Mapping[str, ModalityContract],
    task: Task,
    inputs: Mapping[str, Any],
    modality: str,
) -> FrameEffects:
    """Leave each frame of ``inputs[modality]`` out and measure the answer (see the module
    docstring). ``inputs`` holds raw values (bytes, paths, text) of any of the model's
    modalities.

    Raises:
        InvalidInputError: ``modality`` is not a video modality of the model or is missing
            from ``inputs``, or an input cannot be read.
    """
    contract = contracts.get(modality)
    if contract is None or contract.kind != "video":
        raise InvalidInputError(
            modality,
            "not a video modality of the model",
            hint=f"video modalities: {[m for m, c in contracts.items() if c.kind == 'video']}",
        )
    if modality not in inputs:
        raise InvalidInputError(modality, "the request has no video to explain")
    clip = contract.load(inputs[modality], field=modality)
    sample = {modality: contract.preprocess(clip)}
    for name, value in inputs.items():
        if name != modality and name in contracts:
            c = contracts[name]
            sample[name] = c.preprocess(c.load(value, field=name))
    model.eval()
    device = model.prior.device
    batch = {m: b.to(device) for m, b in assemble(contracts, [sample]).items()}
    encoded = model.encode(batch, 1)
    probs = task.probabilities(model.fuse(encoded).logits)[0]
    k = int(probs.argmax())
    mb = batch[modality]
    encoder = model.encoder(modality)
    adapter = model.adapters[modality]
    res = encoder(mb.data, mb.lengths)
    effects: list[float] = []
    real = res.mask[0].nonzero().flatten().tolist()
    for t in real:
        mask = res.mask.clone()
        mask[0, t] = False
        pooled = adapter(encoder.pool(res.tokens, mask))
        without = dataclasses.replace(
            encoded, pooled={**encoded.pooled, modality: pooled}, masks=dict(encoded.masks)
        )
        if model.fusion.uses_tokens:
            without.tokens = {**encoded.tokens, modality: adapter(res.tokens)}
            without.masks[modality] = mask
        if not bool(mask.any()):  # the only frame: without it the video is missing
            without.present = {**encoded.present, modality: torch.zeros_like(mask[:, 0])}
        p = task.probabilities(model.fuse(without).logits)[0, k]
        effects.append(float(probs[k] - p))
    times = [float(clip.timestamps[t]) for t in real]
    labels = list(task.labels)
    return FrameEffects(modality, str(labels[k]), float(probs[k]), times, effects)
