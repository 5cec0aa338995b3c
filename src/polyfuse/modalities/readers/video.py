"""Video: the one PyAV decoder for the model (and, later, the firewall and serving).

A container (MP4/MOV, WebM/MKV, AVI, sniffed by content) is opened from bytes, its header
checked against the limits (duration, frame size, declared frame count) before any frame is
decoded, and frames are sampled in one of four ways: ``uniform`` (the frames on screen at
the centres of N equal segments; far-apart targets are reached by seeking to the keyframe
before them), ``fps`` (one frame every ``1/fps`` seconds), ``keyframes`` (the codec's keyframes
only; nothing else is decoded) and ``scenes`` (the first frame and the frames that differ
most from the one before). Every frame carries its timestamp in seconds from its PTS,
measured from the start of the container, and the soundtrack (`decode_soundtrack`) is on
the same clock, so frames and samples line up.

Corrupt, truncated and oversized inputs raise `InvalidInputError` with the reason; PyAV
is imported inside the functions.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from polyfuse.core.errors import DependencyError, InvalidInputError
from polyfuse.modalities.readers.audio import FloatArray, resample, to_mono
from polyfuse.modalities.readers.formats import describe, sniff

#: Container formats the video decoder reads (sniffed names; MOV is MP4's family, MKV WebM's).
VIDEO_FORMATS = frozenset({"mp4", "mov", "webm", "mkv", "avi"})
#: Ways of choosing frames (see `FrameSampling`).
SAMPLING_MODES = ("uniform", "fps", "keyframes", "scenes")
#: Uniform sampling seeks to a target only when it lies further past the last decoded frame
#: than the longest keyframe interval seen so far and at least this many seconds: a seek
#: restarts at the keyframe before the target, so a closer target is cheaper decoded on to.
SEEK_GAP_S = 1.0


def _av() -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyError("av", "video decoding", "video") from exc
    return av


@dataclass(frozen=True)
class VideoLimits:
    """What a video may declare or hold before it is refused.

    Attributes:
        max_seconds: longest duration.
        max_pixels: largest frame (width x height).
        max_frames: most frames declared by the header or walked while decoding.
    """

    max_seconds: float = 600.0
    max_pixels: int = 3840 * 2160
    max_frames: int = 100_000


@dataclass(frozen=True)
class FrameSampling:
    """Which frames to return.

    Attributes:
        mode: ``uniform``, ``fps``, ``keyframes`` or ``scenes``.
        frames: ``uniform``: exactly this many (fewer only when the video has fewer);
            the other modes: at most this many, thinned evenly over the video.
        fps: frames per second of ``fps`` sampling.
        scene_threshold: ``scenes``: a frame is a scene change when its mean absolute
            difference from the previous frame (grey, 0..1) exceeds this.
        seek: ``uniform`` may seek (False decodes every frame in order; for measuring).
    """

    mode: str = "uniform"
    frames: int = 8
    fps: float = 1.0
    scene_threshold: float = 0.1
    seek: bool = True


@dataclass(frozen=True)
class VideoInfo:
    """What the container header says about its video stream.

    Attributes:
        format: the sniffed container (``mp4``, ``webm``, ...).
        codec: the video codec (``h264``, ``vp9``, ...).
        width: frame width in pixels.
        height: frame height in pixels.
        duration: seconds (0.0 when the header does not say).
        fps: average frame rate (0.0 when unknown).
        frames: frames declared by the header (0 when unknown).
        has_audio: the container has an audio stream.
    """

    format: str
    codec: str
    width: int
    height: int
    duration: float
    fps: float
    frames: int
    has_audio: bool


@dataclass(frozen=True)
class VideoFrames:
    """Decoded, sampled frames.

    Attributes:
        frames: uint8 RGB ``(T, H, W, 3)``.
        timestamps: float64 ``(T,)`` seconds from the start of the container, increasing.
        info: the header's description of the video.
    """

    frames: NDArray[np.uint8]
    timestamps: NDArray[np.float64]
    info: VideoInfo


@dataclass(frozen=True)
class _Where:
    name: str
    field: str | None
    path: str | None

    def error(self, reason: str, hint: str | None = None) -> InvalidInputError:
        return InvalidInputError(self.name, reason, field=self.field, path=self.path, hint=hint)


def _where(name: str, field: str | None, path: Path | str | None) -> _Where:
    return _Where(name, field, None if path is None else os.fspath(path))


@contextmanager
def _open(data: bytes, where: _Where) -> Iterator[Any]:
    """The PyAV container of ``data``; refuses what is not a readable video container."""
    fmt = sniff(bytes(data[:64])) if data else None
    if fmt not in VIDEO_FORMATS:
        raise where.error(
            "cannot decode video: not a readable video file "
            f"({'empty input' if not data else 'content is ' + describe(fmt)}, "
            "not MP4, MOV, WebM, MKV or AVI)",
            hint="use MP4 (H.264), WebM (VP8/VP9), MKV or AVI",
        )
    av = _av()
    try:
        container = av.open(io.BytesIO(bytes(data)), mode="r", metadata_errors="ignore")
    except Exception as exc:  # FFmpeg reports malformed input in several exception types
        raise where.error(
            f"cannot decode video: {describe(fmt)} that is unreadable ({exc})"
        ) from exc
    try:
        yield container
    finally:
        container.close()


def _start(container: Any) -> float:
    """Seconds at which the container's clock starts (its first stream's start)."""
    start = container.start_time
    return 0.0 if start is None else float(start) / 1_000_000


def probe(container: Any, fmt: str, limits: VideoLimits, where: _Where) -> VideoInfo:
    """The header's description of the first video stream, checked against ``limits``."""
    if not container.streams.video:
        raise where.error("the file has no video stream", hint="pass a file with moving pictures")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    width, height = int(ctx.width or 0), int(ctx.height or 0)
    if width <= 0 or height <= 0:
        raise where.error(f"the video stream declares a frame of {width} x {height} pixels")
    if width * height > limits.max_pixels:
        raise where.error(
            f"{width} x {height} frames are larger than the limit of {limits.max_pixels} pixels",
            hint="downscale the video or raise max_pixels",
        )
    duration = _duration(container, stream)
    declared = max(duration, _container_duration(container))  # the longer claim counts
    if declared > limits.max_seconds:
        raise where.error(
            f"{declared:.1f} s of video is longer than the limit of {limits.max_seconds:g} s",
            hint="cut the video into shorter clips or raise max_seconds",
        )
    frames = int(stream.frames or 0)
    if frames > limits.max_frames:
        raise where.error(
            f"the video declares {frames} frames, more than the limit of {limits.max_frames}",
            hint="cut the video into shorter clips or raise max_frames",
        )
    rate = stream.average_rate or stream.guessed_rate
    return VideoInfo(
        format=fmt,
        codec=str(ctx.name),
        width=width,
        height=height,
        duration=duration,
        fps=float(rate) if rate else 0.0,
        frames=frames,
        has_audio=bool(container.streams.audio),
    )


def _duration(container: Any, stream: Any) -> float:
    """Seconds of ``stream`` (else of the container; 0.0 when neither says)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return _container_duration(container)


def _container_duration(container: Any) -> float:
    """Seconds the container's header declares (0.0 when it does not say)."""
    return 0.0 if container.duration is None else float(container.duration) / 1_000_000


def decode_video(
    data: bytes,
    *,
    sampling: FrameSampling | None = None,
    limits: VideoLimits | None = None,
    name: str = "video",
    field: str | None = None,
    path: Path | str | None = None,
) -> VideoFrames:
    """Decode and sample the frames of a video file's first video stream.

    Raises:
        InvalidInputError: not a video container, no video stream, over a limit, or no
            frame could be decoded (corrupt or truncated data).
    """
    sampling = sampling or FrameSampling()
    limits = limits or VideoLimits()
    where = _where(name, field, path)
    fmt = sniff(bytes(data[:64])) or ""
    with _open(data, where) as container:
        info = probe(container, fmt, limits, where)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        walk = _Walk(container, stream, limits, where)
        try:
            picked = _SAMPLERS[sampling.mode](walk, info, sampling)
        except InvalidInputError:
            raise
        except Exception as exc:  # FFmpeg's decoding errors, see `_open`
            raise where.error(f"cannot decode video: the data is unreadable ({exc})") from exc
    if not picked:
        raise where.error("cannot decode video: no frame could be decoded (corrupt or truncated)")
    frames = np.stack([f.to_ndarray(format="rgb24") for _, f in picked])  # (T, H, W, 3)
    times = np.array([t for t, _ in picked], dtype=np.float64)
    return VideoFrames(frames, times, info)


def video_info(
    data: bytes,
    *,
    limits: VideoLimits | None = None,
    name: str = "video",
    field: str | None = None,
    path: Path | str | None = None,
) -> VideoInfo:
    """What the header says about the video (checked against ``limits``), decoding nothing.

    Raises:
        InvalidInputError: not a readable video container, no video stream, over a limit.
    """
    where = _where(name, field, path)
    fmt = sniff(bytes(data[:64])) or ""
    with _open(data, where) as container:
        return probe(container, fmt, limits or VideoLimits(), where)


def stream_frames(
    data: bytes,
    *,
    fps: float,
    size: tuple[int, int] | None = None,
    gray: bool = False,
    until: float | None = None,
    limits: VideoLimits | None = None,
    name: str = "video",
    field: str | None = None,
    path: Path | str | None = None,
) -> Iterator[tuple[float, NDArray[np.uint8]]]:
    """``(seconds, frame)`` in decoding order, at most ``fps`` frames per second (the first
    frame at or after each point of the ``k / fps`` grid), each converted as it
    is decoded (resized to ``size`` = (width, height), grey ``(H, W)`` with ``gray``, else
    RGB ``(H, W, 3)``), so memory holds one decoded frame at a time whatever the video's
    length. Stops after ``until`` seconds of video.

    Raises:
        InvalidInputError: not a readable video container, over a limit, or undecodable.
    """
    if not fps > 0:
        raise InvalidInputError(name, f"fps must be > 0, got {fps}", hint="e.g. fps=25")
    where = _where(name, field, path)
    limits = limits or VideoLimits()
    fmt = sniff(bytes(data[:64])) or ""
    with _open(data, where) as container:
        probe(container, fmt, limits, where)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        walk = _Walk(container, stream, limits, where)
        target = 0.0  # the next point of the k / fps grid
        options: dict[str, Any] = {"format": "gray" if gray else "rgb24"}
        if size is not None:
            options["width"], options["height"] = size
        frames = walk.frames()
        while True:
            try:
                item = next(frames, None)
            except InvalidInputError:
                raise
            except Exception as exc:  # FFmpeg's decoding errors, see `_open`
                raise where.error(f"cannot decode video: the data is unreadable ({exc})") from exc
            if item is None:
                return
            t, frame = item
            if until is not None and t > until:
                return
            if t < target - 1e-6:
                continue
            target = (math.floor(t * fps + 1e-6) + 1) / fps
            yield t, frame.to_ndarray(**options)


class _Walk:
    """Decoded frames of one stream with their times, counted against the limits."""

    def __init__(self, container: Any, stream: Any, limits: VideoLimits, where: _Where) -> None:
        self.container, self.stream, self.limits, self.where = container, stream, limits, where
        self.start = _start(container)
        self.walked = 0
        self.gop: float | None = None  # longest keyframe interval seen (None: fewer than 2)
        self._last_key: float | None = None
        rate = stream.average_rate or stream.guessed_rate
        self.step = 1.0 / float(rate) if rate else 0.04

    def frames(self) -> Iterator[tuple[float, Any]]:
        """``(seconds, frame)`` from the current position on."""
        last = -math.inf
        for frame in self.container.decode(self.stream):
            self.walked += 1
            if self.walked > self.limits.max_frames:
                raise self.where.error(
                    f"the video has more than {self.limits.max_frames} frames (max_frames)",
                    hint="cut the video into shorter clips or raise max_frames",
                )
            t = self._time(frame, last)
            if t > self.limits.max_seconds:
                raise self.where.error(
                    f"the video runs past the limit of {self.limits.max_seconds:g} s",
                    hint="cut the video into shorter clips or raise max_seconds",
                )
            last = t
            if frame.key_frame:
                if self._last_key is not None:
                    self.gop = max(self.gop or 0.0, t - self._last_key)
                self._last_key = t
            yield t, frame

    def _time(self, frame: Any, last: float) -> float:
        """Seconds from the container start (from the PTS; the previous frame's time plus
        one frame when the frame has none)."""
        if frame.pts is not None and frame.time_base is not None:
            return float(frame.pts * frame.time_base) - self.start
        return 0.0 if last == -math.inf else last + self.step

    def seek(self, seconds: float) -> None:
        """Go to the keyframe at or before ``seconds`` (container clock)."""
        base = self.stream.time_base or Fraction(1, 1_000_000)
        target = int((seconds + self.start) / base)
        self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
        self._last_key = None  # the next keyframe interval is measured afresh

    def worth_seeking(self, target: float, position: float) -> bool:
        """Whether the keyframe before ``target`` surely lies past ``position``."""
        return self.gop is not None and target - position >= max(self.gop, SEEK_GAP_S)


def _targets_uniform(info: VideoInfo, n: int) -> list[float]:
    """Centres of ``n`` equal segments of the video."""
    span = info.duration if info.duration > 0 else (info.frames / info.fps if info.fps else 0.0)
    return [(i + 0.5) * span / n for i in range(n)]


#: Slack when comparing a frame's time with a target (timestamps are rationals made floats).
_EPS = 1e-6


def _on_screen(walk: _Walk, targets: list[float], seek: bool) -> list[tuple[float, Any]]:
    """For each target time, the frame on screen then (the last one shown at or before
    it; the first frame for a target before it), each frame used once."""
    out: list[tuple[float, Any]] = []
    it = walk.frames()
    shown: tuple[float, Any] | None = None  # the frame on screen at the last target
    ahead: tuple[float, Any] | None = None  # a frame read past the last target
    position = -math.inf
    for target in targets:
        if seek and walk.worth_seeking(target, position):
            walk.seek(target)  # to the keyframe at or before the target
            it, shown, ahead = walk.frames(), None, None
        while True:
            if ahead is None:
                ahead = next(it, None)
                if ahead is None:  # the stream ended: the last frame stays on screen
                    break
            position = ahead[0]
            if ahead[0] > target + _EPS:
                shown = shown or ahead
                break
            shown, ahead = ahead, None
        if shown is not None and (not out or shown[0] > out[-1][0]):
            out.append(shown)
    return out


def _thin(items: list[tuple[float, Any]], n: int) -> list[tuple[float, Any]]:
    """At most ``n`` items spread evenly (first and last kept)."""
    if len(items) <= n:
        return items
    idx = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in idx]


def _uniform(walk: _Walk, info: VideoInfo, s: FrameSampling) -> list[tuple[float, Any]]:
    targets = _targets_uniform(info, s.frames)
    if not targets or targets[-1] <= 0:  # no duration in the header: decode all, thin
        return _thin(list(walk.frames()), s.frames)
    return _on_screen(walk, targets, s.seek)


def _fps(walk: _Walk, info: VideoInfo, s: FrameSampling) -> list[tuple[float, Any]]:
    step = 1.0 / s.fps
    span = info.duration if info.duration > 0 else walk.limits.max_seconds
    targets = [i * step for i in range(max(1, int(span / step) + 1)) if i * step < span]
    picked = _on_screen(walk, targets, seek=False)
    return _thin(picked, s.frames)


def _keyframes(walk: _Walk, info: VideoInfo, s: FrameSampling) -> list[tuple[float, Any]]:
    walk.stream.codec_context.skip_frame = "NONKEY"
    return _thin(list(walk.frames()), s.frames)


def _scenes(walk: _Walk, info: VideoInfo, s: FrameSampling) -> list[tuple[float, Any]]:
    """The first frame, then the frames that differ most from their predecessor (above
    the threshold), in time order."""
    changes: list[tuple[float, float, Any]] = []
    prev: NDArray[np.float32] | None = None
    for t, frame in walk.frames():
        grey = frame.to_ndarray(width=32, height=32, format="gray").astype(np.float32) / 255.0
        score = math.inf if prev is None else float(np.abs(grey - prev).mean())
        if score > s.scene_threshold:
            changes.append((score, t, frame))
        prev = grey
    top = sorted(changes, key=lambda c: -c[0])[: s.frames]
    return [(t, f) for _, t, f in sorted(top, key=lambda c: c[1])]


_SAMPLERS = {"uniform": _uniform, "fps": _fps, "keyframes": _keyframes, "scenes": _scenes}


def decode_soundtrack(
    data: bytes,
    *,
    sample_rate: int,
    max_seconds: float | None = None,
    name: str = "audio",
    field: str | None = None,
    path: Path | str | None = None,
) -> FloatArray | None:
    """The first audio stream of a video file as float32 mono ``(T,)`` at ``sample_rate``,
    starting at the container's start (silence fills a later-starting track), or ``None``
    when the file has no audio stream.

    A silent track is returned as samples (the audio quality gate judges it), never None.

    Raises:
        InvalidInputError: not a video container, over ``max_seconds``, or unreadable.
    """
    where = _where(name, field, path)
    with _open(data, where) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        declared = max(_duration(container, stream), _container_duration(container))
        if max_seconds is not None and declared > max_seconds:
            raise where.error(
                f"the soundtrack is longer than the limit of {max_seconds:g} s (max_seconds)",
                hint="cut the video into shorter clips or raise max_seconds",
            )
        try:
            wave, rate, first = _read_audio(container, stream, max_seconds, where)
        except InvalidInputError:
            raise
        except Exception as exc:  # see `_open`
            raise where.error(
                f"cannot decode the soundtrack: the data is unreadable ({exc})"
            ) from exc
        lead = max(0, round((first - _start(container)) * rate))
    if wave.size == 0:
        raise where.error("the soundtrack holds no samples (corrupt or truncated)")
    if not np.all(np.isfinite(wave)):
        raise where.error("the soundtrack's samples contain NaN or infinity")
    wave = np.concatenate([np.zeros(lead, np.float32), wave]) if lead else wave
    return resample(wave, rate, sample_rate)


def _read_audio(
    container: Any, stream: Any, max_seconds: float | None, where: _Where
) -> tuple[FloatArray, int, float]:
    """Mono float32 samples at the stream's rate, the rate, and the first frame's time."""
    av = _av()
    planar = av.AudioResampler(format="fltp")  # the decoder's layout and rate, float planes
    chunks: list[NDArray[np.float32]] = []
    rate, first, total = int(stream.rate or 0), None, 0
    for frame in container.decode(stream):
        if first is None and frame.pts is not None and frame.time_base is not None:
            first = float(frame.pts * frame.time_base)
        rate = int(frame.sample_rate)
        for out in planar.resample(frame):
            chunk = out.to_ndarray()  # (channels, n)
            chunks.append(to_mono(chunk.T))
            total += chunk.shape[1]
        if max_seconds is not None and rate and total / rate > max_seconds:
            raise where.error(f"the soundtrack runs past the limit of {max_seconds:g} s")
    if rate <= 0:
        raise where.error("the soundtrack declares no sample rate")
    wave = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return wave.astype(np.float32, copy=False), rate, 0.0 if first is None else first
