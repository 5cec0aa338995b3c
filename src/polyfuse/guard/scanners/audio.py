"""Audio scanner of the firewall: speech -> Whisper transcript (`polyfuse.guard.readers.asr`)
-> spoken forms rewritten as written ones -> text detectors -> findings with time ranges;
stretches that look like digits or an address and that no finding covers, and speech with
no words after words that name a number, are decoded a second time
(`polyfuse.guard.readers.second_pass`); a degenerate transcript is itself a
finding (`polyfuse.guard.detectors.transcript`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from polyfuse.core.errors import ConfigError
from polyfuse.guard.detectors.recognizers import RULES_VERSION, find_heard
from polyfuse.guard.detectors.transcript import TranscriptChecks
from polyfuse.guard.findings import Finding, Location, TextDetector, mask
from polyfuse.guard.models import SHARED_MODELS, ModelCache
from polyfuse.guard.readers.asr import (
    SAMPLE_RATE,
    TEMPERATURE_FALLBACK,
    AudioInput,
    load_audio,
    model_label,
    package_version,
    transcribe,
    whisper_model,
)
from polyfuse.guard.readers.second_pass import (
    Span,
    candidate_spans,
    redecode,
    splice,
    unheard_spans,
)
from polyfuse.guard.readers.spoken import NormalisedText, Word, normalise_spoken

#: Finding types that cover a stretch of each kind (a covered stretch is not decoded again).
SPAN_TYPES: dict[str, frozenset[str]] = {
    "digits": frozenset({"US_SSN", "CREDIT_CARD", "PHONE_NUMBER", "IBAN_CODE"}),
    "address": frozenset({"EMAIL_ADDRESS"}),
}


class SpokenScan(NamedTuple):
    """What `AudioScanner.analyse` found.

    Attributes:
        transcript: the first pass's normalised transcript.
        findings: findings of both passes, ordered by time (no transcript checks).
        redecoded: the stretches decoded a second time.
    """

    transcript: NormalisedText
    findings: list[Finding]
    redecoded: list[Span]


def _uncertain(
    span: Span,
    findings: Sequence[Finding],
    announced: Sequence[tuple[str, tuple[float, float]]],
) -> bool:
    """Whether ``span`` is worth decoding again: no finding of its kind covers it, or the
    words before it announce a type that no finding there has ("my social security
    number is" and a 10-digit phone number: an SSN heard with one digit too many)."""
    window = (span.start, span.end)
    if not _any_overlap(findings, SPAN_TYPES[span.kind], window):
        return True
    return any(
        t in SPAN_TYPES[span.kind]
        and _overlaps(seconds, window)
        and not _any_overlap(findings, frozenset({t}), window)
        for t, seconds in announced
    )


def _any_overlap(
    findings: Sequence[Finding], types: frozenset[str], window: tuple[float, float]
) -> bool:
    """Whether a finding of one of ``types`` overlaps ``window`` (seconds)."""
    return any(f.type in types and _overlaps(f.location.seconds, window) for f in findings)


def _overlaps(a: tuple[float, float] | None, b: tuple[float, float]) -> bool:
    return a is not None and a[0] <= b[1] and a[1] >= b[0]


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
        second_pass: decode stretches that look like digits or an address again when no
            finding covers them (`polyfuse.guard.readers.second_pass`).
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
        second_pass: bool = True,
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
        self.second_pass = second_pass
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
        samples = load_audio(audio, sr, max_seconds=self.max_seconds)
        words = self.words((samples, SAMPLE_RATE))
        return self.checks.check(words) + self.analyse_words(samples, words).findings

    def analyse(self, audio: AudioInput, sr: int | None = None) -> SpokenScan:
        """Both passes over ``audio``: the first pass's transcript, the findings of both
        passes and the stretches decoded again (no transcript checks; see `scan`)."""
        samples = load_audio(audio, sr, max_seconds=self.max_seconds)
        return self.analyse_words(samples, self.words((samples, SAMPLE_RATE)))

    def analyse_words(self, samples: np.ndarray, words: Sequence[Word]) -> SpokenScan:
        """Findings in the first pass's ``words`` of ``samples`` (16 kHz mono), plus the
        second pass's findings where a stretch that looks like digits or an address has
        none."""
        transcript = normalise_spoken(words)
        findings = self.findings_in(transcript)
        if not self.second_pass or not words:
            return SpokenScan(transcript, findings, [])
        duration = samples.size / SAMPLE_RATE
        announced = [
            (m.type, transcript.seconds_of((m.start, m.end))) for m in find_heard(transcript.text)
        ]
        spans = sorted(
            [
                *candidate_spans(words, duration),
                *unheard_spans(words, samples, SAMPLE_RATE),
            ],
            key=lambda s: s.start,
        )
        spans = [s for s in spans if _uncertain(s, findings, announced)]
        whisper = whisper_model(self.model, models=self.models)
        for span in spans:
            new = redecode(
                samples,
                span,
                whisper,
                models=self.models or SHARED_MODELS,
                beam_size=self.beam_size,
                language=self.language,
            )
            for f in self.findings_in(normalise_spoken(splice(words, span, new))):
                seconds = f.location.seconds or (0.0, 0.0)
                inside = _overlaps(seconds, (span.start, span.end))
                if inside and not _any_overlap(findings, frozenset({f.type}), seconds):
                    findings.append(_second(f))
            findings += self._still_announced(transcript, span, findings)
        findings.sort(key=lambda f: (f.location.seconds or (0.0, 0.0), f.type))
        return SpokenScan(transcript, findings, spans)

    def _still_announced(
        self, transcript: NormalisedText, span: Span, findings: Sequence[Finding]
    ) -> list[Finding]:
        """The heard-form findings of ``span`` whose type the words before it announce
        and that neither pass reported: "my social security number is" and a number
        that both passes read as a phone number is reported as both."""
        out: list[Finding] = []
        for m in find_heard(transcript.text):
            seconds = transcript.seconds_of((m.start, m.end))
            if (
                m.type in SPAN_TYPES[span.kind]
                and _overlaps(seconds, (span.start, span.end))
                and not _any_overlap([*findings, *out], frozenset({m.type}), seconds)
            ):
                raw = transcript.text[m.start : m.end]
                out.append(
                    Finding(
                        type=m.type,
                        score=m.score,
                        modality="audio",
                        location=Location(seconds=seconds, source="asr"),
                        detector=f"{self.name}+{m.rule}",
                        detector_version=f"{package_version('faster-whisper')}+{RULES_VERSION}",
                        snippet=mask(raw),
                        explanation=m.explanation + " (both passes read it as another type)",
                        text=raw,
                    )
                )
        return out

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


def _second(finding: Finding) -> Finding:
    """A second-pass finding, its explanation saying so; its span indexes the second
    pass's transcript, so it is dropped."""
    return dataclasses.replace(
        finding,
        location=dataclasses.replace(finding.location, span=None),
        explanation=finding.explanation + " (second decoding pass)",
    )
