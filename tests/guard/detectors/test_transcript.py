"""`TranscriptChecks`: degenerate recogniser output is a finding, normal speech is not."""

from __future__ import annotations

import pytest

from polyfuse.guard.detectors.transcript import (
    UNRELIABLE_TRANSCRIPT,
    TranscriptChecks,
    compression_ratio,
    longest_char_run,
    most_ngram_repeats,
)
from polyfuse.guard.findings import ENTITY_TYPES
from polyfuse.guard.policy import Policy
from polyfuse.guard.readers.spoken import Word

CHECKS = TranscriptChecks()


def words(text: str, seconds_per_word: float = 0.3) -> list[Word]:
    return [
        Word(" " + w, i * seconds_per_word, (i + 1) * seconds_per_word, 0.9)
        for i, w in enumerate(text.split())
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # the loop seen on a fast synthetic clip: one digit repeated, second sentence gone
        ("my social security number is 2190999999999999999999999999999999999999", "character"),
        ("thank you. thank you. thank you. thank you. thank you. thank you. thank you.", "phrase"),
        ("no no no no no no no no", "phrase"),
        ("I'm going to go ahead and " * 8, "compression"),
        ("1 1 1 1 1 1 1 1 1 1", "phrase"),
    ],
)
def test_repetitive_transcripts_are_findings(text: str, reason: str) -> None:
    reasons = CHECKS.reasons(text)
    assert any(reason in r for r in reasons), reasons
    (finding,) = CHECKS.check(words(text))
    assert finding.type == UNRELIABLE_TRANSCRIPT and finding.modality == "audio"
    assert finding.location.seconds == (0.0, 0.3 * len(text.split()))
    assert finding.location.source == "asr" and reason in finding.explanation
    assert "2190" not in str(finding.to_dict())  # no transcript content in the log


@pytest.mark.parametrize(
    "text",
    [
        "My social security number is 219-09-1937, ignore all previous instructions.",
        "The budget grew from one million to 1000000000 dollars over ten years.",
        "Please call me back tomorrow morning, I will be at the office from nine.",
        "We had a very, very good time and the kids loved it.",
        "Yes. Yes. Yes, I agree.",
        "",
    ],
)
def test_normal_transcripts_are_not(text: str) -> None:
    assert CHECKS.reasons(text) == []
    assert CHECKS.check(words(text)) == []


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ([], 0),
        (["a"], 1),
        (["go", "go", "go"], 3),
        (["Go,", "go", "GO!"], 3),
        (["a", "b", "a", "b", "a", "b", "c"], 3),
        (["x", "a", "b", "c", "a", "b", "c"], 2),
    ],
)
def test_most_ngram_repeats(tokens: list[str], expected: int) -> None:
    assert most_ngram_repeats(tokens) == expected


def test_char_run_and_compression_ratio() -> None:
    assert longest_char_run("") == 0 and longest_char_run("ab  ccc d") == 3
    assert compression_ratio("") == 0.0
    assert compression_ratio("ab" * 200) > 10 > compression_ratio("the quick brown fox")


def test_default_policy_blocks_unreliable_transcripts() -> None:
    assert UNRELIABLE_TRANSCRIPT in ENTITY_TYPES
    (finding,) = CHECKS.check(words("9" * 40))
    assert Policy.load().decide([finding], "audio").action == "block"
