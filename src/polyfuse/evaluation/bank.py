"""Encode a dataset once, then fuse it as often as an analysis needs.

`FeatureBank` keeps every sample's adapted encoder features (pooled vectors and,
for token fusions, the valid tokens). Missing-modality ablation, Shapley values,
permutation importance and corruption curves for one modality then run only the
fusion and heads again: the encoders, the expensive part, run once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from polyfuse.data.dataset import BadRow, Batch
from polyfuse.inference.collect import encoded_batches
from polyfuse.models.multimodal import Encoded, ModelOutput, MultimodalModel


@dataclass
class FeatureBank:
    """Adapted per-sample features of a dataset, in manifest row order.

    Attributes:
        indices: manifest row index of each sample.
        modalities: the model's modality order.
        pooled: name -> ``(N, D)`` (zeros where absent).
        present: name -> ``(N,)`` bool.
        tokens: name -> one ``(T_i, D)`` tensor per sample (token fusions only).
        targets: ``(N, ...)`` targets, or None when a row had none.
        bad_rows: rows that failed to load.
    """

    indices: list[int]
    modalities: tuple[str, ...]
    pooled: dict[str, Tensor]
    present: dict[str, Tensor]
    tokens: dict[str, list[Tensor]] = field(default_factory=dict)
    targets: Tensor | None = None
    bad_rows: list[BadRow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.indices)

    def replace(self, name: str, other: FeatureBank) -> FeatureBank:
        """This bank with modality ``name`` taken from ``other`` (e.g. a corrupted copy).

        Rows ``other`` lacks (they failed to load there) count as missing ``name``.
        """
        pos = {r: i for i, r in enumerate(other.indices)}
        found = torch.tensor([r in pos for r in self.indices], dtype=torch.bool)
        take = torch.tensor([pos.get(r, 0) for r in self.indices], dtype=torch.long)
        dim = self.pooled[name].shape[1]
        if len(other):
            pooled = other.pooled[name][take] * found[:, None]
            present = other.present[name][take] & found
        else:
            pooled = torch.zeros(len(self), dim)
            present = torch.zeros(len(self), dtype=torch.bool)
        tokens: dict[str, list[Tensor]] = {}
        if self.tokens:
            empty = torch.zeros(0, dim)
            theirs = other.tokens.get(name, [])
            tokens = {
                **self.tokens,
                name: [
                    theirs[int(t)] if bool(f) else empty for t, f in zip(take, found, strict=True)
                ],
            }
        return FeatureBank(
            self.indices,
            self.modalities,
            {**self.pooled, name: pooled},
            {**self.present, name: present},
            tokens,
            self.targets,
            self.bad_rows,
        )

    def chunks(
        self,
        batch_size: int = 256,
        permute: Mapping[str, Tensor] | None = None,
    ) -> Iterator[tuple[slice, Encoded]]:
        """`Encoded` batches in row order.

        Args:
            batch_size: rows per chunk.
            permute: name -> ``(N,)`` row permutation: sample ``i`` gets the features
                of sample ``permute[i]`` for that modality (permutation importance).
        """
        n = len(self)
        for start in range(0, n, batch_size):
            sl = slice(start, min(n, start + batch_size))
            yield sl, self.gather(torch.arange(sl.start, sl.stop), permute)

    def gather(self, rows: Tensor, permute: Mapping[str, Tensor] | None = None) -> Encoded:
        """`Encoded` batch of bank positions ``rows`` (padding tokens per batch)."""
        enc = Encoded({}, {}, {}, {})
        for m in self.modalities:
            src = permute[m][rows] if permute and m in permute else rows
            enc.pooled[m] = self.pooled[m][src]
            enc.present[m] = self.present[m][src]
            if self.tokens:
                toks = [self.tokens[m][i] for i in src.tolist()]
                longest = max(1, max((t.shape[0] for t in toks), default=1))
                dim = self.pooled[m].shape[1]
                padded = torch.zeros(len(toks), longest, dim)
                mask = torch.zeros(len(toks), longest, dtype=torch.bool)
                for j, t in enumerate(toks):
                    padded[j, : t.shape[0]] = t
                    mask[j, : t.shape[0]] = True
                enc.tokens[m], enc.masks[m] = padded, mask & enc.present[m][:, None]
        return enc


@torch.no_grad()
def encode_bank(
    model: MultimodalModel,
    batches: Iterable[Batch],
    device: torch.device,
    precision: str = "fp32",
    progress: bool = False,
    desc: str = "encoding",
) -> FeatureBank:
    """Run the encoders and adapters of ``model`` once over ``batches``."""
    pooled: dict[str, list[Tensor]] = {m: [] for m in model.modalities}
    present: dict[str, list[Tensor]] = {m: [] for m in model.modalities}
    tokens: dict[str, list[Tensor]] = {m: [] for m in model.modalities}
    targets: list[Tensor] = []
    indices: list[int] = []
    bad: list[BadRow] = []
    all_targets = True
    for batch, enc in encoded_batches(model, batches, device, precision, bad, progress, desc):
        indices += batch.indices
        for m in model.modalities:
            pooled[m].append(enc.pooled[m].float().cpu())
            present[m].append(enc.present[m].cpu())
            if model.fusion.uses_tokens:
                toks, mask = enc.tokens[m].float().cpu(), enc.masks[m].cpu()
                tokens[m] += [toks[i][mask[i]] for i in range(batch.size)]
        if batch.targets is None:
            all_targets = False
        else:
            targets.append(batch.targets.cpu())
    order = sorted(range(len(indices)), key=indices.__getitem__)
    take = torch.tensor(order, dtype=torch.long)
    dim = model.fusion.dim

    def cat(xs: list[Tensor], empty: Tensor) -> Tensor:
        return torch.cat(xs)[take] if xs else empty

    return FeatureBank(
        indices=sorted(indices),
        modalities=model.modalities,
        pooled={m: cat(v, torch.zeros(0, dim)) for m, v in pooled.items()},
        present={m: cat(v, torch.zeros(0, dtype=torch.bool)) for m, v in present.items()},
        tokens={m: [v[i] for i in order] for m, v in tokens.items()}
        if model.fusion.uses_tokens
        else {},
        targets=cat(targets, torch.zeros(0)) if all_targets and targets else None,
        bad_rows=sorted(bad, key=lambda b: b.index),
    )


@dataclass
class Fused:
    """Outputs of one fusion pass over a bank.

    Attributes:
        logits: ``(N, K)`` fused logits.
        unimodal: name -> ``(N, K)`` auxiliary-head logits.
        present: name -> ``(N,)`` what the fusion saw.
        weights: ``(N, M)`` the fusion's own modality weights, if it exposes them.
        embedding: ``(N, D)`` fused embeddings.
    """

    logits: Tensor
    unimodal: dict[str, Tensor]
    present: dict[str, Tensor]
    weights: Tensor | None
    embedding: Tensor


@torch.no_grad()
def fuse_bank(
    model: MultimodalModel,
    bank: FeatureBank,
    shown: Iterable[str] | None = None,
    permute: Mapping[str, Tensor] | None = None,
    batch_size: int = 256,
) -> Fused:
    """Fusion and heads over every sample of ``bank``.

    Args:
        shown: modalities the fusion may see (the rest count as missing); all by default.
        permute: see `FeatureBank.chunks`.
    """
    model.eval()
    device = model.prior.device
    keep = set(model.modalities if shown is None else shown)
    parts: dict[str, list[Tensor]] = {"logits": [], "embedding": [], "weights": []}
    uni: dict[str, list[Tensor]] = {m: [] for m in model.modalities}
    pres: dict[str, list[Tensor]] = {m: [] for m in model.modalities}
    for _, chunk in bank.chunks(batch_size, permute):
        enc = _to(chunk, device)
        mask = {m: enc.present[m] & (m in keep) for m in model.modalities}
        out: ModelOutput = model.fuse(enc, mask)
        parts["logits"].append(out.logits.float().cpu())
        parts["embedding"].append(out.embedding.float().cpu())
        if out.fusion.weights is not None:
            parts["weights"].append(out.fusion.weights.float().cpu())
        for m in model.modalities:
            uni[m].append(out.unimodal_logits[m].float().cpu())
            pres[m].append(out.present[m].cpu())
    k = int(model.prior.numel())

    def cat(xs: list[Tensor], width: int) -> Tensor:
        return torch.cat(xs) if xs else torch.zeros(0, width)

    return Fused(
        logits=cat(parts["logits"], k),
        unimodal={m: cat(v, k) for m, v in uni.items()},
        present={
            m: torch.cat(v) if v else torch.zeros(0, dtype=torch.bool) for m, v in pres.items()
        },
        weights=torch.cat(parts["weights"]) if parts["weights"] else None,
        embedding=cat(parts["embedding"], model.fusion.out_dim),
    )


def _to(enc: Encoded, device: torch.device) -> Encoded:
    if device.type == "cpu":
        return enc
    return Encoded(
        {m: t.to(device) for m, t in enc.pooled.items()},
        {m: t.to(device) for m, t in enc.present.items()},
        {m: t.to(device) for m, t in enc.tokens.items()},
        {m: t.to(device) for m, t in enc.masks.items()},
    )
