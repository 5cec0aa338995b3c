"""Second decoding pass: stretches of a transcript that look like digits or an address,
decoded again on their own stretch of audio.

Whisper base hears synthetic voices' digit words as English words ("zero" -> "Nero",
"nine" -> "I'm") and drops or doubles digits in long runs, because the language model
behind it prefers words to digit strings. Decoding the same audio again, cut to the digits
and with every token that holds a letter suppressed, leaves it nothing to write but digits;
decoding an address-like stretch on its own (no sentence around it to pull it towards
ordinary words) sometimes brings the spoken "at" back.

`candidate_spans` finds the stretches in the first pass's words; `unheard_spans` finds
speech the first pass wrote no words for right after words that name a number ("my social
security number is" and the transcript ends: Whisper dropped the whole number);
`redecode` decodes one again; `splice` puts the new words in place of the old ones. The
audio scanner (`polyfuse.guard.scanners.audio.AudioScanner`) runs the pass only on
stretches that no finding of their kind covers, or whose finding contradicts the words
before them (a 10-digit "phone number" after "my social security number is"), and keeps
the second pass's findings beside the first's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from polyfuse.guard.models import ModelCache
from polyfuse.guard.readers.spoken import DIGIT_HOMOPHONES, DIGIT_WORDS, LISTED_HOMOPHONES, Word

__all__ = [
    "DIGIT_PAD_SECONDS",
    "Span",
    "candidate_spans",
    "letter_tokens",
    "redecode",
    "splice",
    "unheard_spans",
]

#: Seconds of audio kept on each side of a stretch (Whisper's word times are often a
#: tenth of a second or two early or late); never past the middle of the next word.
DIGIT_PAD_SECONDS = 0.4
#: Most other words between two digit words of one stretch ("3162 high and 2236": Whisper
#: wrote "nine" as two words).
MAX_GAP_WORDS = 2
#: Fewest digits (a digit word counts one) a stretch needs to be decoded again: the
#: shortest phone number (a local 7-digit one); shorter numbers are left to the first pass.
MIN_DIGITS = 7

_DOMAIN = re.compile(r"\w\.[a-z]{2,}\b|@", re.IGNORECASE)
#: Shortest stretch of speech with no words in the transcript (seconds) that is decoded
#: again after words naming a number: Whisper sometimes drops a whole spoken number ("my
#: social security humor is", then nothing).
MIN_UNHEARD_SECONDS = 0.8
#: Longest such stretch decoded (seconds): a number said digit by digit.
MAX_UNHEARD_SECONDS = 12.0
#: Words that name a number, in the last `_NAMING_WORDS` words before such a stretch.
_NUMBER_NAMES = re.compile(
    r"\b(?:social|security|ssn|s\.\s?s\.\s?n|sn|card|credit|debit|phone|mobile|cell|fax|"
    r"number|call|dial|reach)\b",
    re.IGNORECASE,
)
_NAMING_WORDS = 6
#: Frames (30 ms) of a stretch count as speech when their RMS reaches this share of the
#: clip's loud frames (90th percentile); a stretch needs `MIN_UNHEARD_SECONDS` / 2 of them.
SPEECH_LEVEL = 0.25


@dataclass(frozen=True)
class Span:
    """A stretch of first-pass words to decode again.

    Attributes:
        first: index of its first word.
        last: index of its last word (inclusive).
        kind: ``"digits"`` or ``"address"``.
        start: start of the audio window in seconds.
        end: end of the audio window in seconds.
    """

    first: int
    last: int  # first - 1 for speech the first pass wrote no words for (inserted there)
    kind: Literal["digits", "address"]
    start: float
    end: float


def _digit_weight(word: Word) -> int:
    """Digits a word stands for: its written digits, one for a digit word or homophone."""
    text = word.text.strip().lower().strip(".,?!;:")
    digits = sum(c.isdigit() for c in text)
    if digits:
        return digits
    if text in DIGIT_WORDS or text in DIGIT_HOMOPHONES:
        return 1
    # Whisper's listed letters for digits ("A.A." or "A." for "eight eight", "eight")
    pieces = word.text.strip().lower().rstrip(",?!;:").split(".")
    listed = (
        len(pieces) > 1 and pieces[-1] == "" and all(p in LISTED_HOMOPHONES for p in pieces[:-1])
    )
    return len(pieces) - 1 if listed else 0


def _window(words: Sequence[Word], first: int, last: int, duration: float) -> tuple[float, float]:
    start = words[first].start - DIGIT_PAD_SECONDS
    end = words[last].end + DIGIT_PAD_SECONDS
    if first > 0:
        prev = words[first - 1]
        start = max(start, (prev.start + prev.end) / 2)
    if last + 1 < len(words):
        nxt = words[last + 1]
        end = min(end, (nxt.start + nxt.end) / 2)
    return max(0.0, start), min(duration, end)


def candidate_spans(words: Sequence[Word], duration: float) -> list[Span]:
    """Stretches that look like digits (``MIN_DIGITS`` or more digits or digit words, up to
    ``MAX_GAP_WORDS`` other words between two of them) or like an address (a word with ``@`` or a
    domain ending such as ``name.com``)."""
    out: list[Span] = []
    i = 0
    while i < len(words):
        if _digit_weight(words[i]) == 0:
            i += 1
            continue
        last, total, j = i, _digit_weight(words[i]), i + 1
        while j < len(words):
            if _digit_weight(words[j]):
                last, total = j, total + _digit_weight(words[j])
            elif not any(_digit_weight(w) for w in words[j + 1 : j + 1 + MAX_GAP_WORDS]):
                break
            j += 1
        if total >= MIN_DIGITS:
            out.append(Span(i, last, "digits", *_window(words, i, last, duration)))
        i = last + 1
    for k, word in enumerate(words):
        if _DOMAIN.search(word.text) and not any(s.first <= k <= s.last for s in out):
            first = max(0, k - 2)  # the local part is often heard as separate words
            out.append(Span(first, k, "address", *_window(words, first, k, duration)))
    return sorted(out, key=lambda s: s.start)


def _speech_seconds(samples: np.ndarray, start: float, end: float, sample_rate: int) -> float:
    """Seconds of ``samples[start:end]`` loud enough to be speech (`SPEECH_LEVEL`)."""
    frame = int(0.03 * sample_rate)
    n = samples.size // frame
    if n == 0:
        return 0.0
    rms = np.sqrt(np.mean(samples[: n * frame].reshape(n, frame) ** 2, axis=1))  # (n,)
    level = SPEECH_LEVEL * float(np.percentile(rms, 90))
    first, last = int(start * sample_rate) // frame, int(end * sample_rate) // frame
    return float(np.sum(rms[first:last] >= level)) * frame / sample_rate if level > 0 else 0.0


def unheard_spans(
    words: Sequence[Word], samples: np.ndarray, sample_rate: int = 16_000
) -> list[Span]:
    """Speech the first pass wrote no words for, right after words that name a number
    ("my social security number is" and the transcript ends, or the next word starts
    seconds later): a digit stretch to decode, inserted after the naming words.

    A stretch is the time between a word and the next (or the end of the audio), at
    least `MIN_UNHEARD_SECONDS` long (at most `MAX_UNHEARD_SECONDS` of it is decoded),
    with number names (`_NUMBER_NAMES`) in the `_NAMING_WORDS` words before it, no digit
    among them after the last name, and half of `MIN_UNHEARD_SECONDS` of speech-loud
    frames in it.
    """
    duration = samples.size / sample_rate
    out: list[Span] = []
    for i, word in enumerate(words):
        start = word.end
        end = words[i + 1].start if i + 1 < len(words) else duration
        if end - start < MIN_UNHEARD_SECONDS:
            continue
        before = " ".join(w.text.strip() for w in words[max(0, i + 1 - _NAMING_WORDS) : i + 1])
        names = list(_NUMBER_NAMES.finditer(before))
        if not names or any(c.isdigit() for c in before[names[-1].end() :]):
            continue
        end = min(end, start + MAX_UNHEARD_SECONDS)
        if _speech_seconds(samples, start, end, sample_rate) >= MIN_UNHEARD_SECONDS / 2:
            out.append(Span(i + 1, i, "digits", start, end))
    return out


def letter_tokens(whisper: Any, models: ModelCache) -> list[int]:
    """Ids of the Whisper tokens that hold anything but digits, spaces and ``-,.``
    (what the digit pass suppresses), computed once per model."""

    def build() -> list[int]:
        tokenizer = whisper.hf_tokenizer
        eot = int(tokenizer.token_to_id("<|endoftext|>"))
        return [i for i in range(eot) if re.search(r"[^\d\s.,-]", tokenizer.decode([i]))]

    return models.get(("whisper-letter-tokens", id(whisper)), build)


def redecode(
    samples: np.ndarray,
    span: Span,
    whisper: Any,
    *,
    models: ModelCache,
    sample_rate: int = 16_000,
    beam_size: int = 5,
    language: str | None = "en",
) -> list[Word]:
    """The words of ``span``'s audio window decoded again (digits only for a digit
    span), spread evenly over the window (the pass decodes without timestamps)."""
    window = samples[int(span.start * sample_rate) : int(span.end * sample_rate)]  # (T,)
    if window.size < sample_rate // 10:
        return []
    options: dict[str, Any] = {}
    if span.kind == "digits":
        options["suppress_tokens"] = [-1, *letter_tokens(whisper, models)]
    segments, _info = whisper.transcribe(
        window,
        language=language,
        beam_size=beam_size,
        temperature=0.0,
        without_timestamps=True,
        condition_on_previous_text=False,
        max_new_tokens=int(12 * (span.end - span.start)) + 8,
        **options,
    )
    texts = " ".join(seg.text for seg in segments).split()
    step = (span.end - span.start) / max(1, len(texts))
    return [
        Word(" " + t, span.start + k * step, span.start + (k + 1) * step)
        for k, t in enumerate(texts)
    ]


def splice(words: Sequence[Word], span: Span, new: Sequence[Word]) -> list[Word]:
    """``words`` with ``span``'s words replaced by ``new``."""
    return [*words[: span.first], *new, *words[span.last + 1 :]]
