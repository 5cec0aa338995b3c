"""Image modality: decoded by `polyfuse.modalities.readers.image`, resized and normalised to
``(C, H, W)``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polyfuse.core.errors import ConfigError, DependencyError
from polyfuse.modalities.base import ModalityBatch, ModalityContract
from polyfuse.modalities.io import read_source
from polyfuse.modalities.readers.image import (
    IMAGE_FORMATS,
    decode_image,
    pixels_from_array,
    pixels_from_pil,
)

#: Encoded formats accepted (those of the one image decoder).
ALLOWED_FORMATS = IMAGE_FORMATS


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

        Accepts a path, raw bytes, a PIL image, or a uint8 (or float in [0, 1]) array
        ``(H, W)`` / ``(H, W, C)``. Files are decoded upright (EXIF orientation) with
        transparency composited on white, exactly as the firewall sees them. Returns a
        uint8 array ``(H, W, channels)``.
        """
        if isinstance(value, np.ndarray):
            rgb = pixels_from_array(
                self._as_uint8(value, field),
                max_pixels=self.max_pixels,
                name=self.name,
                field=field,
            )
            return self._to_channels(rgb)
        if isinstance(value, _pil().Image):
            rgb = pixels_from_pil(value, max_pixels=self.max_pixels, name=self.name, field=field)
            return self._to_channels(rgb)
        src = read_source(
            value, modality=self.name, field=field, base_dir=base_dir, max_bytes=self.max_bytes
        )
        decoded = decode_image(
            src.data, max_pixels=self.max_pixels, name=self.name, field=field, path=src.path
        )
        return self._to_channels(decoded.pixels)

    def _as_uint8(self, arr: np.ndarray, field: str | None) -> np.ndarray:
        """Float pixels in [0, 1] scaled to uint8; uint8 passes through."""
        if arr.dtype == np.uint8:
            return arr
        if not np.issubdtype(arr.dtype, np.floating) or not np.isfinite(arr).all():
            raise self.error(
                f"array must be uint8 or finite float in [0, 1], got {arr.dtype}", field=field
            )
        scaled: np.ndarray = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return scaled

    def _to_channels(self, rgb: np.ndarray) -> np.ndarray:
        """``(H, W, channels)`` from the decoders' RGB: grey is Pillow's ITU-R 601 luma."""
        if self.channels == 3:
            return rgb
        grey = np.asarray(_pil().fromarray(rgb).convert("L"), dtype=np.uint8)
        return grey[:, :, None]

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

    def substitute(self, obj: np.ndarray, like: Tensor, rng: np.random.Generator) -> Tensor:
        """The image preprocessed (every image is resized to `size`)."""
        return self.preprocess(obj)

    def collate(self, items: Sequence[Tensor], present: Tensor) -> ModalityBatch:
        """Stack fixed-size images: ``(P, C, H, W)``."""
        return ModalityBatch(data=torch.stack(list(items)), present=present)
