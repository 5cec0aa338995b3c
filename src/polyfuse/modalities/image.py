"""Image modality: PNG/JPEG/WebP/BMP/TIFF via Pillow, resized and normalised to ``(C, H, W)``."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polyfuse.core.errors import ConfigError, DependencyError
from polyfuse.modalities.base import ModalityBatch, ModalityContract
from polyfuse.modalities.io import describe, read_source

ALLOWED_FORMATS = frozenset({"png", "jpeg", "webp", "bmp", "tiff"})


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyError("pillow", "the image modality", "image") from exc
    return Image


@dataclass(frozen=True)
class ImageContract(ModalityContract):
    """Image inputs.

    Attributes:
        size: output ``(height, width)`` after resizing.
        channels: 1 (grayscale) or 3 (RGB).
        mean: per-channel mean subtracted after scaling pixels to [0, 1].
        std: per-channel standard deviation divided after the mean.
        max_pixels: refuse images with more pixels than this (decompression bombs).
        max_bytes: refuse files larger than this.
    """

    kind = "image"
    version = 1

    size: tuple[int, int] = (224, 224)
    channels: int = 3
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    max_pixels: int = 40_000_000
    max_bytes: int = 50_000_000

    def check(self) -> None:
        """Validate parameters."""
        where = f"modalities.{self.name}.contract"
        if self.channels not in (1, 3):
            raise ConfigError(f"{where}.channels", f"must be 1 or 3, got {self.channels}")
        if len(self.size) != 2 or min(self.size) < 1:
            raise ConfigError(f"{where}.size", f"must be [height, width], got {self.size}")
        for key in ("mean", "std"):
            vals = getattr(self, key)
            if len(vals) not in (1, self.channels):
                raise ConfigError(f"{where}.{key}", f"needs 1 or {self.channels} values")
        if min(self.std) <= 0:
            raise ConfigError(f"{where}.std", "values must be positive")

    def load(
        self, value: Any, *, field: str | None = None, base_dir: Path | None = None
    ) -> np.ndarray:
        """Decode and validate an image.

        Accepts a path, raw bytes, a PIL image, or a uint8 array ``(H, W)`` /
        ``(H, W, C)``. Returns a uint8 array ``(H, W, channels)``.
        """
        if isinstance(value, np.ndarray):
            return self._from_array(value, field)
        pil = _pil()
        if isinstance(value, pil.Image):
            self._check_pixels(value.width, value.height, field, None)
            return self._to_array(value)
        src = read_source(
            value, modality=self.name, field=field, base_dir=base_dir, max_bytes=self.max_bytes
        )
        kind = src.kind
        if kind not in ALLOWED_FORMATS:
            raise self.error(
                f"content is {describe(kind)}, not a supported image "
                f"({', '.join(sorted(ALLOWED_FORMATS))})",
                field=field,
                path=src.path,
            )
        with warnings.catch_warnings():
            warnings.simplefilter("error", pil.DecompressionBombWarning)
            try:
                with pil.open(io.BytesIO(src.data)) as img:
                    self._check_pixels(img.width, img.height, field, src.path)
                    img.load()
                    return self._to_array(img)
            except (
                OSError,
                SyntaxError,
                ValueError,
                pil.DecompressionBombWarning,
                pil.DecompressionBombError,
            ) as exc:
                raise self.error(
                    f"cannot decode {kind.upper()}: {exc}", field=field, path=src.path
                ) from exc

    def _check_pixels(self, width: int, height: int, field: str | None, path: Path | None) -> None:
        if width * height > self.max_pixels:
            raise self.error(
                f"{width}x{height} = {width * height} pixels exceeds max_pixels={self.max_pixels} "
                "(possible decompression bomb)",
                field=field,
                path=path,
            )
        if width < 1 or height < 1:
            raise self.error(f"image has no pixels ({width}x{height})", field=field, path=path)

    def _to_array(self, img: Any) -> np.ndarray:
        mode = "RGB" if self.channels == 3 else "L"
        arr = np.asarray(img.convert(mode), dtype=np.uint8)
        return arr[:, :, None] if arr.ndim == 2 else arr

    def _from_array(self, arr: np.ndarray, field: str | None) -> np.ndarray:
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
            raise self.error(
                f"array must be (H, W) or (H, W, C), got shape {arr.shape}", field=field
            )
        self._check_pixels(arr.shape[1], arr.shape[0], field, None)
        if arr.dtype != np.uint8:
            if not np.issubdtype(arr.dtype, np.floating) or not np.isfinite(arr).all():
                raise self.error(
                    f"array must be uint8 or finite float in [0, 1], got {arr.dtype}", field=field
                )
            arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        arr = arr[:, :, :3]
        if arr.shape[2] == self.channels:
            return arr
        if self.channels == 1:  # ITU-R 601 luma, as Pillow's "L"
            luma = arr[:, :, 0] * 0.299 + arr[:, :, 1] * 0.587 + arr[:, :, 2] * 0.114
            return (luma + 0.5).astype(np.uint8)[:, :, None]
        return np.repeat(arr, 3, axis=2)

    def preprocess(self, obj: np.ndarray) -> Tensor:
        """Resize to `size` and normalise: returns float ``(C, H, W)``."""
        height, width = self.size
        if obj.shape[:2] != (height, width):
            pil = _pil()
            img = pil.fromarray(obj[:, :, 0] if self.channels == 1 else obj)
            obj = np.asarray(img.resize((width, height), pil.Resampling.BILINEAR))
            obj = obj[:, :, None] if obj.ndim == 2 else obj
        x = torch.from_numpy(np.array(obj, copy=True)).permute(2, 0, 1).float().div_(255.0)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        return (x - mean) / std  # (C, H, W)

    def noise(self, like: Tensor, rng: np.random.Generator) -> Tensor:
        """Uniform, Gaussian or flat-grey noise image at a random level, preprocessed."""
        height, width = self.size
        shape = (height, width, self.channels)
        kind = int(rng.integers(3))
        level = rng.uniform(0, 255)
        if kind == 0:
            raw = rng.uniform(0, 255, shape)
        elif kind == 1:
            raw = rng.normal(level, rng.uniform(10, 80), shape)
        else:
            raw = np.full(shape, level) + rng.normal(0, 3, shape)
        return self.preprocess(np.clip(raw, 0, 255).astype(np.uint8))

    def collate(self, items: Sequence[Tensor], present: Tensor) -> ModalityBatch:
        """Stack fixed-size images: ``(P, C, H, W)``."""
        return ModalityBatch(data=torch.stack(list(items)), present=present)
