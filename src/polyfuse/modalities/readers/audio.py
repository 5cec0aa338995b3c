"""Audio: one soundfile decoder and one resampler for the model, the firewall and serving.

The duration is checked from the file header before decoding (where the format records
it), the decoded samples are checked for NaN/infinity, channels are averaged to mono, and
`resample` (polyphase, anti-aliased) brings every signal to the rate its reader needs.
"""

from __future__ import annotations

import io
import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from polyfuse.core.errors import DependencyError, InvalidInputError
from polyfuse.modalities.readers.formats import describe, sniff

#: Encoded formats the audio decoder reads (all through libsndfile).
AUDIO_FORMATS = frozenset({"wav", "flac", "ogg", "mp3"})
#: Largest numerator or denominator of a resampling ratio (44.1 kHz <-> 16 kHz is 160/441).
MAX_RATIO_TERM = 1000

FloatArray = NDArray[np.float32]
_STREAM_REPR = re.compile(r"<_io\.\w+ object at 0x[0-9a-f]+>")


def _soundfile() -> Any:
    try:
        import soundfile
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyError("soundfile", "audio decoding", "audio") from exc
    return soundfile


def _bad(
    name: str,
    reason: str,
    *,
    field: str | None = None,
    path: Path | str | None = None,
    hint: str | None = None,
) -> InvalidInputError:
    reason = _STREAM_REPR.sub("the input", reason).replace("\n", " ")  # libsndfile's wording
    return InvalidInputError(
        name, reason, field=field, path=None if path is None else os.fspath(path), hint=hint
    )


def check_duration(
    frames: int,
    rate: int,
    max_seconds: float | None,
    *,
    name: str = "audio",
    field: str | None = None,
    path: Path | str | None = None,
) -> None:
    """Refuse empty audio and audio longer than ``max_seconds``."""
    if frames <= 0:
        raise _bad(name, "the audio is empty (zero length)", field=field, path=path)
    seconds = frames / rate
    if max_seconds is not None and seconds > max_seconds:
        raise _bad(
            name,
            f"{seconds:.1f} s of audio is longer than the limit of {max_seconds:g} s (max_seconds)",
            field=field,
            path=path,
            hint="split the audio into shorter clips or raise max_seconds",
        )


def decode_audio(
    data: bytes,
    *,
    max_seconds: float | None,
    name: str = "audio",
    field: str | None = None,
    path: Path | str | None = None,
) -> tuple[FloatArray, int]:
    """Decode WAV, FLAC, OGG or MP3 bytes: float32 ``(frames, channels)`` and the file's rate.

    Raises:
        InvalidInputError: not an audio format, unreadable, empty, too long, or NaN samples.
    """
    where: dict[str, Any] = {"field": field, "path": path}
    fmt = sniff(bytes(data[:64])) if data else None
    if fmt not in AUDIO_FORMATS:
        raise _bad(
            name,
            "cannot decode audio: not a readable audio file "
            f"({'empty input' if not data else 'content is ' + describe(fmt)}, "
            "not WAV, FLAC, OGG or MP3 audio)",
            hint="use WAV, FLAC, OGG or MP3",
            **where,
        )
    sf = _soundfile()
    try:  # one open for the header and the samples (a second one cost as much again)
        handle = sf.SoundFile(io.BytesIO(bytes(data)))
        frames, rate = int(handle.frames), int(handle.samplerate)
    except Exception as exc:  # libsndfile reports malformed input in several exception types
        raise _bad(
            name, f"cannot decode audio: not a readable audio file ({exc})", **where
        ) from exc
    with handle:
        if rate <= 0:
            raise _bad(name, f"cannot decode audio: the header gives sample rate {rate}", **where)
        if 0 < frames < 2**62:  # some formats do not know their length until decoded
            check_duration(frames, rate, max_seconds, name=name, **where)
        try:
            wave = handle.read(dtype="float32", always_2d=True)
        except Exception as exc:  # see above
            raise _bad(
                name, f"cannot decode audio: the data is unreadable ({exc})", **where
            ) from exc
    check_duration(int(wave.shape[0]), int(rate), max_seconds, name=name, **where)
    if not np.all(np.isfinite(wave)):
        raise _bad(name, "the decoded samples contain NaN or infinity", **where)
    return np.asarray(wave, dtype=np.float32), int(rate)


def samples_from_array(
    samples: Any, rate: Any, *, max_seconds: float | None, name: str = "audio"
) -> FloatArray:
    """Validated float32 ``(frames,)`` or ``(frames, channels)`` from in-memory samples.

    Integer samples are scaled to [-1, 1]; ``(channels, frames)`` with at most 8 channels
    is transposed.

    Raises:
        InvalidInputError: a bad rate, a non-numeric or wrongly shaped array, NaN samples,
            empty or too long audio.
    """
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or rate <= 0:
        raise _bad(
            name, f"sample rate must be a positive integer, got {rate!r}", hint="pass (x, 16000)"
        )
    x = np.asarray(samples)
    if x.dtype.kind not in "fiu" or x.ndim not in (1, 2):
        raise _bad(
            name,
            f"samples must be a 1-D or 2-D numeric array, got dtype {x.dtype} shape {x.shape}",
            hint="pass mono samples (frames,) or (frames, channels)",
        )
    if x.ndim == 2 and x.shape[1] > 8 >= x.shape[0]:
        x = x.T  # (channels, frames) -> (frames, channels)
    if x.ndim == 2 and x.shape[1] > 8:
        raise _bad(
            name, f"cannot tell frames from channels in shape {x.shape}", hint="(frames, channels)"
        )
    check_duration(x.shape[0], int(rate), max_seconds, name=name)
    if x.dtype.kind == "u":
        half = 2.0 ** (8 * x.dtype.itemsize - 1)
        x = (x.astype(np.float64) - half) / half
    elif x.dtype.kind == "i":
        x = x.astype(np.float64) / 2.0 ** (8 * x.dtype.itemsize - 1)
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise _bad(name, "samples contain NaN or infinity")
    return x


def to_mono(wave: NDArray[Any]) -> FloatArray:
    """Average ``(frames, channels)`` to float32 ``(frames,)``; 1-D input passes through."""
    mono = wave.mean(axis=1) if wave.ndim == 2 else wave
    return np.ascontiguousarray(mono, dtype=np.float32)


def resample(wave: NDArray[Any], from_rate: int, to_rate: int) -> FloatArray:
    """Polyphase resampling (anti-aliased) of a mono float signal, float32 ``(T',)``.

    The ratio ``to_rate / from_rate`` is used exactly when both of its terms are at most
    `MAX_RATIO_TERM` (every common rate pair) and approximated otherwise.

    Raises:
        InvalidInputError: the rates are too far apart to resample (an absurd header).
    """
    if from_rate == to_rate:
        return np.ascontiguousarray(wave, dtype=np.float32)
    try:
        from scipy.signal import resample_poly
    except ImportError as exc:  # pragma: no cover
        raise DependencyError("scipy", "audio resampling", "audio") from exc
    ratio = Fraction(to_rate, from_rate).limit_denominator(MAX_RATIO_TERM)
    if ratio.numerator == 0 or ratio.numerator > MAX_RATIO_TERM:
        raise _bad(
            "audio",
            f"a sample rate of {from_rate} Hz is too far from {to_rate} Hz to resample",
            hint="check the file header; resample the audio first",
        )
    out = resample_poly(wave, ratio.numerator, ratio.denominator)
    return np.ascontiguousarray(out, dtype=np.float32)
