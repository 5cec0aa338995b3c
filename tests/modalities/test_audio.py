"""Audio contract: formats, resampling, log-mel, bad audio."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from polyfuse.core.errors import InvalidInputError
from polyfuse.modalities import AudioContract
from polyfuse.modalities.audio import mel_filterbank


@pytest.fixture
def contract() -> AudioContract:
    return AudioContract.create("speech", {"sample_rate": 8000, "n_mels": 20})


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_when_supported_format_then_mono_float_at_contract_rate(
    tmp_path: Path, contract: AudioContract, fmt: str
) -> None:
    t = np.arange(16000) / 16000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.5
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, stereo.astype(np.float32), 16000, format=fmt)
    wave = contract.load(path)
    assert wave.ndim == 1 and wave.dtype == np.float32
    assert abs(wave.size - 8000) <= 2  # 1 s resampled from 16 kHz to 8 kHz


def test_resampled_tone_keeps_its_frequency(contract: AudioContract) -> None:
    t = np.arange(22050) / 22050
    buf = io.BytesIO()
    sf.write(buf, (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), 22050, format="WAV")
    wave = contract.load(buf.getvalue())
    peak_hz = np.argmax(np.abs(np.fft.rfft(wave))) * 8000 / wave.size
    assert abs(peak_hz - 1000) < 5


def test_logmel_shape_and_lengths(contract: AudioContract) -> None:
    x = contract.preprocess(np.zeros(8000, np.float32))
    assert x.shape == (20, 8000 // contract.hop_length + 1)
    batch = contract.collate([x, x[:, :10]], torch.tensor([True, True]))
    assert batch.data.shape == (2, 20, x.shape[1]) and batch.lengths.tolist() == [x.shape[1], 10]


def test_mel_filterbank_rows_peak_in_order() -> None:
    fb = mel_filterbank(8000, 256, 10, 0.0, 4000.0)
    assert fb.shape == (10, 129) and (fb >= 0).all()
    peaks = fb.argmax(1)
    assert (peaks[1:] > peaks[:-1]).all()


def test_when_wav_has_nan_then_typed_error(tmp_path: Path, contract: AudioContract) -> None:
    wave = np.zeros(800, np.float32)
    wave[10] = np.nan
    sf.write(tmp_path / "nan.wav", wave, 8000, subtype="FLOAT")
    with pytest.raises(InvalidInputError, match="NaN"):
        contract.load(tmp_path / "nan.wav")


def test_when_wav_has_zero_frames_then_typed_error(tmp_path: Path, contract: AudioContract) -> None:
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 8000)
    with pytest.raises(InvalidInputError, match="zero length"):
        contract.load(tmp_path / "empty.wav")


def test_when_too_long_then_refused(contract: AudioContract) -> None:
    short = AudioContract.create("speech", {"sample_rate": 8000, "max_seconds": 0.5})
    buf = io.BytesIO()
    sf.write(buf, np.zeros(8000, np.float32), 8000, format="WAV")
    with pytest.raises(InvalidInputError, match="max_seconds"):
        short.load(buf.getvalue())


def test_when_png_renamed_wav_then_error_says_what_it_is(
    tmp_path: Path, contract: AudioContract
) -> None:
    (tmp_path / "x.wav").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(InvalidInputError, match="PNG image, not WAV"):
        contract.load(tmp_path / "x.wav")


def test_when_wav_header_is_garbage_then_typed_error(
    tmp_path: Path, contract: AudioContract
) -> None:
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(InvalidInputError, match=r"cannot decode audio|zero length"):
        contract.load(tmp_path / "bad.wav")


def test_whisper_features_match_faster_whisper() -> None:
    """``features: whisper`` computes what faster-whisper's feature extractor computes."""
    fw = pytest.importorskip("faster_whisper.feature_extractor")
    from polyfuse.modalities.audio import whisper_log_mel

    rng = np.random.default_rng(0)
    for n in (16000, 3606, 100):
        wave = (rng.standard_normal(n) * 0.1).astype(np.float32)
        expected = fw.FeatureExtractor()(wave)
        assert np.abs(whisper_log_mel(torch.from_numpy(wave)).numpy() - expected).max() < 1e-4
