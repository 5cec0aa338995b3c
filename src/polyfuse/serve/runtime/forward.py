"""The model's forward passes on served batches: `encode_items` (encoder + adapter of one
modality over preprocessed items) and `fuse_requests` (fusion + heads over several requests'
embeddings). Shared by `ModelRuntime` and the Ray encoder deployments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from polyfuse.heads.tasks import Task
from polyfuse.inference.batches import collate_all
from polyfuse.modalities.base import ModalityContract
from polyfuse.models.multimodal import Encoded, MultimodalModel
from polyfuse.serve.runtime.cache import CachedValue
from polyfuse.serve.runtime.stages import FuseFn, StageFn, eager_fuse, eager_stage


@dataclass(frozen=True)
class Fused:
    """One request's answer from a batched fusion forward, made into Python values on
    the fusion thread (off the event loop)."""

    label: Any  # the task's decoded prediction
    probabilities: dict[str, float]  # label -> probability (rounded)
    contributions: dict[str, float] | None  # fusion importance weights, if it has them
    # for drift monitoring (``fuse_requests(..., monitor=True)``): per modality present, its
    # own head's probabilities; per modality, the fused probabilities without it; the
    # fused probabilities unrounded (human review ranks answers the rounding would tie)
    unimodal: dict[str, list[float]] | None = None
    without: dict[str, list[float]] | None = None
    exact: list[float] | None = None


def encode_items(
    model: MultimodalModel,
    contract: ModalityContract,
    items: list[Tensor],
    device: Any,
    stage: StageFn | None = None,
) -> list[CachedValue]:
    """Encoder + adapter of ``contract``'s modality over preprocessed items: one
    ``{"pooled", ["tokens", "mask"]}`` each (shared by `ModelRuntime` and the Ray encoder
    deployments). ``stage``: a (traced) `StageFn` to run instead of the eager modules."""
    m = contract.name
    mb = collate_all(contract, items).to(device)
    if stage is None:  # the model as it is (a channels-last copy per call would cost more)
        stage = eager_stage(
            model.encoder(m), model.adapters[m], tokens=model.fusion.uses_tokens, fast_layout=False
        )
    with torch.inference_mode():
        pooled_t, tokens_t, mask_t = stage(mb.data, mb.lengths)
        pooled = pooled_t.float().cpu()  # (P, D)
        tokens = None if tokens_t is None else tokens_t.float().cpu()
    mask = mask_t.cpu()  # (P, T)
    out: list[CachedValue] = []
    for i in range(len(items)):
        value = {"pooled": pooled[i].clone()}
        if tokens is not None:
            valid = mask[i].nonzero()
            n = int(valid.max()) + 1 if valid.numel() else 1
            value["tokens"] = tokens[i, :n].clone()  # (T_i, D)
            value["mask"] = mask[i, :n].clone()
        out.append(value)
    return out


def batch_embeddings(model: MultimodalModel, requests: list[Mapping[str, CachedValue]]) -> Encoded:
    """Several requests' embeddings as one `Encoded` batch: a request lacking a modality
    gets zeros and ``present=False``; token sequences are padded and masked."""
    n = len(requests)
    dim, device = model.fusion.dim, model.prior.device
    enc = Encoded({}, {}, {}, {})
    for m in model.modalities:
        values = [r.get(m) for r in requests]
        have = [i for i, v in enumerate(values) if v is not None]
        given = [v["pooled"] for v in values if v is not None]
        enc.present[m] = torch.tensor([v is not None for v in values], device=device)
        if len(have) == n:
            pooled = torch.stack(given)
        else:
            pooled = torch.zeros(n, dim)
            if have:
                pooled[have] = torch.stack(given)
        enc.pooled[m] = pooled.to(device)
        if model.fusion.uses_tokens:
            longest = max((int(v["tokens"].shape[0]) for v in values if v is not None), default=1)
            tok = torch.zeros(n, longest, dim)
            mask = torch.zeros(n, longest, dtype=torch.bool)
            for i, v in enumerate(values):
                if v is not None:
                    k = int(v["tokens"].shape[0])
                    tok[i, :k] = v["tokens"]
                    mask[i, :k] = v["mask"]
            enc.tokens[m], enc.masks[m] = tok.to(device), mask.to(device)
    return enc


def fuse_requests(
    model: MultimodalModel,
    task: Task,
    requests: list[Mapping[str, CachedValue]],
    monitor: bool = False,
    hidden: frozenset[str] = frozenset(),
    fuse: FuseFn | None = None,
) -> list[Fused]:
    """Fusion and heads over several requests' embeddings in one forward (a request lacking
    a modality gets zeros and ``present=False``; token sequences are padded and masked),
    split back into one `Fused` per request.

    Args:
        monitor: also return each present modality's own head's probabilities and the
            fused probabilities with each modality left out (one more fusion pass per
            modality, on the same embeddings).
        hidden: modalities whose embeddings the fusion must not see (quarantined); their
            heads still run for monitoring.
        fuse: fusion + heads to run (`polyfuse.serve.runtime.stages.trace_fuse`); default
            the model's eager ``fuse``.
    """
    n = len(requests)
    run = fuse or eager_fuse(model)
    enc = batch_embeddings(model, requests)
    shown = {m: enc.present[m] & (m not in hidden) for m in model.modalities}
    unimodal: list[dict[str, list[float]]] | None = None
    without: list[dict[str, list[float]]] | None = None
    with torch.inference_mode():
        logits, unimodal_logits, weights_t = run(enc, shown)
        probs = task.probabilities(logits.cpu())
        if monitor:
            unimodal, without = [{} for _ in range(n)], [{} for _ in range(n)]
            for m in model.modalities:
                head = task.probabilities(unimodal_logits[m].cpu()).tolist()
                loo = {o: shown[o] & (o != m) for o in model.modalities}
                rest = task.probabilities(run(enc, loo)[0].cpu()).tolist()
                for i, carried in enumerate(enc.present[m].tolist()):
                    if carried:
                        unimodal[i][m] = head[i]
                    without[i][m] = rest[i]
    rows = probs.tolist()
    weights = None if weights_t is None else weights_t.cpu().tolist()
    order = model.fusion.modalities
    return [
        Fused(
            task.decode(probs[i]),
            {lab: round(p, 6) for lab, p in zip(task.labels, rows[i], strict=True)},
            None
            if weights is None
            else {m: round(w, 6) for m, w in zip(order, weights[i], strict=True)},
            None if unimodal is None else unimodal[i],
            None if without is None else without[i],
            None if without is None else rows[i],
        )
        for i in range(n)
    ]
