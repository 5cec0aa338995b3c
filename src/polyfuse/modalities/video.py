"""Video modality: decoded and sampled by `polyfuse.modalities.readers.video`; each frame is
resized and normalised by the image contract's own code, giving ``(T, C, H, W)``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from polyfuse.core.errors import ConfigError
from polyfuse.modalities.base import ModalityBatch, ModalityContract, pad_stack
from polyfuse.modalities.image import ImageContract
from polyfuse.modalities.io import read_source
from polyfuse.modalities.readers.video import (
    SAMPLING_MODES,
    VIDEO_FORMATS,
    FrameSampling,
    VideoLimits,
    decode_video,
)

#: Container formats accepted (those of the one video decoder).
ALLOWED_FORMATS = VIDEO_FORMATS


@dataclass(frozen=True)
class VideoClip:
    """A loaded video: sampled frames and when they were shown.

    Attributes:
        frames: uint8 ``(T, H, W, channels)``.
        timestamps: float64 ``(T,)`` seconds from the start of the video.
    """

    frames: NDArray[np.uint8]
    timestamps: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.frames.shape[0])


@dataclass(frozen=True)
class VideoContract(ModalityContract):
    """Video inputs.

    Attributes:
        frames: frames per clip: exactly this many with ``uniform`` sampling (fewer only
            when the video has fewer), at most this many otherwise.
        sampling: ``uniform`` (the frames on screen at the centres of equal segments),
            ``fps`` (one frame every ``1 / fps`` s), ``keyframes`` (the codec's keyframes)
            or ``scenes`` (the frames that change most from the one before).
        fps: frame rate of ``fps`` sampling.
        scene_threshold: ``scenes``: smallest mean grey change (0..1) that counts.
        size: output ``(height, width)`` of each frame (the image contract's resizing).
        channels: 1 (grayscale) or 3 (RGB).
        mean: per-channel mean subtracted after scaling pixels to [0, 1].
        std: per-channel standard deviation divided after the mean.
        max_seconds: refuse longer videos.
        max_pixels: refuse larger frames (width x height).
        max_frames: refuse videos declaring (or holding) more frames.
        max_bytes: refuse larger files.
    """

    kind = "video"
    version = 1

    frames: int = 8
    sampling: str = "uniform"
    fps: float = 1.0
    scene_threshold: float = 0.1
    size: tuple[int, int] = (112, 112)
    channels: int = 3
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    max_seconds: float = 600.0
    max_pixels: int = 3840 * 2160
    max_frames: int = 100_000
    max_bytes: int = 500_000_000

    @cached_property
    def frame_contract(self) -> ImageContract:
        """The image contract each frame goes through (resize, channels, normalisation)."""
        return ImageContract(
            name=self.name,
            size=self.size,
            channels=self.channels,
            mean=self.mean,
            std=self.std,
            max_pixels=self.max_pixels,
            max_bytes=self.max_bytes,
        )

    def check(self) -> None:
        """Validate parameters (the frame parameters as the image contract does)."""
        where = f"modalities.{self.name}.contract"
        if self.frames < 1:
            raise ConfigError(f"{where}.frames", f"must be >= 1, got {self.frames}")
        if self.sampling not in SAMPLING_MODES:
            raise ConfigError(
                f"{where}.sampling",
                f"unknown sampling '{self.sampling}'",
                hint=f"one of {', '.join(SAMPLING_MODES)}",
            )
        if self.fps <= 0:
            raise ConfigError(f"{where}.fps", f"must be positive, got {self.fps}")
        if not 0.0 <= self.scene_threshold < 1.0:
            raise ConfigError(f"{where}.scene_threshold", "must be in [0, 1)")
        if min(self.max_seconds, self.max_pixels, self.max_frames, self.max_bytes) <= 0:
            raise ConfigError(f"{where}.max_seconds", "the limits must be positive")
        self.frame_contract.check()

    @property
    def sampling_spec(self) -> FrameSampling:
        """The reader's sampling parameters."""
        return FrameSampling(
            mode=self.sampling,
            frames=self.frames,
            fps=self.fps,
            scene_threshold=self.scene_threshold,
        )

    @property
    def limits(self) -> VideoLimits:
        """The reader's limits."""
        return VideoLimits(self.max_seconds, self.max_pixels, self.max_frames)

    def load(
        self, value: Any, *, field: str | None = None, base_dir: Path | None = None
    ) -> VideoClip:
        """Decode, sample and validate a video.

        Accepts a path, raw bytes, a `VideoClip`, or a uint8 (or float in [0, 1]) array of
        frames ``(T, H, W)`` / ``(T, H, W, C)`` (taken one second apart unless a clip).
        Returns the sampled frames as uint8 ``(T, H, W, channels)`` with their timestamps.
        """
        if isinstance(value, VideoClip | np.ndarray):
            clip = value if isinstance(value, VideoClip) else self._from_array(value, field)
            return self._to_channels(clip.frames, clip.timestamps, field)
        src = read_source(
            value, modality=self.name, field=field, base_dir=base_dir, max_bytes=self.max_bytes
        )
        decoded = decode_video(
            src.data,
            sampling=self.sampling_spec,
            limits=self.limits,
            name=self.name,
            field=field,
            path=src.path,
        )
        return self._to_channels(decoded.frames, decoded.timestamps, field)

    def _from_array(self, arr: np.ndarray, field: str | None) -> VideoClip:
        if arr.ndim not in (3, 4) or arr.shape[0] == 0:
            raise self.error(
                f"frames must be a non-empty (T, H, W[, C]) array, got shape {arr.shape}",
                field=field,
            )
        return VideoClip(arr, np.arange(arr.shape[0], dtype=np.float64))

    def _to_channels(
        self, frames: np.ndarray, timestamps: np.ndarray, field: str | None
    ) -> VideoClip:
        """Each frame through the image contract's validation and channel conversion."""
        if frames.shape[0] > self.max_frames:
            raise self.error(f"{frames.shape[0]} frames exceed max_frames", field=field)
        loaded = [self.frame_contract.load(frame, field=field) for frame in frames]
        return VideoClip(np.stack(loaded), np.asarray(timestamps, dtype=np.float64))

    def preprocess(self, obj: VideoClip) -> Tensor:
        """Resize and normalise every frame: float ``(T, C, H, W)``."""
        return torch.stack([self.frame_contract.preprocess(f) for f in obj.frames])

    def padded_length(self, x: Tensor) -> int:
        """Number of frames."""
        return int(x.shape[0])

    def noise(self, like: Tensor, rng: np.random.Generator) -> Tensor:
        """As many frames of image noise (one noise image repeated) as ``like`` has."""
        frame = self.frame_contract.noise(like[0], rng)
        return frame.unsqueeze(0).expand(like.shape[0], -1, -1, -1).clone()

    def sample_view(self, batch: ModalityBatch, row: int) -> Tensor:
        """Row ``row`` cut to its frame count."""
        data = batch.data[row]
        return data if batch.lengths is None else data[: int(batch.lengths[row])]

    def collate(self, items: Sequence[Tensor], present: Tensor) -> ModalityBatch:
        """Pad clips along time: ``(P, T_max, C, H, W)`` with frame counts in ``lengths``
        (frames past a clip's length are zeros and masked)."""
        data, lengths = pad_stack(items, dim=0)
        return ModalityBatch(data=data, present=present, lengths=lengths)
