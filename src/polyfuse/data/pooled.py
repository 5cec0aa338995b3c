"""Pooled frozen-encoder features of a manifest, served from the disk feature cache."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polyfuse.core.errors import PolyfuseError
from polyfuse.core.progress import bar
from polyfuse.data.dataset import Example, MultimodalDataset
from polyfuse.data.features import attach_frozen_features
from polyfuse.data.manifest import Manifest, Row
from polyfuse.encoders.base import Encoder, lengths_to_mask


@torch.no_grad()
def pooled_features(
    encoders: Mapping[str, Encoder],
    manifest: Manifest,
    *,
    batch_size: int = 32,
    progress: bool = True,
) -> tuple[dict[str, Tensor], list[int]]:
    """Pooled features of every row that has all ``encoders``' modalities.

    Each distinct input is encoded once (content-hash cache; several captions of one
    image share its features) and later runs read the cache.

    Returns:
        modality -> ``(N, D)`` float32, and the manifest row index of each of the N rows.
    """
    contracts = {m: e.contract for m, e in encoders.items()}
    ds = MultimodalDataset(manifest, contracts, None, require_label=False)
    attach_frozen_features(encoders, [ds], batch_size=batch_size, progress=progress)
    out: dict[str, list[Tensor]] = {m: [] for m in encoders}
    rows: list[int] = []
    for i in bar(range(len(ds)), enabled=progress, desc="reading features", leave=False):
        ex = ds[i]
        if not isinstance(ex, Example) or set(ex.inputs) != set(encoders):
            continue  # a bad row, or a row without every modality
        rows.append(i)
        for m, enc in encoders.items():
            tokens = ex.inputs[m]
            if m not in ex.encoded:
                raise PolyfuseError(
                    f"encoder for '{m}' is not frozen: alignment needs cached features"
                )
            length = torch.tensor([tokens.shape[0]])
            mask = lengths_to_mask(length, 1, tokens.shape[0], tokens.device)
            out[m].append(enc.pool(tokens[None], mask)[0])
    if not rows:
        raise PolyfuseError(f"{manifest.path}: no row has all of {sorted(encoders)}")
    return {m: torch.stack(v) for m, v in out.items()}, rows


@dataclass
class PairFeatures:
    """Pooled features of paired rows grouped by the item they describe.

    Attributes:
        feats: modality -> ``(N, D)`` per row.
        group: ``(N,)`` group index of each row (e.g. which image a caption describes).
        first: ``(G,)`` one row per group, in group order (e.g. to embed each image once).
        rows: manifest row index of each of the N rows.
    """

    feats: dict[str, Tensor]
    group: Tensor
    first: Tensor
    rows: list[int]


def pair_features(
    encoders: Mapping[str, Encoder],
    manifest: Manifest,
    group_key: str,
    *,
    progress: bool = True,
) -> PairFeatures:
    """`pooled_features` plus a grouping of the rows.

    Args:
        group_key: a modality name (rows with the same value, e.g. the same image
            path, form a group) or a metadata column; rows without it are their own group.
    """
    feats, rows = pooled_features(encoders, manifest, progress=progress)
    group, first = group_rows([manifest.rows[i] for i in rows], group_key)
    return PairFeatures(feats, group, first, rows)


def group_rows(rows: Sequence[Row], group_key: str) -> tuple[Tensor, Tensor]:
    """Rows grouped by the item they describe.

    Args:
        rows: manifest rows.
        group_key: a modality name (rows with the same value, e.g. the same image path,
            form a group) or a metadata column; rows without it are their own group.

    Returns:
        ``(N,)`` group index of each row, and ``(G,)`` the first row of each group.
    """

    def key(row: Row) -> str:
        value = row.values.get(group_key, row.metadata.get(group_key, f"row {row.index}"))
        return json.dumps(value, sort_keys=True, default=str)

    keys = [key(r) for r in rows]
    order = {v: k for k, v in enumerate(dict.fromkeys(keys))}
    first: dict[str, int] = {}
    for j, v in enumerate(keys):
        first.setdefault(v, j)
    return torch.tensor([order[v] for v in keys]), torch.tensor([first[v] for v in order])


@torch.no_grad()
def encoded_tokens(
    encoder: Encoder, values: Sequence[Any], *, batch_size: int = 32, progress: bool = True
) -> list[Tensor]:
    """Frozen-encoder tokens ``(T_i, D)`` of raw values (image paths, caption strings ...),
    served from the feature cache (each distinct input is encoded once)."""
    import tempfile

    name = encoder.contract.name

    def field(v: Any) -> Any:
        return (
            str(Path(v).resolve()) if isinstance(v, Path) or encoder.contract.kind != "text" else v
        )

    with tempfile.TemporaryDirectory() as tmp:
        manifest_path = Path(tmp) / "items.jsonl"
        manifest_path.write_text(
            "".join(json.dumps({"id": str(i), name: field(v)}) + "\n" for i, v in enumerate(values))
        )
        ds = MultimodalDataset(
            Manifest.load(manifest_path, (name,)),
            {name: encoder.contract},
            None,
            require_label=False,
            on_bad_row="fail",
        )
        attach_frozen_features({name: encoder}, [ds], batch_size=batch_size, progress=progress)
        out = []
        for i in range(len(ds)):
            ex = ds[i]
            if not isinstance(ex, Example):  # pragma: no cover - "fail" raises first
                raise PolyfuseError(f"cannot read input {i}: {values[i]!r}")
            out.append(ex.inputs[name])
    return out


def image_tokens(
    encoder: Encoder, paths: list[str], *, batch_size: int = 32, progress: bool = True
) -> Tensor:
    """``(N, T, D)`` frozen-encoder tokens of fixed-size inputs (e.g. 7x7 image maps)."""
    return torch.stack(encoded_tokens(encoder, paths, batch_size=batch_size, progress=progress))


def pad_tokens(seqs: Sequence[Tensor], max_len: int | None = None) -> tuple[Tensor, Tensor]:
    """Variable-length ``(T_i, D)`` sequences -> padded ``(N, T, D)`` and mask ``(N, T)``
    (true for real tokens); sequences longer than ``max_len`` are cut."""
    longest = max(int(s.shape[0]) for s in seqs)
    t = min(longest, max_len) if max_len else longest
    out = torch.zeros(len(seqs), t, int(seqs[0].shape[1]), dtype=seqs[0].dtype)
    mask = torch.zeros(len(seqs), t, dtype=torch.bool)
    for i, s in enumerate(seqs):
        n = min(int(s.shape[0]), t)
        out[i, :n], mask[i, :n] = s[:n], True
    return out, mask
