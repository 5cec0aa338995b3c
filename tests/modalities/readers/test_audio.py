"""The one audio decoder and the one resampler."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from polyfuse.core.errors import InvalidInputError
from polyfuse.guard.readers.asr import load_audio
from polyfuse.modalities import AudioContract
from polyfuse.modalities.readers.audio import decode_audio, resample, to_mono


def _sine(rate: int, seconds: float, hz: float = 1000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.sin(2 * np.pi * hz * t).astype(np.float32)


@pytest.mark.parametrize(
    ("from_rate", "to_rate", "length"),
    [(8000, 16000, 1600), (48000, 16000, 1600), (44100, 16000, 1600), (16000, 8000, 800)],
)
def test_resampled_sine_is_the_sine_sampled_at_the_new_rate(
    from_rate: int, to_rate: int, length: int
) -> None:
    out = resample(_sine(from_rate, 0.1), from_rate, to_rate)
    assert out.dtype == np.float32 and out.shape == (length,)
    expected = _sine(to_rate, 0.1)  # sin(2 pi 1000 k / to_rate), computed by hand
    inner = slice(100, length - 100)  # the filter's edges ramp in and out
    np.testing.assert_allclose(out[inner], expected[inner], atol=2e-3)


def test_same_rate_is_untouched_and_absurd_rates_are_refused() -> None:
    x = np.array([0.5, -0.25, 1.0], np.float32)
    np.testing.assert_array_equal(resample(x, 16000, 16000), x)
    with pytest.raises(InvalidInputError, match="too far from 16000 Hz"):
        resample(x, 4_000_000_000, 16000)


def test_to_mono_averages_channels() -> None:
    stereo = np.array([[1.0, 0.0], [0.5, 0.5], [-1.0, 1.0]], np.float32)
    assert to_mono(stereo).tolist() == [0.5, 0.5, 0.0]


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_firewall_and_model_get_the_same_samples(fmt: str) -> None:
    stereo = np.stack([_sine(44100, 0.5), _sine(44100, 0.5, 300.0)], axis=1) * 0.5
    buf = io.BytesIO()
    sf.write(buf, stereo, 44100, format=fmt)
    firewall = load_audio(buf.getvalue())
    model = AudioContract.create("speech", {"sample_rate": 16000}).load(buf.getvalue())
    assert firewall.dtype == model.dtype == np.float32 and firewall.shape == (8000,)
    np.testing.assert_array_equal(firewall, model)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not a readable audio file \\(empty input"),
        (b"\x89PNG\r\n\x1a\n" + bytes(20), "PNG image, not WAV"),
        (b"OggS are fish", "content is text"),
        (b"RIFF\x00\x00\x00\x00WAVEjunk", "cannot decode audio: not a readable audio file"),
    ],
)
def test_undecodable_bytes_raise_one_typed_error(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidInputError, match=reason) as err:
        decode_audio(data, max_seconds=10, name="speech")
    assert err.value.modality == "speech"


def test_duration_limit_is_checked_from_the_header() -> None:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(3 * 8000, np.float32), 8000, format="WAV")
    with pytest.raises(InvalidInputError, match=r"3\.0 s of audio is longer than the limit of 2 s"):
        decode_audio(buf.getvalue(), max_seconds=2)
    wave, rate = decode_audio(buf.getvalue(), max_seconds=3)
    assert wave.shape == (24000, 1) and rate == 8000
