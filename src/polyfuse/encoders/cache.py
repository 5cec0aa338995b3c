"""On-disk cache of frozen-encoder outputs, keyed by input content hash + encoder fingerprint.

A frozen encoder computes the same tokens for the same input bytes, so after
the first epoch (or the first evaluation) its outputs are read back instead of
recomputed. Entries are float16 ``.npy`` files written atomically; a changed
input file, contract or encoder version gives a different key, never a stale hit.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from polyfuse.core.weights import cache_root


def default_cache_dir() -> Path:
    """``$POLYFUSE_CACHE``, else ``$XDG_CACHE_HOME/polyfuse``, else ``~/.cache/polyfuse``."""
    return cache_root()


def content_hash(data: bytes | str) -> str:
    """sha256 of raw input content (file bytes, or text encoded as UTF-8)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


class FeatureCache:
    """Token features of one encoder, stored under ``root/<encoder fingerprint>/``.

    Args:
        root: cache folder.
        fingerprint: `Encoder.fingerprint` of the encoder whose outputs are stored.
    """

    def __init__(self, root: Path, fingerprint: str) -> None:
        self.dir = Path(root) / "features" / fingerprint
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npy"

    def __contains__(self, key: str) -> bool:
        return self._path(key).exists()

    def get(self, key: str) -> Tensor | None:
        """Tokens ``(T, D)`` float32 for ``key``, or None."""
        try:
            arr = np.load(self._path(key), allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError):
            self.misses += 1
            return None
        self.hits += 1
        return torch.from_numpy(arr.astype(np.float32))

    def put(self, key: str, tokens: Tensor) -> None:
        """Store tokens ``(T, D)`` (as float16) atomically."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        arr = tokens.detach().to("cpu", torch.float16).numpy()
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, arr, allow_pickle=False)
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
