"""Timestamped streams on one clock, and the signal baseline for sound/picture sync.

Streams sampled at their own times (video frames, an audio envelope, a time series at
another rate) are put on one clock by `on_clock`: linear interpolation onto the clock's
times, and a mask of the clock points that a sample lies near enough to (within the
stated tolerance; a dropped frame or a gap in a series leaves points unmasked, never
invented values).

`SignalSync` estimates how far a soundtrack is shifted against its picture without any
training: it cross-correlates how fast the sound changes (the absolute rate of change of
its smoothed RMS level) with how much the picture moves (the mean absolute difference of
consecutive frames), both on one clock, and takes the lag of the highest correlation
(refined between clock steps by a parabola through the peak). Speech and the motion that
goes with it (lips, a gesture, an object that appears as it is named) change together, so
the lag is the offset. It is the baseline the learned sync model is compared with.

Sign convention everywhere: ``offset_ms > 0`` means the sound comes late (the audio lags
the picture), ``< 0`` that it comes early.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from polyfuse.core.errors import ConfigError, InvalidInputError

#: Offsets at or above this (in absolute value) are reported as out of sync by default:
#: viewers notice sound more than ~100-120 ms off its picture (ITU-R BT.1359 puts the
#: detectability threshold at +45 / -125 ms).
DEFAULT_THRESHOLD_MS = 120.0


@dataclass(frozen=True)
class OnClock:
    """A stream put on a clock.

    Attributes:
        values: ``(M, ...)`` values at the clock's times (interpolated; 0 where not valid).
        valid: ``(M,)`` bool, clock points a sample lies within the tolerance of and
            inside the stream's span.
    """

    values: np.ndarray
    valid: np.ndarray

    @property
    def coverage(self) -> float:
        """Share of the clock's points that carry a value."""
        return float(self.valid.mean()) if self.valid.size else 0.0


def on_clock(
    times: np.ndarray,
    values: np.ndarray,
    clock: np.ndarray,
    *,
    tolerance_s: float,
    name: str = "stream",
    strict: bool = False,
) -> OnClock:
    """Put a stream sampled at ``times`` (seconds, ``(N,)``) on ``clock`` (``(M,)``).

    Values are interpolated linearly between the two samples around each clock point. A
    clock point is valid when it lies inside the stream's span widened by the tolerance and
    its nearest sample is at most ``tolerance_s`` away.

    Args:
        times: sample times, seconds, non-decreasing.
        values: ``(N, ...)`` samples.
        clock: ``(M,)`` the clock's times, seconds.
        tolerance_s: how far a clock point may be from its nearest sample.
        name: the stream's name in errors.
        strict: raise `InvalidInputError` when a clock point inside the stream's span has
            no sample within the tolerance (a gap: dropped frames, missing readings).

    Raises:
        InvalidInputError: times and values disagree, times go backwards, or (``strict``)
            a gap is wider than the tolerance.
    """
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    c = np.asarray(clock, dtype=np.float64)
    if tolerance_s < 0:
        raise ConfigError("tolerance_s", f"must be >= 0, got {tolerance_s}")
    if t.ndim != 1 or v.shape[:1] != t.shape:
        raise InvalidInputError(
            name,
            f"{t.shape[0] if t.ndim else 0} timestamps for {v.shape[0] if v.ndim else 0} samples",
            hint="give one timestamp per sample",
        )
    if t.size and np.any(np.diff(t) < 0):
        raise InvalidInputError(
            name, "timestamps go backwards", hint="sort the samples by time (decode order)"
        )
    flat = v.reshape(len(t), -1)
    out = np.zeros((len(c), flat.shape[1]))
    valid = np.zeros(len(c), dtype=bool)
    if len(t):
        for j in range(flat.shape[1]):
            out[:, j] = np.interp(c, t, flat[:, j])
        right = np.clip(np.searchsorted(t, c), 0, len(t) - 1)
        left = np.clip(right - 1, 0, len(t) - 1)
        nearest = np.minimum(np.abs(t[right] - c), np.abs(t[left] - c))
        inside = (c >= t[0] - tolerance_s) & (c <= t[-1] + tolerance_s)
        valid = inside & (nearest <= tolerance_s + 1e-9)
        if strict:
            gaps = (c >= t[0]) & (c <= t[-1]) & ~valid
            if gaps.any():
                at = float(c[np.argmax(gaps)])
                raise InvalidInputError(
                    name,
                    f"no sample within {tolerance_s * 1000:.0f} ms of {at:.3f} s "
                    f"({int(gaps.sum())} clock points in gaps)",
                    hint="raise the tolerance, or treat the gap as missing (strict=False)",
                )
    out[~valid] = 0.0
    return OnClock(out.reshape((len(c), *v.shape[1:])), valid)


def sound_change(
    wave: np.ndarray, sample_rate: int, *, rate_hz: float = 100.0, smooth_ms: float = 30.0
) -> tuple[np.ndarray, np.ndarray]:
    """How fast the sound changes: ``(times, values)`` at ``rate_hz``.

    The RMS level of windows two hops long (how open a speaking mouth is follows it),
    smoothed over ``smooth_ms``, then the absolute difference of consecutive values (how
    fast it opens or closes); each value's time is the middle of its two windows.
    """
    x = np.asarray(wave, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0 if x.shape[0] < x.shape[1] else 1)
    hop = max(1, round(sample_rate / rate_hz))
    n = len(x) // hop
    if n < 3:
        return np.zeros(0), np.zeros(0)
    power = (x[: n * hop].reshape(n, hop) ** 2).mean(axis=1)
    power = 0.5 * (power + np.concatenate([power[1:], power[-1:]]))  # windows two hops long
    level = np.sqrt(power)
    width = max(1, round(smooth_ms / 1000.0 * rate_hz))
    if width > 1:  # a moving average that does not sag at the ends
        padded = np.pad(level, (width // 2, width - 1 - width // 2), mode="edge")
        level = np.convolve(padded, np.ones(width) / width, mode="valid")
    change = np.abs(np.diff(level))
    times = (np.arange(1, n) + 0.5) * hop / sample_rate
    return times, change


def grey_frames(frames: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(T, H, W)`` float32 grey frames (``(T, H, W, C)`` averaged over channels) and their
    float64 times, checked to match.

    Raises:
        InvalidInputError: not ``(T, H, W[, C])``, or not one timestamp per frame.
    """
    f = np.asarray(frames, dtype=np.float32)
    if f.ndim == 4:
        f = f.mean(axis=-1)
    t = np.asarray(times, dtype=np.float64)
    if f.ndim != 3 or len(f) != len(t):
        raise InvalidInputError(
            "video",
            f"frames of shape {tuple(f.shape)} for {len(t)} timestamps",
            hint="give (T, H, W[, C]) frames and one timestamp per frame",
        )
    return f, t


def peak(lags_ms: np.ndarray, curve: np.ndarray) -> tuple[float, float] | None:
    """``(offset_ms, value)`` at the highest finite point of ``curve`` over ``lags_ms``
    (evenly spaced), refined between lags by a parabola through the peak and its two
    neighbours (at most half a step either way); None when no point is finite."""
    c = np.where(np.isfinite(curve), curve, -np.inf)
    if not np.isfinite(c).any():
        return None
    i = int(np.argmax(c))
    offset = float(lags_ms[i])
    if 0 < i < len(c) - 1 and np.isfinite(c[i - 1]) and np.isfinite(c[i + 1]):
        denom = c[i - 1] - 2 * c[i] + c[i + 1]
        if denom < 0:
            shift = float(np.clip(0.5 * (c[i - 1] - c[i + 1]) / denom, -0.5, 0.5))
            offset += shift * float(lags_ms[1] - lags_ms[0])
    return offset, float(c[i])


def picture_motion(frames: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How much the picture moves: ``(times, values)``, one value between each two frames.

    Frames are ``(T, H, W)`` or ``(T, H, W, C)`` (any scale); the value is the mean absolute
    difference of consecutive grey frames, at the middle of their two timestamps.
    """
    f, t = grey_frames(frames, times)
    if len(f) < 2:
        return np.zeros(0), np.zeros(0)
    motion = np.abs(np.diff(f, axis=0)).mean(axis=(1, 2))
    return 0.5 * (t[1:] + t[:-1]), motion.astype(np.float64)


@dataclass(frozen=True)
class SyncEstimate:
    """The estimated shift of a soundtrack against its picture.

    Attributes:
        offset_ms: estimated offset (``> 0``: the sound comes late).
        confidence: the correlation at the chosen lag, -1..1 (low: the clip holds too
            little sound or motion to tell; the estimate is then a guess).
        threshold_ms: offsets at or above it (absolute) are flagged.
        method: ``signal`` (this baseline) or the learned model's name.
    """

    offset_ms: float
    confidence: float
    threshold_ms: float = DEFAULT_THRESHOLD_MS
    method: str = "signal"

    @property
    def desync(self) -> bool:
        """Whether the sound is off its picture by the threshold or more."""
        return abs(self.offset_ms) >= self.threshold_ms

    def to_dict(self) -> dict[str, Any]:
        """``av_offset_ms``, ``desync``, ``confidence``, ``threshold_ms``, ``method``."""
        return {
            "av_offset_ms": round(self.offset_ms, 1),
            "desync": self.desync,
            "confidence": round(self.confidence, 4),
            "threshold_ms": self.threshold_ms,
            "method": self.method,
        }


@dataclass(frozen=True)
class SignalSync:
    """Cross-correlation of sound change and picture motion (no training).

    Attributes:
        max_offset_ms: the largest offset searched, either way.
        rate_hz: the common clock's rate (its step is the search's step before refinement).
        threshold_ms: offsets at or above it (absolute) are flagged as out of sync.
        min_overlap: the least share of the clip both streams must cover at a lag.
        gap_frames: frame gaps up to this many frame intervals are interpolated over;
            longer ones (dropped frames) are left out of the correlation.
    """

    max_offset_ms: float = 500.0
    rate_hz: float = 100.0
    threshold_ms: float = DEFAULT_THRESHOLD_MS
    min_overlap: float = 0.5
    gap_frames: float = 2.0

    def __post_init__(self) -> None:
        if self.max_offset_ms <= 0:
            raise ConfigError("max_offset_ms", f"must be > 0, got {self.max_offset_ms}")
        if self.rate_hz <= 0:
            raise ConfigError("rate_hz", f"must be > 0, got {self.rate_hz}")
        if not 0.0 < self.min_overlap <= 1.0:
            raise ConfigError("min_overlap", f"must be in (0, 1], got {self.min_overlap}")

    def curve(
        self,
        frames: np.ndarray,
        frame_times: np.ndarray,
        wave: np.ndarray,
        sample_rate: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(lags_ms, correlation)``: the correlation at every searched lag (NaN where the
        streams overlap too little)."""
        a_times, a_vals = sound_change(wave, sample_rate, rate_hz=self.rate_hz)
        v_times, v_vals = picture_motion(frames, frame_times)
        step = 1.0 / self.rate_hz
        k = round(self.max_offset_ms / 1000.0 * self.rate_hz)
        lags = np.arange(-k, k + 1)
        corr = np.full(len(lags), np.nan)
        if len(a_times) < 3 or len(v_times) < 3:
            return lags * step * 1000.0, corr
        clock = a_times
        interval = float(np.median(np.diff(frame_times))) if len(frame_times) > 1 else step
        video = on_clock(v_times, v_vals, clock, tolerance_s=self.gap_frames * interval)
        audio = a_vals
        n = len(clock)
        need = max(3, int(self.min_overlap * min(n, int(video.valid.sum()))))
        for i, lag in enumerate(lags):
            # audio at t against video at t - lag: a positive lag is late sound
            if lag >= 0:
                a, v, ok = audio[lag:], video.values[: n - lag], video.valid[: n - lag]
            else:
                a, v, ok = audio[: n + lag], video.values[-lag:], video.valid[-lag:]
            if int(ok.sum()) < need:
                continue
            corr[i] = _pearson(a[ok], v[ok])
        return lags * step * 1000.0, corr

    def estimate(
        self,
        frames: np.ndarray,
        frame_times: np.ndarray,
        wave: np.ndarray | None,
        sample_rate: int,
    ) -> SyncEstimate | None:
        """The offset of ``wave`` against ``frames``; ``None`` when there is no sound, a
        silent one, or too little of the clip to compare (a missing soundtrack is not out
        of sync)."""
        if wave is None or not audible(wave):
            return None
        found = peak(*self.curve(frames, frame_times, wave, sample_rate))
        if found is None:
            return None
        return SyncEstimate(found[0], found[1], self.threshold_ms, "signal")


def audible(wave: np.ndarray | None, floor: float = 1e-4) -> bool:
    """Whether ``wave`` holds any sound to line up (a silent track holds none: its offset
    cannot be told, so it is not estimated)."""
    return wave is not None and len(wave) > 0 and float(np.max(np.abs(wave))) > floor


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


class SyncMethod(Protocol):
    """What estimates a clip's offset: `SignalSync` or a learned model
    (`polyfuse.models.sync.LearnedSync`)."""

    def estimate(
        self, frames: np.ndarray, frame_times: np.ndarray, wave: np.ndarray | None, sample_rate: int
    ) -> SyncEstimate | None: ...


#: Sample rate the soundtrack is decoded at for sync estimates.
SYNC_RATE = 16_000


def clip_offset(
    data: bytes,
    method: SyncMethod | None = None,
    *,
    max_fps: float = 30.0,
    window_s: float = 60.0,
    max_seconds: float = 600.0,
    name: str = "video",
) -> SyncEstimate | None:
    """The offset of a video file's soundtrack against its picture: the first ``window_s``
    seconds, every frame (at most ``max_fps`` per second, made 64 x 64 grey as it is
    decoded, so a long HD video costs little memory) and the soundtrack at 16 kHz through
    ``method`` (default `SignalSync`). ``None`` when the video has no audio stream.

    Raises:
        InvalidInputError: not a readable video, or over ``max_seconds``.
    """
    from polyfuse.modalities.readers.video import VideoLimits, decode_soundtrack, stream_frames

    wave = decode_soundtrack(data, sample_rate=SYNC_RATE, max_seconds=max_seconds, name=name)
    if wave is None:
        return None
    wave = wave[: int(window_s * SYNC_RATE)]
    limits = VideoLimits(max_seconds=max_seconds)
    picked = list(
        stream_frames(
            data, fps=max_fps, size=(64, 64), gray=True, until=window_s, limits=limits, name=name
        )
    )
    if len(picked) < 2:
        return None
    times = np.array([t for t, _ in picked])
    frames = np.stack([f for _, f in picked])
    return (method or SignalSync()).estimate(frames, times, wave, SYNC_RATE)
