"""Audio scanner of the firewall: speech -> Whisper transcript (`polyfuse.guard.readers.asr`)
-> spoken forms rewritten as written ones -> text detectors -> findings with time ranges;
a degenerate transcript is itself a finding (`polyfuse.guard.detectors.transcript`)."""

from __future__ import annotations

from collections.abc import Sequence

from polyfuse.core.errors import ConfigError
from polyfuse.guard.detectors.transcript import TranscriptChecks
from polyfuse.guard.findings import Finding, Location, TextDetector, mask
from polyfuse.guard.models import ModelCache
from polyfuse.guard.readers.asr import (
    TEMPERATURE_FALLBACK,
    AudioInput,
    model_label,
    package_version,
    transcribe,
)
from polyfuse.guard.readers.spoken import NormalisedText, Word, normalise_spoken


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
        self.name = model_label(model)

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
        asr_version = package_version("faster-whisper")
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
