"""Audio modality: decoded and resampled by `polyfuse.modalities.readers.audio`, turned into a
log-mel spectrogram (the contract's own, or Whisper's for the frozen speech encoder)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polyfuse.core.errors import ConfigError
from polyfuse.modalities.base import (
    AbsentInputError,
    ModalityBatch,
    ModalityContract,
    pad_stack,
    window,
)
from polyfuse.modalities.io import Source, read_source
from polyfuse.modalities.readers.audio import AUDIO_FORMATS, decode_audio, resample, to_mono
from polyfuse.modalities.readers.video import VIDEO_FORMATS, decode_soundtrack

#: Encoded formats accepted (those of the one audio decoder).
ALLOWED_FORMATS = AUDIO_FORMATS


@functools.lru_cache(maxsize=16)
def _hann(length: int) -> Tensor:
    """The Hann window of the STFT (made once per length: building it cost as much as
    the transform of a short clip)."""
    return torch.hann_window(length)


@functools.lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> Tensor:
    """HTK-style triangular mel filterbank, ``(n_mels, n_fft // 2 + 1)``."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mels = np.linspace(hz_to_mel(np.array(f_min)), hz_to_mel(np.array(f_max)), n_mels + 2)
    edges = mel_to_hz(mels)
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lower) / np.maximum(center - lower, 1e-9)
    down = (upper - freqs[None, :]) / np.maximum(upper - center, 1e-9)
    fb = np.maximum(0.0, np.minimum(up, down))
    return torch.from_numpy(fb.astype(np.float32))


@functools.lru_cache(maxsize=4)
def slaney_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> Tensor:
    """Slaney-style mel filterbank with area normalisation (librosa's default, the one
    Whisper was trained with), ``(n_mels, n_fft // 2 + 1)``."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0

    def hz_to_mel(f: float) -> float:
        return f / f_sp if f < min_log_hz else min_log_mel + float(np.log(f / min_log_hz)) / logstep

    mels = np.linspace(0.0, hz_to_mel(sample_rate / 2), n_mels + 2)
    freqs = f_sp * mels
    log_t = mels >= min_log_mel
    freqs[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    fdiff = np.diff(freqs)
    ramps = freqs[:, None] - np.fft.rfftfreq(n_fft, 1.0 / sample_rate)[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    fb = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (freqs[2:] - freqs[:-2]))[:, None]
    return torch.from_numpy(fb.astype(np.float32))


#: Whisper's front end: 16 kHz, 80 Slaney mel bands, 25 ms window, 10 ms hop.
WHISPER_FRONT_END = {"sample_rate": 16000, "n_mels": 80, "win_ms": 25.0, "hop_ms": 10.0}


def whisper_log_mel(wave: Tensor) -> Tensor:
    """Whisper's log-mel features of a 16 kHz wave, ``(T,) -> (80, T // 160 + 1)``:
    log10 power, floored 8 decades under the clip's peak, scaled as ``(x + 4) / 4``
    (what faster-whisper's ``FeatureExtractor`` computes, without the padding to 30 s)."""
    wave = torch.nn.functional.pad(wave, (0, 160))  # faster-whisper's trailing 10 ms
    if wave.numel() <= 200:  # reflect padding needs more than half a window
        wave = torch.nn.functional.pad(wave, (0, 201 - wave.numel()))
    spec = torch.stft(
        wave, n_fft=400, hop_length=160, window=_hann(400), center=True, return_complex=True
    )
    power = spec[:, :-1].abs().pow(2)  # (201, frames), the last frame dropped like Whisper
    log_spec = torch.log10((slaney_filterbank(16000, 400, 80) @ power).clamp_min(1e-10))
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0  # (80, frames)


@dataclass(frozen=True)
class AudioContract(ModalityContract):
    """Audio inputs.

    Attributes:
        sample_rate: every input is resampled to this rate (Hz).
        n_mels: mel bands of the spectrogram.
        win_ms: analysis window length in milliseconds.
        hop_ms: hop between frames in milliseconds.
        f_min: lowest mel frequency (Hz).
        f_max: highest mel frequency (Hz); ``None`` means Nyquist.
        normalize: ``"utterance"`` subtracts each band's mean over time
            (cepstral mean normalisation; removes channel/loudness offsets),
            ``"none"`` keeps raw log-mel values.
        max_seconds: refuse longer inputs.
        max_bytes: refuse larger files.
        source: the manifest key the audio is read from when it is not the modality's own
            name: ``video`` reads the soundtrack of the row's video file (a video without
            an audio stream is a missing audio modality, `AbsentInputError`). ``None``: the
            modality's own key, audio files only.
        features: ``"logmel"`` (the spectrogram the parameters above describe) or
            ``"whisper"`` (Whisper's own log-mel, `whisper_log_mel`, for the frozen
            ``whisper_base`` encoder; needs the `WHISPER_FRONT_END` parameters and
            ``normalize: none``).
    """

    kind = "audio"
    version = 1

    sample_rate: int = 16000
    n_mels: int = 64
    win_ms: float = 25.0
    hop_ms: float = 10.0
    f_min: float = 0.0
    f_max: float | None = None
    normalize: str = "utterance"
    max_seconds: float = 60.0
    max_bytes: int = 100_000_000
    source: str | None = None
    features: str = "logmel"

    def params(self) -> dict[str, Any]:
        """Preprocessing parameters; ``source`` only when set and ``features`` only when not
        the default, so contracts saved before they existed keep their fingerprint."""
        params = super().params()
        if self.source is None:
            params.pop("source")
        if self.features == "logmel":
            params.pop("features")
        return params

    @property
    def manifest_key(self) -> str:
        """``source`` when set, else the modality's name."""
        return self.source or self.name

    def check(self) -> None:
        """Validate parameters."""
        where = f"modalities.{self.name}.contract"
        if self.sample_rate < 1000:
            raise ConfigError(f"{where}.sample_rate", f"must be >= 1000 Hz, got {self.sample_rate}")
        if self.normalize not in ("utterance", "none"):
            raise ConfigError(f"{where}.normalize", "must be 'utterance' or 'none'")
        if self.hop_ms <= 0 or self.win_ms < self.hop_ms:
            raise ConfigError(f"{where}.win_ms", "needs win_ms >= hop_ms > 0")
        if self.f_max is not None and self.f_max > self.sample_rate / 2:
            raise ConfigError(f"{where}.f_max", "must not exceed sample_rate / 2")
        if self.features not in ("logmel", "whisper"):
            raise ConfigError(f"{where}.features", "must be 'logmel' or 'whisper'")
        if self.features == "whisper":
            self._check_whisper(where)

    def _check_whisper(self, where: str) -> None:
        for key, value in WHISPER_FRONT_END.items():
            if getattr(self, key) != value:
                raise ConfigError(
                    f"{where}.{key}",
                    f"Whisper features need {key} {value}, got {getattr(self, key)}",
                    hint=f"drop {key} from the contract (the whisper_base encoder sets it)",
                )
        if self.normalize != "none" or self.f_min != 0.0 or self.f_max is not None:
            raise ConfigError(
                f"{where}.normalize",
                "Whisper features are normalised as Whisper was trained",
                hint="drop normalize, f_min and f_max from the contract",
            )

    @property
    def n_fft(self) -> int:
        """FFT size: the window length rounded up to a power of two (Whisper's: 400)."""
        if self.features == "whisper":
            return 400
        return 1 << math.ceil(math.log2(self.sample_rate * self.win_ms / 1000))

    @property
    def hop_length(self) -> int:
        """Hop in samples."""
        return max(1, round(self.sample_rate * self.hop_ms / 1000))

    def load(
        self, value: Any, *, field: str | None = None, base_dir: Path | None = None
    ) -> np.ndarray:
        """Decode, validate, mix down and resample to `sample_rate`.

        Accepts a path, raw bytes, or a float array (taken to be at
        `sample_rate` already); with a ``source``, also a video file, whose soundtrack is
        read. Returns float32 mono ``(T,)``.

        Raises:
            AbsentInputError: a video (with ``source`` set) without an audio stream.
        """
        if isinstance(value, np.ndarray):
            return self._validate_wave(np.asarray(value, dtype=np.float32).reshape(-1), field, None)
        src = read_source(
            value, modality=self.name, field=field, base_dir=base_dir, max_bytes=self.max_bytes
        )
        if self.source is not None and src.kind in VIDEO_FORMATS:
            return self._soundtrack(src, field)
        wave, rate = decode_audio(
            src.data, max_seconds=self.max_seconds, name=self.name, field=field, path=src.path
        )
        mono = resample(to_mono(wave), rate, self.sample_rate)
        return self._validate_wave(mono, field, src.path)

    def _soundtrack(self, src: Source, field: str | None) -> np.ndarray:
        """The audio track of a video file at `sample_rate`."""
        wave = decode_soundtrack(
            src.data,
            sample_rate=self.sample_rate,
            max_seconds=self.max_seconds,
            name=self.name,
            field=field,
            path=src.path,
        )
        if wave is None:
            raise AbsentInputError(
                self.name,
                "the video has no audio track",
                field=field,
                path=src.path,
                hint="the audio modality counts as missing for this row",
            )
        return self._validate_wave(wave, field, src.path)

    def _validate_wave(self, wave: np.ndarray, field: str | None, path: Path | None) -> np.ndarray:
        if wave.size == 0:
            raise self.error("audio has zero length", field=field, path=path)
        if not np.isfinite(wave).all():
            bad = int((~np.isfinite(wave)).sum())
            raise self.error(
                f"audio contains {bad} NaN or infinite samples", field=field, path=path
            )
        if wave.size / self.sample_rate > self.max_seconds:
            raise self.error(
                f"audio is longer than max_seconds={self.max_seconds}", field=field, path=path
            )
        return wave.astype(np.float32, copy=False)

    def preprocess(self, obj: np.ndarray) -> Tensor:
        """Log-mel spectrogram: float ``(n_mels, frames)``."""
        wave = torch.from_numpy(np.ascontiguousarray(obj, dtype=np.float32))
        if self.features == "whisper":
            return whisper_log_mel(wave)
        n_fft, hop = self.n_fft, self.hop_length
        win = round(self.sample_rate * self.win_ms / 1000)
        if wave.numel() < n_fft:  # too short for one frame: pad with silence
            wave = torch.nn.functional.pad(wave, (0, n_fft - wave.numel()))
        spec = (
            torch.stft(
                wave,
                n_fft=n_fft,
                hop_length=hop,
                win_length=win,
                window=_hann(win),
                center=True,
                return_complex=True,
            )
            .abs()
            .pow(2)
        )  # (F, frames)
        fb = mel_filterbank(
            self.sample_rate, n_fft, self.n_mels, self.f_min, self.f_max or self.sample_rate / 2
        )
        logmel = torch.log(fb @ spec + 1e-6)  # (n_mels, frames)
        if self.normalize == "utterance":
            logmel = logmel - logmel.mean(dim=1, keepdim=True)
        return logmel

    def padded_length(self, x: Tensor) -> int:
        """Number of spectrogram frames."""
        return int(x.shape[-1])

    def noise(self, like: Tensor, rng: np.random.Generator) -> Tensor:
        """White, pink or brown noise at a random level (or near-silence), as log-mel
        with as many frames as ``like``."""
        frames = int(like.shape[-1])
        n = max(self.n_fft, (frames - 1) * self.hop_length)
        white = rng.standard_normal(n)
        colour = int(rng.integers(3))
        if colour:  # pink (1/f) or brown (1/f^2) by spectral shaping
            spec = np.fft.rfft(white)
            f = np.maximum(np.arange(spec.size), 1.0)
            white = np.fft.irfft(spec / f ** (0.5 * colour), n)
        wave = white / (np.sqrt(np.mean(white**2)) + 1e-12) * 10 ** rng.uniform(-4, -0.5)
        x = self.preprocess(wave.astype(np.float32))
        if x.shape[-1] < frames:
            x = torch.nn.functional.pad(x, (0, frames - x.shape[-1]))
        return x[..., :frames]

    def substitute(self, obj: np.ndarray, like: Tensor, rng: np.random.Generator) -> Tensor:
        """A random window of the wave (repeated when too short) as long as ``like``,
        normalised on its own like any input, as log-mel with as many frames."""
        frames = int(like.shape[-1])
        wave = window(
            np.asarray(obj, dtype=np.float32), max(self.n_fft, (frames - 1) * self.hop_length), rng
        )
        x = self.preprocess(wave)
        if x.shape[-1] < frames:
            x = torch.nn.functional.pad(x, (0, frames - x.shape[-1]))
        return x[..., :frames]

    def sample_view(self, batch: ModalityBatch, row: int) -> Tensor:
        """Row ``row`` cut to its frame length."""
        data = batch.data[row]
        return data if batch.lengths is None else data[..., : int(batch.lengths[row])]

    def collate(self, items: Sequence[Tensor], present: Tensor) -> ModalityBatch:
        """Pad spectrograms along time: ``(P, n_mels, T_max)`` with frame lengths."""
        data, lengths = pad_stack(items, dim=-1)
        return ModalityBatch(data=data, present=present, lengths=lengths)
