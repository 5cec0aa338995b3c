"""Batches between stages: ``column -> (B,)`` numpy arrays, tensors carried as ``.npy`` bytes.

Ray Data hands stages batches in its ``numpy`` format; the in-process runner builds the same
shape. Per-row tensors of different shapes (token ids, waveforms, encoder tokens) travel as
one ``bytes`` value each (``None`` where a row has none), which every Arrow block holds.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

#: A batch: column name -> ``(B,)`` array (object arrays for bytes, strings, raw values).
Columns = dict[str, np.ndarray]

#: Columns every stage passes on: manifest row index, row id, part number, error text.
ROW, ID, PART, ERROR = "row", "id", "part", "error"


def raw(modality: str) -> str:
    """Column of a modality's raw manifest value (path, text, bytes)."""
    return f"raw:{modality}"


def pre(modality: str) -> str:
    """Column of a modality's preprocessed tensor."""
    return f"pre:{modality}"


def pooled(modality: str) -> str:
    """Column of a modality's pooled feature after its adapter (the shared space)."""
    return f"pooled:{modality}"


def tokens(modality: str) -> str:
    """Column of a modality's adapted tokens ``(T, D)`` (fusions that read tokens)."""
    return f"tokens:{modality}"


def mask(modality: str) -> str:
    """Column of a modality's valid-token mask ``(T,)``."""
    return f"mask:{modality}"


def pack(x: Tensor) -> bytes:
    """A tensor as ``.npy`` bytes (no pickle)."""
    buf = io.BytesIO()
    np.save(buf, x.detach().cpu().numpy(), allow_pickle=False)
    return buf.getvalue()


def unpack(data: bytes) -> Tensor:
    """The tensor `pack` wrote."""
    return torch.from_numpy(np.load(io.BytesIO(data), allow_pickle=False))


def objects(values: Sequence[Any]) -> np.ndarray:
    """A ``(B,)`` object array (never a 2-D array of nested sequences)."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def make(columns: Mapping[str, Sequence[Any]]) -> Columns:
    """A batch from per-column lists of equal length."""
    return {name: objects(values) for name, values in columns.items()}


def size(batch: Columns) -> int:
    """Number of rows of a batch."""
    return len(batch[ROW])


def values(batch: Columns, name: str) -> list[Any]:
    """A column as a list; ``None`` for every row when the batch lacks it."""
    if name not in batch:
        return [None] * size(batch)
    return [None if _missing(v) else v for v in batch[name].tolist()]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))
