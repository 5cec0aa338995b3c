"""Streams on one clock and the signal baseline of sound/picture sync, on clips built here
whose true offset is known."""

from __future__ import annotations

import numpy as np
import pytest

from polyfuse.core.errors import ConfigError, InvalidInputError
from polyfuse.modalities.sync import SignalSync, on_clock, picture_motion, sound_change

FPS = 25
RATE = 16_000


def envelope(t: np.ndarray, seed: int) -> np.ndarray:
    """Syllable-like bursts: a few smooth bumps of random width and height."""
    rng = np.random.default_rng(seed)
    env = np.zeros_like(t)
    for start in np.sort(rng.uniform(0.2, 2.4, 6)):
        width = rng.uniform(0.08, 0.25)
        env += rng.uniform(0.4, 1.0) * np.exp(-0.5 * ((t - start) / (width / 2.5)) ** 2)
    return np.clip(env, 0, 1)


def clip(offset_ms: float, seed: int = 0, seconds: float = 3.0) -> tuple[np.ndarray, ...]:
    """A square that moves as the sound swells, and the sound shifted by ``offset_ms``."""
    times = np.arange(int(seconds * FPS)) / FPS
    frames = np.zeros((len(times), 32, 48), dtype=np.uint8)
    for i, x in enumerate(envelope(times, seed) * 30):
        frames[i, 10:22, int(x) + 2 : int(x) + 14] = 255
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(seed + 100)
    wave = rng.normal(0, 1, len(t)) * (0.01 + envelope(t - offset_ms / 1000.0, seed))
    return frames, times, wave.astype(np.float32)


@pytest.mark.parametrize("offset", [0, 80, -80, 200, -200, 400, -400])
def test_signal_sync_finds_a_known_offset(offset: int) -> None:
    frames, times, wave = clip(offset, seed=offset % 7)
    est = SignalSync().estimate(frames, times, wave, RATE)
    assert est is not None
    assert abs(est.offset_ms - offset) <= 30, est
    assert est.confidence > 0.5
    assert est.desync == (abs(offset) >= 120)
    assert est.to_dict()["av_offset_ms"] == round(est.offset_ms, 1)


def test_no_sound_is_no_estimate_and_silence_no_confidence() -> None:
    frames, times, _ = clip(0)
    assert SignalSync().estimate(frames, times, None, RATE) is None
    est = SignalSync().estimate(frames, times, np.zeros(3 * RATE, np.float32), RATE)
    assert est is None or est.confidence < 0.2


def test_dropped_frames_are_left_out_not_invented() -> None:
    frames, times, wave = clip(120, seed=3)
    keep = np.ones(len(times), dtype=bool)
    keep[30:38] = False  # 320 ms of dropped frames
    est = SignalSync().estimate(frames[keep], times[keep], wave, RATE)
    assert est is not None and abs(est.offset_ms - 120) <= 30


def test_on_clock_interpolates_and_masks_gaps() -> None:
    times = np.array([0.0, 0.1, 0.2, 0.6, 0.7])
    values = np.array([0.0, 1.0, 2.0, 6.0, 7.0])
    clock = np.arange(0, 0.81, 0.05)
    out = on_clock(times, values, clock, tolerance_s=0.06)
    np.testing.assert_allclose(out.values[out.valid], np.interp(clock, times, values)[out.valid])
    assert out.valid.tolist() == [
        True, True, True, True, True, True,  # 0.0 .. 0.25
        False, False, False, False, False,  # 0.3 .. 0.5: 100 ms or more from a sample
        True, True, True, True, True,  # 0.55 .. 0.75
        False,  # 0.8: past the end
    ]  # fmt: skip
    assert 0 < out.coverage < 1
    with pytest.raises(InvalidInputError, match="no sample within 60 ms"):
        on_clock(times, values, clock, tolerance_s=0.06, strict=True)
    with pytest.raises(InvalidInputError, match="backwards"):
        on_clock(times[::-1], values, clock, tolerance_s=0.06)
    with pytest.raises(InvalidInputError, match="timestamps for"):
        on_clock(times, values[:3], clock, tolerance_s=0.06)
    two = on_clock(times, np.stack([values, -values], 1), clock, tolerance_s=0.06)
    assert two.values.shape == (len(clock), 2)


def test_signals_and_bad_settings() -> None:
    t, v = sound_change(np.zeros(100, np.float32), RATE)
    assert len(t) == len(v) == 0
    t, v = picture_motion(np.zeros((1, 4, 4), np.uint8), np.zeros(1))
    assert len(t) == 0
    with pytest.raises(InvalidInputError, match="timestamp per frame"):
        picture_motion(np.zeros((3, 4, 4)), np.zeros(2))
    with pytest.raises(ConfigError):
        SignalSync(max_offset_ms=0)
    with pytest.raises(ConfigError):
        SignalSync(min_overlap=0)
