"""Is a speech transcript trustworthy? Degenerate recogniser output is itself a finding.

Whisper can fall into a decoding loop on fast or unclear speech ("2190999999...9") and
drop everything after it: a firewall that only runs its text detectors on such a
transcript answers ``allow`` for audio whose second sentence it never heard. The checks
here look at the *shape* of the transcript, not at what it says, with the same signals
Whisper's own decoder uses to reject a window:

- **compression ratio** (zlib, as in Whisper's ``compression_ratio_threshold``): text
  that compresses more than 2.4x is repetitive beyond natural speech;
- **a run of one character** longer than any written number or word has (16: "one
  billion" is ten characters);
- **an n-gram repeated back to back** (1 to 4 words, 6 times or more in a row).

Any of them yields one `UNRELIABLE_TRANSCRIPT` finding covering the transcript's time
range, which the default policy blocks.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from polyfuse.guard.findings import Finding, Location
from polyfuse.guard.readers.spoken import Word

#: Entity type of the finding.
UNRELIABLE_TRANSCRIPT = "UNRELIABLE_TRANSCRIPT"
#: Version of the checks (reported as the detector version).
CHECKS_VERSION = "1"


@dataclass(frozen=True)
class TranscriptChecks:
    """Thresholds of the degenerate-transcript checks.

    Attributes:
        max_compression_ratio: highest accepted zlib compression ratio (Whisper's 2.4).
        min_compress_chars: texts shorter than this skip the ratio check (zlib's header
            dominates short texts).
        max_char_run: longest accepted run of one non-space character.
        max_ngram_repeats: most back-to-back repetitions accepted of a 1- to 4-word n-gram.
    """

    max_compression_ratio: float = 2.4
    min_compress_chars: int = 60
    max_char_run: int = 16
    max_ngram_repeats: int = 5

    def reasons(self, text: str) -> list[str]:
        """Why ``text`` looks degenerate (empty when it does not)."""
        out: list[str] = []
        ratio = compression_ratio(text)
        if len(text) >= self.min_compress_chars and ratio > self.max_compression_ratio:
            out.append(f"compression ratio {ratio:.2f} > {self.max_compression_ratio}")
        run = longest_char_run(text)
        if run > self.max_char_run:
            out.append(f"one character repeated {run} times in a row")
        repeats = most_ngram_repeats(text.split())
        if repeats > self.max_ngram_repeats:
            out.append(f"a phrase repeated {repeats} times in a row")
        return out

    def check(self, words: Sequence[Word]) -> list[Finding]:
        """An `UNRELIABLE_TRANSCRIPT` finding when the recognised ``words`` look
        degenerate, else none."""
        text = "".join(w.text if w.text[:1].isspace() else " " + w.text for w in words).strip()
        reasons = self.reasons(text)
        if not reasons:
            return []
        seconds = (min(w.start for w in words), max(w.end for w in words))
        return [
            Finding(
                type=UNRELIABLE_TRANSCRIPT,
                score=1.0,
                modality="audio",
                location=Location(seconds=seconds, source="asr"),
                detector="transcript-checks",
                detector_version=CHECKS_VERSION,
                snippet="[transcript withheld]",
                explanation="the speech recogniser's output is degenerate ("
                + "; ".join(reasons)
                + "), so the speech was not reliably scanned",
            )
        ]


def compression_ratio(text: str) -> float:
    """``len(utf-8 bytes) / len(zlib-compressed bytes)`` (0 for empty text)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


_RUN = re.compile(r"(\S)\1*")


def longest_char_run(text: str) -> int:
    """Length of the longest run of one non-space character."""
    return max((len(m.group(0)) for m in _RUN.finditer(text)), default=0)


def most_ngram_repeats(tokens: Sequence[str], max_n: int = 4) -> int:
    """Most back-to-back repetitions of any 1- to ``max_n``-token n-gram (case and
    punctuation ignored): ``"go go go"`` is 3."""
    norm = [re.sub(r"\W", "", t.lower()) for t in tokens]
    best = 1 if norm else 0
    for n in range(1, max_n + 1):
        for start in range(n):
            count, prev = 0, None
            for i in range(start, len(norm) - n + 1, n):
                gram = tuple(norm[i : i + n])
                count = count + 1 if gram == prev else 1
                prev = gram
                best = max(best, count)
    return best
