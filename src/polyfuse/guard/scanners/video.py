"""Scan a video: what its frames show and what its soundtrack says, under one policy.

Frames are sampled at ``fps`` (1 per second by default, at most ``max_frames``, through
the one video reader, `polyfuse.modalities.readers.video`); a frame that looks like the
last one scanned (mean absolute grey difference under ``same_frame``) is not scanned
again: the findings of the frame it repeats cover it. Each scanned frame goes through the
image scanner (OCR text, hidden text, faces), and each finding is reported with its frame's
time range (from the frame until the next sampled frame) and its box. The soundtrack (16
kHz mono) goes through the audio scanner (Whisper transcript, PII, prompt injection); its
findings keep their time ranges. A video without an audio stream has no speech findings;
that is not an error.

Every finding is ``modality="video"``; ``location.source`` says where it came from:
``frame:<source>`` (``frame:ocr``, ``frame:ocr:hidden``, ``frame:face`` ...) or
``soundtrack:<source>`` (``soundtrack:asr``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from polyfuse.core.errors import ConfigError
from polyfuse.guard.findings import Finding

#: Sample rate the soundtrack is decoded at for the audio scanner (Whisper's).
SOUNDTRACK_RATE = 16_000


class VideoScanner:
    """Scans a video's sampled frames and its soundtrack.

    Args:
        image_scanner: scans one frame (``scan(rgb) -> findings``), e.g. `ImageScanner`.
        audio_scanner: scans the soundtrack (``scan((samples, rate)) -> findings``), e.g.
            `AudioScanner`; ``None`` skips speech.
        fps: frames scanned per second of video.
        max_frames: most frames scanned (thinned evenly over longer videos).
        same_frame: a sampled frame whose mean absolute grey difference (0..1) from the last
            scanned frame is under this is covered by that frame's findings.
        max_seconds: longest video accepted.
        max_pixels: largest frame accepted.
    """

    def __init__(
        self,
        image_scanner: Any,
        audio_scanner: Any = None,
        *,
        fps: float = 1.0,
        max_frames: int = 120,
        same_frame: float = 0.01,
        max_seconds: float = 600.0,
        max_pixels: int = 40_000_000,
    ) -> None:
        if not fps > 0:
            raise ConfigError("guard.video.fps", f"must be > 0, got {fps}")
        if max_frames < 1:
            raise ConfigError("guard.video.max_frames", f"must be >= 1, got {max_frames}")
        self.image_scanner = image_scanner
        self.audio_scanner = audio_scanner
        self.fps = float(fps)
        self.max_frames = int(max_frames)
        self.same_frame = float(same_frame)
        self.max_seconds = float(max_seconds)
        self.max_pixels = int(max_pixels)

    def scan(self, data: bytes) -> list[Finding]:
        """Findings in the frames (by time) then in the soundtrack (by time).

        Raises:
            InvalidInputError: not a readable video, or over a limit.
        """
        from polyfuse.modalities.readers.video import (
            VideoLimits,
            decode_soundtrack,
            stream_frames,
            video_info,
        )

        limits = VideoLimits(max_seconds=self.max_seconds, max_pixels=self.max_pixels)
        info = video_info(data, limits=limits, name="video")
        fps = self.fps
        if info.duration > 0:  # thin evenly over a long video: at most max_frames scanned
            fps = min(fps, self.max_frames / info.duration)
        frames = stream_frames(data, fps=fps, limits=limits, name="video")
        findings = self._frames(frames, max(info.duration, 0.0), 1.0 / fps)
        if self.audio_scanner is not None:
            wave = decode_soundtrack(
                data, sample_rate=SOUNDTRACK_RATE, max_seconds=self.max_seconds, name="video"
            )
            if wave is not None and wave.size:
                heard = self.audio_scanner.scan((wave, SOUNDTRACK_RATE))
                findings += [_as_video(f, "soundtrack", f.location.seconds) for f in heard]
        return findings

    def _frames(
        self, frames: Iterable[tuple[float, np.ndarray]], duration: float, step: float
    ) -> list[Finding]:
        """Each frame scanned unless it repeats the last one scanned; a frame's findings
        last until the next frame (the last frame's until the end of the video)."""
        out: list[Finding] = []
        last: np.ndarray | None = None
        current: list[Finding] = []  # the findings of the picture on screen, open-ended
        start = 0.0
        for t, frame in frames:
            current = [_extend(f, t) for f in current]
            out[len(out) - len(current) :] = current
            grey = frame.mean(axis=-1) / 255.0
            if last is not None and float(np.abs(grey - last).mean()) < self.same_frame:
                continue  # the same picture goes on
            found: Sequence[Finding] = self.image_scanner.scan(frame)
            current = [_as_video(f, "frame", (t, t)) for f in found]
            out.extend(current)
            last, start = grey, t
        end = max(duration, start + step)
        out[len(out) - len(current) :] = [_extend(f, end) for f in current]
        return out


def _as_video(f: Finding, where: str, seconds: tuple[float, float] | None) -> Finding:
    location = dataclasses.replace(
        f.location, seconds=seconds, source=f"{where}:{f.location.source}"
    )
    return dataclasses.replace(f, modality="video", location=location)


def _extend(f: Finding, until: float) -> Finding:
    start = f.location.seconds[0] if f.location.seconds else 0.0
    return dataclasses.replace(f, location=dataclasses.replace(f.location, seconds=(start, until)))
