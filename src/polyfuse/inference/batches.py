"""Assembling model batches from modality contracts: the one place that turns samples into
the ``name -> ModalityBatch`` mapping `MultimodalModel.encode` takes.

Training-free callers (evaluation, retrieval embedding, prediction of loose samples) build
batches here instead of calling ``contract.collate`` with a hand-made presence mask.
The data loaders' `polyfuse.data.dataset.Collator` does the same job one layer lower (it
also batches cached encoder features) and stays there, since `data` may not import
`inference`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from polyfuse.modalities.base import ModalityBatch, ModalityContract


def collate_all(contract: ModalityContract, items: Sequence[Tensor]) -> ModalityBatch:
    """Collate preprocessed tensors of one modality, every sample present.

    Args:
        contract: the modality's contract (its ``collate`` pads).
        items: preprocessed tensors, one per sample.
    """
    return contract.collate(items, torch.ones(len(items), dtype=torch.bool))


def load_batch(
    contract: ModalityContract, values: Sequence[Any], field: str | None = None
) -> ModalityBatch:
    """Load, preprocess and collate raw values (paths, bytes, strings ...) of one modality.

    Args:
        contract: the modality's contract.
        values: raw inputs, one per sample.
        field: name reported in load errors (default: the contract's name).
    """
    name = contract.name if field is None else field
    return collate_all(
        contract, [contract.preprocess(contract.load(v, field=name)) for v in values]
    )


def assemble(
    contracts: Mapping[str, ModalityContract], samples: Sequence[Mapping[str, Tensor]]
) -> dict[str, ModalityBatch]:
    """Model inputs of a batch of samples, any of which may lack any modality.

    Args:
        contracts: modality name -> contract.
        samples: one ``name -> preprocessed tensor`` mapping per sample; a missing name
            is a missing modality of that sample.

    Returns:
        name -> collated batch of the present samples with its ``(B,)`` presence mask;
        a modality no sample has is left out (absent for every sample).
    """
    out: dict[str, ModalityBatch] = {}
    for name, contract in contracts.items():
        present = torch.tensor([name in s for s in samples], dtype=torch.bool)  # (B,)
        if bool(present.any()):
            out[name] = contract.collate([s[name] for s in samples if name in s], present)
    return out
