"""Per-request quality gates: cheap checks on a loaded input before its encoder runs.

A dead microphone, a blank camera or keyboard mash must not steer an answer. Each
modality kind has one check (a small frozen config whose fields are its thresholds, plus
`QualityCheck.evaluate`) that reads the object a contract's ``load`` returns and says
whether it carries signal, as a typed `QualityVerdict`. A failing input is treated as a
missing modality: serving answers without it (``degraded``, reason ``low_quality``),
prediction and evaluation leave it out of the row, and training does the same, so the
fusion never learns from what serving would drop.

==========  ==============================================================================
kind        checks, in order (the first failure decides)
==========  ==============================================================================
audio       silence (RMS), clipping, flat (stuck) signal, then speech present (Silero VAD)
image       blank or uniform frame (pixel spread), saturated (almost all dark or bright)
text        empty, whitespace, few letters, a letter repeated at length, gibberish words
timeseries  flat channels (near-zero variance), clipped (long runs at a channel's min/max)
video       the image checks on every sampled frame: fails only when every frame fails
==========  ==============================================================================

The gate of a modality is configured as ``modalities.<name>.quality`` in the training
config (`polyfuse.core.config.QualityConfig`) and travels with the artifact.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

import numpy as np
from pydantic import Field, StrictBool, StrictInt
from pydantic.dataclasses import dataclass

from polyfuse.core.config import (
    MODEL_CONFIG,
    PositiveFloat,
    PositiveInt,
    QualityConfig,
    UnitFloat,
    YamlFloat,
    validate,
)
from polyfuse.core.errors import ConfigError, DependencyError
from polyfuse.core.registry import Registry
from polyfuse.modalities.base import ModalityContract

#: A grey level of an 8-bit image.
GreyLevel = Annotated[StrictInt, Field(ge=0, le=255)]

#: The degraded reason of a modality that failed its gate (serving, request log, metrics).
LOW_QUALITY = "low_quality"


@dataclasses.dataclass(frozen=True)
class QualityVerdict:
    """What a quality check found for one input.

    Attributes:
        ok: the input carries signal and goes to its encoder.
        check: the check that decided (``speech``, ``silence``, ``uniform`` ...), or
            ``passed`` when every check passed.
        reason: one line for people ("no speech: 0 ms of speech, needs 64 ms").
        score: the statistic the deciding check measured (its unit is in ``reason``);
            for a passed input, the last check's statistic.
    """

    ok: bool
    check: str
    reason: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return dataclasses.asdict(self)


def _fail(check: str, reason: str, score: float) -> QualityVerdict:
    return QualityVerdict(False, check, reason, float(score))


def _passed(reason: str, score: float) -> QualityVerdict:
    return QualityVerdict(True, "passed", reason, float(score))


class QualityCheck(ABC):
    """Base of the per-kind checks: frozen pydantic dataclasses whose fields are thresholds."""

    kind: ClassVar[str]

    @abstractmethod
    def evaluate(self, obj: Any, contract: ModalityContract) -> QualityVerdict:
        """Judge one loaded input (what ``contract.load`` returned)."""

    def to_dict(self) -> dict[str, Any]:
        """The parameters (what ``modalities.<name>.quality`` holds besides ``enabled``)."""
        data: dict[str, Any] = dataclasses.asdict(self)  # type: ignore[call-overload]
        return data

    @classmethod
    def from_params(cls, params: Mapping[str, Any], where: str) -> Self:
        """Validated from configured parameters; a bad one is a `ConfigError` at ``where``."""
        return validate(cls, dict(params), where)


QUALITY_CHECKS: Registry[QualityCheck] = Registry("quality check")


# ---- audio ----------------------------------------------------------------------------
class SpeechDetector:
    """Silero VAD: the ONNX model shipped inside the ``silero-vad`` wheel, run with
    onnxruntime directly (the package's own helpers would pull torchaudio).

    The session is created on first use and never pickled (a copy sent to a worker
    process loads its own).
    """

    #: Samples per VAD frame and context samples the model expects, by sample rate.
    FRAMES: ClassVar[dict[int, tuple[int, int]]] = {8000: (256, 32), 16000: (512, 64)}

    def __init__(self) -> None:
        self._session: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    @staticmethod
    def model_path() -> Path:
        """The ONNX file inside the installed ``silero-vad`` package (not imported: its
        ``__init__`` changes torch's thread count)."""
        import importlib.util

        feature = "the speech check of audio quality gates"
        spec = importlib.util.find_spec("silero_vad")
        if spec is None or not spec.submodule_search_locations:
            raise DependencyError("silero-vad", feature, "quality")
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"
        if not path.is_file():
            raise DependencyError("silero-vad", f"{feature} (its ONNX model file)", "quality")
        return path

    def _load(self) -> Any:
        with self._lock:
            if self._session is None:
                path = self.model_path()
                try:
                    import onnxruntime as ort
                except ImportError:
                    raise DependencyError(
                        "onnxruntime", "the speech check of the audio quality gate", "quality"
                    ) from None
                options = ort.SessionOptions()
                options.intra_op_num_threads = 1
                options.inter_op_num_threads = 1
                self._session = ort.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"]
                )
            return self._session

    def probabilities(self, wave: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
        """Speech probability per frame of a mono wave, and the frame length in seconds.

        Rates other than 8 and 16 kHz are resampled to 16 kHz with the one resampler.
        """
        if rate not in self.FRAMES:
            from polyfuse.modalities.readers.audio import resample

            wave, rate = resample(wave, rate, 16000), 16000
        session = self._session or self._load()
        size, context = self.FRAMES[rate]
        x = np.asarray(wave, dtype=np.float32).reshape(-1)
        x = np.pad(x, (0, size if x.size == 0 else (-x.size) % size))
        state = np.zeros((2, 1, 128), np.float32)
        last = np.zeros((1, context), np.float32)
        sr = np.array(rate, dtype=np.int64)
        out = np.empty(x.size // size, np.float32)
        for i in range(out.size):
            frame = np.concatenate([last, x[None, i * size : (i + 1) * size]], axis=1)
            prob, state = session.run(None, {"input": frame, "state": state, "sr": sr})
            last = frame[:, -context:]
            out[i] = prob[0, 0]
        return out, size / rate


@dataclass(config=MODEL_CONFIG, frozen=True)
class AudioQuality(QualityCheck):
    """Audio: silence, clipping and stuck signals first (cheap), then speech present.

    Attributes:
        silence_dbfs: RMS (after removing the mean) below this many dB full scale is
            silence; FSDD's quietest recording is -53 dBFS.
        clip_level: a sample at or above this magnitude counts as clipped.
        max_clipped: largest share of clipped samples.
        max_flat: largest share of samples equal to the one before (a stuck signal).
        speech: also require speech (Silero VAD; needs ``polyfuse[quality]``).
        vad_rate: the rate the VAD listens at (8000 or 16000; inputs are resampled).
            8 kHz, the telephone band, finds speech in narrow- and wide-band recordings
            alike: FSDD read at 16 kHz passes 99 % at 8 kHz, 93 % at 16 kHz.
        vad_threshold: a VAD frame is speech at or above this probability.
        min_speech_ms: the least speech, in milliseconds, an input must hold (frames are
            32 ms long).
    """

    kind: ClassVar[str] = "audio"

    silence_dbfs: YamlFloat = -60.0
    clip_level: UnitFloat = 0.99
    max_clipped: UnitFloat = 0.2
    max_flat: UnitFloat = 0.8
    speech: StrictBool = True
    vad_rate: Literal[8000, 16000] = 8000
    vad_threshold: UnitFloat = 0.5
    min_speech_ms: PositiveFloat = 64.0

    @property
    def detector(self) -> SpeechDetector:
        """The VAD of this check (one per check object, loaded on first use)."""
        found: SpeechDetector | None = self.__dict__.get("_detector")
        if found is None:
            found = self.__dict__["_detector"] = SpeechDetector()
        return found

    def evaluate(self, obj: Any, contract: ModalityContract) -> QualityVerdict:
        """Judge a mono float wave at the contract's sample rate."""
        wave = np.asarray(obj, dtype=np.float32).reshape(-1)
        rate = int(getattr(contract, "sample_rate", 16000))
        if wave.size < 2:
            return _fail("silence", "audio has fewer than 2 samples", 0.0)
        dbfs = 20 * math.log10(float(np.std(wave)) + 1e-12)
        if dbfs < self.silence_dbfs:
            return _fail("silence", f"silence: RMS {dbfs:.1f} dBFS < {self.silence_dbfs}", dbfs)
        clipped = float(np.mean(np.abs(wave) >= self.clip_level))
        if clipped > self.max_clipped:
            return _fail("clipped", f"clipped: {clipped:.0%} of samples at full scale", clipped)
        flat = float(np.mean(wave[1:] == wave[:-1]))
        if flat > self.max_flat:
            return _fail("flat", f"flat: {flat:.0%} of samples repeat the one before", flat)
        if not self.speech:
            return _passed(f"signal at {dbfs:.1f} dBFS", dbfs)
        if rate != self.vad_rate:
            from polyfuse.modalities.readers.audio import resample

            wave, rate = resample(wave, rate, self.vad_rate), self.vad_rate
        probs, frame_s = self.detector.probabilities(wave, rate)
        speech_ms = 1000 * frame_s * int(np.sum(probs >= self.vad_threshold))
        if speech_ms < self.min_speech_ms:
            reason = f"no speech: {speech_ms:.0f} ms of speech, needs {self.min_speech_ms:.0f} ms"
            return _fail("speech", reason, speech_ms)
        return _passed(f"{speech_ms:.0f} ms of speech", speech_ms)


# ---- image ----------------------------------------------------------------------------
@dataclass(config=MODEL_CONFIG, frozen=True)
class ImageQuality(QualityCheck):
    """Images: blank or uniform frames, and frames saturated almost entirely dark or bright.

    Statistics are taken on grey levels 0-255 of a subsampled copy (at most
    ``max_side`` pixels a side), so a large photo costs about as much as a small one.

    Attributes:
        min_std: a frame whose grey levels spread less than this (standard deviation) is
            uniform; "blank" when it is also near black or white. MNIST's flattest digit: 33.
        dark_level: grey levels at or below this are dark.
        bright_level: grey levels at or above this are bright.
        max_saturated: largest share of dark pixels, and of bright pixels (MNIST digits
            are up to 94 % black background).
        max_side: subsampling bound of the statistics.
    """

    kind: ClassVar[str] = "image"

    min_std: YamlFloat = 2.0
    dark_level: GreyLevel = 5
    bright_level: GreyLevel = 250
    max_saturated: UnitFloat = 0.98
    max_side: PositiveInt = 256

    def evaluate(self, obj: Any, contract: ModalityContract) -> QualityVerdict:
        """Judge a uint8 ``(H, W, C)`` image."""
        pixels = np.asarray(obj)
        step = max(1, math.ceil(max(pixels.shape[:2]) / self.max_side))
        grey = pixels[::step, ::step].astype(np.float32)
        grey = grey.mean(axis=2) if grey.ndim == 3 else grey
        std, mean = float(grey.std()), float(grey.mean())
        if std < self.min_std:
            blank = mean <= self.dark_level or mean >= self.bright_level
            check = "blank" if blank else "uniform"
            return _fail(check, f"{check}: grey levels spread {std:.2f} < {self.min_std}", std)
        dark = float(np.mean(grey <= self.dark_level))
        bright = float(np.mean(grey >= self.bright_level))
        worst = max(dark, bright)
        if worst > self.max_saturated:
            side = "dark" if dark >= bright else "bright"
            return _fail("saturated", f"saturated: {worst:.1%} of pixels {side}", worst)
        return _passed(f"grey levels spread {std:.1f}", std)


# ---- text -----------------------------------------------------------------------------
_VOWELS = frozenset("aeiouy")


def _latin(word: str) -> str:
    """The word's Latin letters without accents, lower-case ("" for other scripts)."""
    plain = unicodedata.normalize("NFKD", word.lower())
    return "".join(c for c in plain if "a" <= c <= "z")


def _longest_run(text: str) -> int:
    best = run = 0
    previous = ""
    for c in text:
        run = run + 1 if c == previous and c.isalpha() else 1
        previous = c
        best = max(best, run)
    return best


def _odd_word(letters: str, consonants: int) -> bool:
    """A Latin word that no language writes: no vowel, a long consonant cluster, or a
    letter three times in a row."""
    if not any(c in _VOWELS for c in letters):
        return True
    cluster = run = 0
    for c in letters:
        run = 0 if c in _VOWELS else run + 1
        cluster = max(cluster, run)
    return cluster >= consonants or _longest_run(letters) >= 3


@dataclass(config=MODEL_CONFIG, frozen=True)
class TextQuality(QualityCheck):
    """Text: empty, whitespace only, mostly non-letters, or gibberish.

    Gibberish is judged on Latin-script words of ``min_word`` letters or more (all-capital
    acronyms and other scripts are left alone, so the check tolerates any language): a
    word is odd without a vowel (y counts), with a cluster of ``max_consonants``
    consonants, or with a letter three times in a row.

    Attributes:
        min_letter_share: least share of letters among the non-space characters.
        max_repeat: longest run of one letter ("zzzzzz" is 6).
        min_word: letters a word needs to be judged.
        max_consonants: a consonant cluster this long makes a word odd ("asdkjh" has 5).
        max_odd_share: largest share of odd words among the judged ones.
    """

    kind: ClassVar[str] = "text"

    min_letter_share: UnitFloat = 0.25
    max_repeat: PositiveInt = 5
    min_word: PositiveInt = 3
    max_consonants: PositiveInt = 5
    max_odd_share: UnitFloat = 0.5

    def evaluate(self, obj: Any, contract: ModalityContract) -> QualityVerdict:
        """Judge a string."""
        text = str(obj)
        if not text:
            return _fail("empty", "empty text", 0.0)
        chars = [c for c in text if not c.isspace()]
        if not chars:
            return _fail("whitespace", "text is whitespace only", 0.0)
        letters = sum(c.isalpha() for c in chars) / len(chars)
        if letters < self.min_letter_share:
            return _fail("letters", f"few letters: {letters:.0%} of characters", letters)
        run = _longest_run(text)
        if run > self.max_repeat:
            return _fail("repeated", f"repeated characters: one letter {run} times in a row", run)
        judged = [
            w
            for w in (_latin(t) for t in text.split() if not (t.isupper() and len(t) > 1))
            if len(w) >= self.min_word
        ]
        odd = sum(_odd_word(w, self.max_consonants) for w in judged) / max(1, len(judged))
        if odd > self.max_odd_share:
            return _fail("gibberish", f"gibberish: {odd:.0%} of words are unpronounceable", odd)
        return _passed(f"{odd:.0%} odd words", odd)


# ---- time series ----------------------------------------------------------------------
def _longest_at(column: np.ndarray, value: float) -> int:
    """Longest run of consecutive steps equal to ``value``."""
    hit = np.concatenate([[0], (column == value).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(hit))
    return int((edges[1::2] - edges[::2]).max()) if edges.size else 0


@dataclass(config=MODEL_CONFIG, frozen=True)
class SeriesQuality(QualityCheck):
    """Time series: flat channels and clipped channels (long runs at the min or max).

    Attributes:
        min_std: a channel is flat when its standard deviation is below
            ``min_std * (1 + |mean|)``.
        max_flat_share: largest share of flat channels.
        max_clipped_run: longest run at a channel's minimum or maximum, as a share of the
            series length (BasicMotions: at most 4 %).
        min_steps: shorter series are not judged.
    """

    kind: ClassVar[str] = "timeseries"

    min_std: YamlFloat = 1e-6
    max_flat_share: UnitFloat = 0.5
    max_clipped_run: UnitFloat = 0.2
    min_steps: PositiveInt = 5

    def evaluate(self, obj: Any, contract: ModalityContract) -> QualityVerdict:
        """Judge a float ``(T, C)`` series (NaN steps are ignored)."""
        series = np.asarray(obj, dtype=np.float64)
        series = series[:, None] if series.ndim == 1 else series
        steps = series.shape[0]
        if steps < self.min_steps:
            return _passed(f"{steps} steps: too short to judge", 0.0)
        finite = np.where(np.isfinite(series), series, np.nan)
        with np.errstate(all="ignore"):
            std = np.nan_to_num(np.nanstd(finite, axis=0))
            mean = np.nan_to_num(np.nanmean(finite, axis=0))
        flat = std < self.min_std * (1 + np.abs(mean))
        share = float(flat.mean())
        if share > self.max_flat_share:
            return _fail("flat", f"flat: {int(flat.sum())} of {flat.size} channels", share)
        worst = 0.0
        for c in np.flatnonzero(~flat):
            column = finite[:, c]
            low, high = np.nanmin(column), np.nanmax(column)
            worst = max(worst, max(_longest_at(column, low), _longest_at(column, high)) / steps)
        if worst > self.max_clipped_run:
            return _fail("clipped", f"clipped: {worst:.0%} of steps stuck at a limit", worst)
        return _passed(f"longest run at a limit {worst:.0%}", worst)


@dataclass(config=MODEL_CONFIG, frozen=True)
class VideoQuality(ImageQuality):
    """Video: the image checks (same thresholds) on every sampled frame; the clip fails
    only when every frame fails (a dead or covered camera), with its first frame's reason.
    Frames between scenes may be blank; one frame with a picture is enough."""

    kind: ClassVar[str] = "video"

    def evaluate(self, obj: Any, contract: ModalityContract) -> QualityVerdict:
        """Judge a `VideoClip` (or a uint8 ``(T, H, W, C)`` array) frame by frame."""
        frames = getattr(obj, "frames", obj)
        verdicts = [super(VideoQuality, self).evaluate(f, contract) for f in frames]
        return next((v for v in verdicts if v.ok), verdicts[0])


for _check in (AudioQuality, ImageQuality, TextQuality, SeriesQuality, VideoQuality):
    QUALITY_CHECKS.register(_check.kind)(_check)


# ---- gates ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class QualityGate:
    """The check of one modality bound to its contract (the sample rate it loads at).

    Attributes:
        contract: the modality's contract.
        check: its kind's check with the configured thresholds.
    """

    contract: ModalityContract
    check: QualityCheck

    def __call__(self, obj: Any) -> QualityVerdict:
        """Judge one loaded input."""
        return self.check.evaluate(obj, self.contract)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (serving sends it to preprocessing workers with the contract)."""
        return {"kind": self.check.kind, "params": self.check.to_dict()}

    @classmethod
    def from_dict(cls, contract: ModalityContract, data: Mapping[str, Any]) -> QualityGate:
        """Rebuild from `to_dict`."""
        check_cls: Any = QUALITY_CHECKS.get(str(data["kind"]))
        where = f"modalities.{contract.name}.quality"
        return cls(contract, check_cls.from_params(data.get("params", {}), where))


def build_check(name: str, kind: str, config: QualityConfig | None) -> QualityCheck | None:
    """The check ``modalities.<name>.quality`` configures (None when off); unknown or bad
    parameters are a `ConfigError` naming the key."""
    if config is None or not config.enabled:
        return None
    where = f"modalities.{name}.quality"
    if kind not in QUALITY_CHECKS:
        raise ConfigError(where, f"no quality check for kind '{kind}'", hint="remove it")
    check_cls: Any = QUALITY_CHECKS.get(kind)
    check: QualityCheck = check_cls.from_params(config.params, where)
    return check


def build_gates(
    configs: Mapping[str, QualityConfig | None], contracts: Mapping[str, ModalityContract]
) -> dict[str, QualityGate]:
    """Modality name -> gate, for the modalities of ``contracts`` whose config turns one on."""
    gates = {}
    for name, contract in contracts.items():
        check = build_check(name, contract.kind, configs.get(name))
        if check is not None:
            gates[name] = QualityGate(contract, check)
    return gates


__all__ = [
    "LOW_QUALITY",
    "QUALITY_CHECKS",
    "AudioQuality",
    "ImageQuality",
    "QualityCheck",
    "QualityGate",
    "QualityVerdict",
    "SeriesQuality",
    "SpeechDetector",
    "TextQuality",
    "build_check",
    "build_gates",
]
