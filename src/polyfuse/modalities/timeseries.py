"""Time-series modality: ``.npy`` or ``.csv`` arrays of shape ``(T, C)``."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from torch import Tensor

from polyfuse.core.errors import ConfigError
from polyfuse.modalities.base import ModalityBatch, ModalityContract, pad_stack, window
from polyfuse.modalities.io import describe, read_source

NORMALIZATIONS = ("global", "instance", "none")


@dataclass(frozen=True)
class TimeSeriesContract(ModalityContract):
    """Multichannel time series.

    Attributes:
        channels: number of channels ``C``; ``None`` until fitted on training data.
        normalize: ``"global"`` z-scores each channel with statistics fitted on
            the training set (saved in the contract), ``"instance"`` z-scores each
            series on its own, ``"none"`` leaves values alone.
        mean: fitted per-channel means (``global``).
        std: fitted per-channel standard deviations (``global``).
        nan_policy: ``"error"`` refuses NaN/inf, ``"zero"`` replaces them with 0
            after normalisation.
        max_length: refuse series longer than this many steps.
        max_bytes: refuse larger files.
    """

    kind = "timeseries"
    version = 1

    channels: int | None = None
    normalize: str = "global"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    nan_policy: str = "error"
    max_length: int = 100_000
    max_bytes: int = 200_000_000

    def check(self) -> None:
        """Validate parameters."""
        where = f"modalities.{self.name}.contract"
        if self.normalize not in NORMALIZATIONS:
            raise ConfigError(f"{where}.normalize", f"must be one of {', '.join(NORMALIZATIONS)}")
        if self.nan_policy not in ("error", "zero"):
            raise ConfigError(f"{where}.nan_policy", "must be 'error' or 'zero'")
        if self.mean is not None and self.channels is not None and len(self.mean) != self.channels:
            raise ConfigError(f"{where}.mean", f"needs {self.channels} values")

    @property
    def needs_fit(self) -> bool:
        """Channel count or global statistics still unknown."""
        return self.channels is None or (self.normalize == "global" and self.mean is None)

    def fit(self, objs: Sequence[np.ndarray]) -> Self:
        """Fit channel count and per-channel mean/std on training series."""
        if not objs:
            return self
        stacked = np.concatenate([o for o in objs], axis=0).astype(np.float64)
        finite = np.where(np.isfinite(stacked), stacked, np.nan)
        mean = np.nan_to_num(np.nanmean(finite, axis=0))
        std = np.nan_to_num(np.nanstd(finite, axis=0), nan=1.0)
        std = np.where(std < 1e-8, 1.0, std)
        return replace(
            self,
            channels=int(stacked.shape[1]),
            mean=tuple(float(v) for v in mean),
            std=tuple(float(v) for v in std),
        )

    def load(
        self, value: Any, *, field: str | None = None, base_dir: Path | None = None
    ) -> np.ndarray:
        """Read a ``.npy``/``.csv`` file, raw bytes or an array; returns float32 ``(T, C)``."""
        path = None
        if not isinstance(value, np.ndarray):
            src = read_source(
                value, modality=self.name, field=field, base_dir=base_dir, max_bytes=self.max_bytes
            )
            path = src.path
            value = self._parse(src.data, src.kind, field, path)
        return self._validate(np.asarray(value), field, path)

    def _parse(
        self, data: bytes, kind: str | None, field: str | None, path: Path | None
    ) -> np.ndarray:
        try:
            if kind == "npy":
                return np.asarray(np.load(io.BytesIO(data), allow_pickle=False))
            if kind == "text":
                return _read_csv(data.decode("utf-8"))
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            raise self.error(f"cannot parse {kind} series: {exc}", field=field, path=path) from exc
        raise self.error(
            f"content is {describe(kind)}, not a .npy array or CSV text", field=field, path=path
        )

    def _validate(self, arr: np.ndarray, field: str | None, path: Path | None) -> np.ndarray:
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[0] < 1:
            raise self.error(
                f"series must have shape (T, C), got {arr.shape}", field=field, path=path
            )
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise self.error(
                f"series must be real numbers, got dtype {arr.dtype}", field=field, path=path
            )
        if self.channels is not None and arr.shape[1] != self.channels:
            raise self.error(
                f"series has {arr.shape[1]} channels, the contract expects {self.channels}",
                field=field,
                path=path,
                hint="series must be (T, C): time along rows, channels along columns",
            )
        if arr.shape[0] > self.max_length:
            raise self.error(
                f"{arr.shape[0]} steps exceeds max_length={self.max_length}", field=field, path=path
            )
        arr = arr.astype(np.float32)
        if self.nan_policy == "error" and not np.isfinite(arr).all():
            raise self.error(
                "series contains NaN or infinite values",
                field=field,
                path=path,
                hint="clean the data or set nan_policy: zero",
            )
        return arr

    def preprocess(self, obj: np.ndarray) -> Tensor:
        """Normalised float ``(T, C)``."""
        x = torch.from_numpy(np.ascontiguousarray(obj))
        if self.normalize == "global" and self.mean is not None and self.std is not None:
            x = (x - torch.tensor(self.mean)) / torch.tensor(self.std)
        elif self.normalize == "instance":
            finite = torch.where(torch.isfinite(x), x, torch.zeros_like(x))
            x = (x - finite.mean(0)) / finite.std(0, unbiased=False).clamp_min(1e-6)
        return torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0).float()

    def padded_length(self, x: Tensor) -> int:
        """Number of steps."""
        return int(x.shape[0])

    def noise(self, like: Tensor, rng: np.random.Generator) -> Tensor:
        """Gaussian noise (white or random-walk) with as many steps and channels as ``like``."""
        steps, channels = int(like.shape[0]), int(like.shape[1])
        raw = rng.standard_normal((steps, channels))
        if rng.random() < 0.5:
            raw = np.cumsum(raw, axis=0) / np.sqrt(np.arange(1, steps + 1))[:, None]
        mean = np.asarray(self.mean) if self.mean is not None else 0.0
        std = np.asarray(self.std) if self.std is not None else 1.0
        return self.preprocess((raw * std + mean).astype(np.float32))

    def substitute(self, obj: np.ndarray, like: Tensor, rng: np.random.Generator) -> Tensor:
        """A random window of the series (repeated when too short) with as many steps as
        ``like``, preprocessed."""
        return self.preprocess(window(np.asarray(obj, dtype=np.float32), int(like.shape[0]), rng))

    def sample_view(self, batch: ModalityBatch, row: int) -> Tensor:
        """Row ``row`` cut to its step length."""
        data = batch.data[row]
        return data if batch.lengths is None else data[: int(batch.lengths[row])]

    def collate(self, items: Sequence[Tensor], present: Tensor) -> ModalityBatch:
        """Pad along time: ``(P, T_max, C)`` with step lengths."""
        data, lengths = pad_stack(items, dim=0)
        return ModalityBatch(data=data, present=present, lengths=lengths)


def _read_csv(text: str) -> np.ndarray:
    """Comma/semicolon/tab separated numbers; one optional header row."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ValueError("no rows")
    sep = max((",", ";", "\t"), key=lines[0].count)
    rows = [ln.split(sep) if lines[0].count(sep) else ln.split() for ln in lines]
    try:
        [float(v) for v in rows[0]]
    except ValueError:
        rows = rows[1:]  # header
    width = len(rows[0]) if rows else 0
    if not rows or any(len(r) != width for r in rows):
        raise ValueError("rows have different numbers of columns")
    return np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
