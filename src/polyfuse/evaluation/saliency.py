"""Integrated Gradients within one modality: which pixels or spectrogram cells drove a prediction.

IG (Sundararajan et al., 2017) integrates the gradient of the fused logit of a
class along the straight path from a baseline (zeros of the preprocessed input:
the mean image after normalisation, a silent-level spectrogram) to the input;
the attributions sum to ``logit(x) - logit(baseline)`` up to the Riemann error.
The other modalities of the sample stay as they were, taken from the bank.
Works for float inputs (image, audio, time series), frozen encoders included.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from polyfuse.evaluation.bank import FeatureBank
from polyfuse.models.multimodal import MultimodalModel


@dataclass
class Saliency:
    """Integrated Gradients of one modality of one sample.

    Attributes:
        modality: which input was attributed.
        target: class index attributed.
        attributions: same shape as the preprocessed input.
        delta: ``sum(attributions) - (logit(x) - logit(baseline))`` (convergence check).
    """

    modality: str
    target: int
    attributions: Tensor
    delta: float

    def heatmap(self) -> Tensor:
        """2-D magnitude map: images ``(H, W)`` (summed over channels), spectrograms
        ``(n_mels, T)``, series ``(C, T)``."""
        a = self.attributions.abs()
        if a.dim() == 3:  # image (C, H, W)
            return a.sum(0)
        if a.dim() == 2 and a.shape[0] > a.shape[1]:  # series (T, C)
            return a.T
        return a


def integrated_gradients(
    model: MultimodalModel,
    bank: FeatureBank,
    row: int,
    modality: str,
    x: Tensor,
    target: int,
    lengths: Tensor | None = None,
    steps: int = 32,
) -> Saliency:
    """IG of the fused logit ``target`` w.r.t. the preprocessed input ``x`` of ``modality``.

    Args:
        bank: features of the other modalities; ``row`` is the sample's bank position.
        x: preprocessed input of that sample (e.g. ``(C, H, W)`` or ``(n_mels, T)``).
        lengths: ``(1,)`` length the contract's collate gives ``x`` (variable-length inputs).
        steps: Riemann steps (midpoint rule).
    """
    model.eval()
    device = model.prior.device
    x = x.to(device).float()
    alphas = (torch.arange(steps, device=device, dtype=torch.float32) + 0.5) / steps
    path = (alphas.view(-1, *([1] * x.dim())) * x).detach().requires_grad_(True)  # baseline 0
    logits = _logits(model, bank, row, modality, path, lengths)[:, target]
    (grads,) = torch.autograd.grad(logits.sum(), path)
    attributions = (x * grads.mean(0)).detach().cpu()
    with torch.no_grad():
        ends = _logits(model, bank, row, modality, torch.stack([torch.zeros_like(x), x]), lengths)
    gap = float(ends[1, target] - ends[0, target])
    return Saliency(modality, target, attributions, float(attributions.sum()) - gap)


def _logits(
    model: MultimodalModel,
    bank: FeatureBank,
    row: int,
    modality: str,
    data: Tensor,
    lengths: Tensor | None,
) -> Tensor:
    """Fused logits of ``row`` with ``modality`` replaced by each of ``data`` (a batch)."""
    device = model.prior.device
    n = data.shape[0]
    res = model.encoder(modality)(data, None if lengths is None else lengths.expand(n).to(device))
    adapter = model.adapters[modality]
    enc = bank.gather(torch.full((n,), row, dtype=torch.long))
    enc.pooled = {m: t.to(device) for m, t in enc.pooled.items()}
    enc.present = {m: t.to(device) for m, t in enc.present.items()}
    enc.pooled[modality] = adapter(res.pooled)
    enc.present[modality] = torch.ones(n, dtype=torch.bool, device=device)
    if model.fusion.uses_tokens:
        enc.tokens = {m: t.to(device) for m, t in enc.tokens.items()}
        enc.masks = {m: t.to(device) for m, t in enc.masks.items()}
        enc.tokens[modality] = adapter(res.tokens)
        enc.masks[modality] = res.mask
    return model.fuse(enc).logits
