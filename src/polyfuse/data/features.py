"""Frozen-encoder features for a dataset, computed once and read from the disk cache after.

`FrozenFeatures.prepare` hashes every row's input, encodes the rows the cache
lacks in batches (with a progress bar) and stores their tokens; from then on
the dataset yields cached tokens and the encoder never runs on those inputs again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from polyfuse.core.errors import PolyfuseError
from polyfuse.core.progress import bar
from polyfuse.data.dataset import FeatureSource, MultimodalDataset
from polyfuse.encoders.base import Encoder
from polyfuse.encoders.cache import FeatureCache, content_hash, default_cache_dir
from polyfuse.modalities.base import AbsentInputError
from polyfuse.modalities.io import read_source

log = logging.getLogger("polyfuse.data")


class FrozenFeatures(FeatureSource):
    """Cached tokens of one frozen encoder for the rows of one or more datasets.

    Args:
        modality: the modality name.
        encoder: the frozen encoder.
        cache: its on-disk cache.
        device: where to run the encoder for cache misses.
    """

    def __init__(
        self,
        modality: str,
        encoder: Encoder,
        cache: FeatureCache,
        device: torch.device | str = "cpu",
    ) -> None:
        self.modality = modality
        self.encoder = encoder
        self.cache = cache
        self.device = torch.device(device)
        self._fingerprint = encoder.fingerprint()
        self._keys: dict[tuple[int, int], str] = {}
        self.encoded_items = 0
        self.found = 0  # inputs `prepare` found already cached

    def key(self, dataset: MultimodalDataset, index: int) -> str:
        """Cache key of one row: content hash of the raw input + encoder fingerprint."""
        memo = (id(dataset), index)
        if memo not in self._keys:
            value = dataset.rows[index].values[self.modality]
            contract = dataset.contracts[self.modality]
            if contract.file_based and isinstance(value, str | bytes | os.PathLike):
                raw: bytes | str = read_source(
                    value,
                    modality=self.modality,
                    field=self.modality,
                    base_dir=dataset.manifest.base_dir,
                    max_bytes=getattr(contract, "max_bytes", 2**31),
                ).data
            elif isinstance(value, str | bytes):
                raw = value
            else:  # an in-memory array or image: hash its bytes, shape and dtype
                arr = np.ascontiguousarray(np.asarray(value))
                raw = f"{arr.dtype}{arr.shape}".encode() + arr.tobytes()
            self._keys[memo] = content_hash(self._fingerprint.encode() + content_hash(raw).encode())
        return self._keys[memo]

    def tokens(self, dataset: MultimodalDataset, index: int) -> Tensor:
        """Cached tokens ``(T, D)``; encodes (and caches) on a miss."""
        key = self.key(dataset, index)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        x = dataset.preprocessed(index, self.modality)
        self._encode_batch([key], [x])
        out = self.cache.get(key)
        if out is None:  # pragma: no cover - the cache folder is not writable
            raise PolyfuseError(f"feature cache at {self.cache.dir} is not readable after writing")
        return out

    def prepare(
        self, dataset: MultimodalDataset, batch_size: int = 32, progress: bool = True
    ) -> int:
        """Encode every row the cache lacks; failures become the dataset's bad rows.

        Returns:
            the number of inputs encoded (0 when everything was cached).
        """
        dataset.features.pop(self.modality, None)
        missing: list[tuple[int, str]] = []
        rows = [i for i, r in enumerate(dataset.rows) if self.modality in r.values]
        for i in bar(rows, enabled=progress, desc=f"hashing {self.modality}", leave=False):
            try:
                key = self.key(dataset, i)
            except PolyfuseError as err:
                dataset.mark_bad(i, err)
                continue
            if key not in self.cache:
                missing.append((i, key))
            else:
                self.found += 1
        pbar = bar(
            total=len(missing),
            enabled=progress,
            desc=f"encoding {self.modality} ({type(self.encoder).__name__}, cached from now on)",
        )
        for chunk in _chunks(missing, batch_size):
            keys, xs = [], []
            for i, key in chunk:
                try:
                    xs.append(
                        dataset.contracts[self.modality].preprocess(dataset.load(i, self.modality))
                    )
                    keys.append(key)
                except AbsentInputError:  # the row lacks this modality (a video without audio)
                    continue
                except PolyfuseError as err:
                    dataset.mark_bad(i, err)
            if xs:
                self._encode_batch(keys, xs)
            pbar.update(len(chunk))
        pbar.close()
        dataset.features[self.modality] = self
        return len(missing)

    @torch.no_grad()
    def _encode_batch(self, keys: list[str], xs: list[Tensor]) -> None:
        contract = self.encoder.contract
        mb = contract.collate(xs, torch.ones(len(xs), dtype=torch.bool)).to(self.device)
        out = self.encoder(mb.data, mb.lengths)
        for j, key in enumerate(keys):
            self.cache.put(key, out.tokens[j][out.mask[j]])  # valid tokens only: (T_j, D)
        self.encoded_items += len(keys)


def _chunks(items: list[tuple[int, str]], size: int) -> Iterable[list[tuple[int, str]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def attach_frozen_features(
    encoders: Mapping[str, Encoder],
    datasets: Iterable[MultimodalDataset],
    *,
    cache_dir: Path | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    progress: bool = True,
) -> dict[str, int]:
    """Serve every frozen encoder's outputs to ``datasets`` from the disk cache.

    Inputs the cache lacks are encoded once (in batches) and stored.

    Returns:
        modality -> number of inputs that had to be encoded.
    """
    root = cache_dir or default_cache_dir()
    datasets = list(datasets)
    encoded: dict[str, int] = {}
    for m, encoder in encoders.items():
        if not encoder.cacheable:
            continue
        source = FrozenFeatures(m, encoder, FeatureCache(root, encoder.fingerprint()), device)
        encoded[m] = sum(
            source.prepare(ds, batch_size, progress)
            for ds in datasets
            if m in ds.contracts and m not in ds.transforms
        )
        log.info(
            "%s: %d inputs encoded by frozen %s, %d read from the cache at %s",
            m,
            encoded[m],
            type(encoder).__name__,
            source.found,
            source.cache.dir,
        )
    return encoded
