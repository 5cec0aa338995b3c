"""The low-level inference loop: run a model over batches and collect raw tensors.

`collect` returns `Collected` (fused and unimodal logits, presence, fusion weights,
embeddings) in manifest row order; it never decodes labels. Its users are
`polyfuse.inference.predict` (which turns the tensors into `Prediction` answers),
evaluation (metrics straight from the logits) and `polyfuse.evaluation.bank` (which
reuses `encoded_batches` to keep the encoder outputs).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from polyfuse.core.device import autocast
from polyfuse.core.progress import bar
from polyfuse.data.dataset import BadRow, Batch
from polyfuse.models.multimodal import Encoded, MultimodalModel


@dataclass
class Collected:
    """Model outputs over a dataset, in manifest row order.

    Attributes:
        indices: manifest row index of each output row.
        logits: ``(N, K)`` fused logits.
        unimodal: name -> ``(N, K)`` auxiliary-head logits (valid where ``available``).
        present: name -> ``(N,)`` modalities the fusion saw.
        weights: ``(N, M)`` fusion modality weights (order ``modalities``), if any.
        embedding: ``(N, D)`` fused embeddings.
        targets: stacked targets, when every row had one.
        bad_rows: rows that failed to load.
        modalities: the model's modality order.
        subset_logits: ``"a+b"`` -> ``(N, K)`` logits when only those modalities were
            shown to the fusion (encoders ran once per batch; see `collect`).
        pooled: name -> ``(N, D)`` adapted encoder features (zeros where absent), when
            `collect` was asked to keep them.
    """

    indices: list[int]
    logits: Tensor
    unimodal: dict[str, Tensor]
    present: dict[str, Tensor]
    weights: Tensor | None
    embedding: Tensor
    targets: Tensor | None
    modalities: tuple[str, ...]
    bad_rows: list[BadRow] = field(default_factory=list)
    subset_logits: dict[str, Tensor] = field(default_factory=dict)
    pooled: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.indices)


def subset_key(subset: Iterable[str]) -> str:
    """Name of a modality subset: sorted names joined by ``+``."""
    return "+".join(sorted(subset))


def encoded_batches(
    model: MultimodalModel,
    batches: Iterable[Batch],
    device: torch.device,
    precision: str,
    bad: list[BadRow],
    progress: bool = False,
    desc: str = "predicting",
) -> Iterator[tuple[Batch, Encoded]]:
    """Non-empty batches with their encoder outputs; bad rows are appended to ``bad``.

    The shared loop of `collect` and `polyfuse.evaluation.bank.encode_bank`; call it
    under ``torch.no_grad()``.
    """
    model.eval()
    for batch in bar(batches, enabled=progress, desc=desc, leave=False):
        bad += batch.bad_rows
        if batch.size == 0:
            continue
        on_device = batch.to(device)
        with autocast(device, precision):
            encoded = model.encode(on_device.inputs, on_device.size)
        yield batch, encoded


@torch.no_grad()
def collect(
    model: MultimodalModel,
    batches: Iterable[Batch],
    device: torch.device,
    precision: str = "fp32",
    progress: bool = False,
    desc: str = "predicting",
    subsets: Sequence[Collection[str]] = (),
    pooled: bool = False,
) -> Collected:
    """Run ``model`` in eval mode over ``batches``; outputs are sorted by row index.

    Args:
        subsets: modality subsets to also fuse for every batch, reusing the encoder
            outputs (only fusion and heads run again).
        pooled: also keep each modality's adapted encoder features (`Collected.pooled`).
    """
    parts: dict[str, list[Tensor]] = {"logits": [], "embedding": [], "weights": [], "targets": []}
    uni: dict[str, list[Tensor]] = {m: [] for m in model.modalities}
    pres: dict[str, list[Tensor]] = {m: [] for m in model.modalities}
    feats: dict[str, list[Tensor]] = {m: [] for m in model.modalities} if pooled else {}
    sub_parts: dict[str, list[Tensor]] = {subset_key(s): [] for s in subsets}
    indices: list[int] = []
    bad: list[BadRow] = []
    all_targets = True
    for batch, encoded in encoded_batches(model, batches, device, precision, bad, progress, desc):
        with autocast(device, precision):
            out = model.fuse(encoded)
            for subset in subsets:
                shown = {m: encoded.present[m] & (m in subset) for m in model.modalities}
                sub_parts[subset_key(subset)].append(
                    model.fuse(encoded, shown).logits.float().cpu()
                )
        indices += batch.indices
        parts["logits"].append(out.logits.float().cpu())
        parts["embedding"].append(out.embedding.float().cpu())
        if out.fusion.weights is not None:
            parts["weights"].append(out.fusion.weights.float().cpu())
        for m in model.modalities:
            uni[m].append(out.unimodal_logits[m].float().cpu())
            if pooled:
                feats[m].append(encoded.pooled[m].float().cpu())
            pres[m].append(out.present[m].cpu())
        if batch.targets is None:
            all_targets = False
        else:
            parts["targets"].append(batch.targets.cpu())
    if not indices:
        k = int(model.prior.numel())
        empty = torch.zeros(0, k)
        return Collected(
            [],
            empty,
            {m: empty for m in model.modalities},
            {m: torch.zeros(0, dtype=torch.bool) for m in model.modalities},
            None,
            torch.zeros(0, model.fusion.out_dim),
            None,
            model.modalities,
            bad,
        )
    order = torch.tensor(sorted(range(len(indices)), key=indices.__getitem__))

    def cat(xs: list[Tensor]) -> Tensor:
        return torch.cat(xs)[order]

    return Collected(
        indices=sorted(indices),
        logits=cat(parts["logits"]),
        unimodal={m: cat(v) for m, v in uni.items()},
        present={m: cat(v) for m, v in pres.items()},
        weights=cat(parts["weights"]) if parts["weights"] else None,
        embedding=cat(parts["embedding"]),
        targets=cat(parts["targets"]) if all_targets and parts["targets"] else None,
        modalities=model.modalities,
        bad_rows=sorted(bad, key=lambda b: b.index),
        subset_logits={k: cat(v) for k, v in sub_parts.items()},
        pooled={m: cat(v) for m, v in feats.items()},
    )
