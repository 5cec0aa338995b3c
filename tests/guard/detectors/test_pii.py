"""`TextPII`: findings, spans, masking, overlap resolution; the Presidio/spaCy part is
marked ``integration`` and builds the analyzer once for the module."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyfuse.core.errors import ConfigError, InvalidInputError
from polyfuse.guard.detectors.pii import SUPPORTED_ENTITIES, Candidate, TextPII, resolve_overlaps
from polyfuse.guard.detectors.recognizers import RULES_VERSION, luhn_valid
from polyfuse.guard.findings import Finding

SAMPLE = (
    "SSN 536-22-1234, card 4111 1111 1111 1111, call 212-555-0147, "
    "mail john.smith@example.com, IBAN DE89 3704 0044 0532 0130 00, ip 192.168.0.1"
)


@pytest.fixture(scope="module")
def rules() -> TextPII:
    """Pure-Python detector (no spaCy)."""
    return TextPII(use_ner=False)


def by_type(findings: list[Finding], text: str) -> dict[str, str]:
    return {f.type: text[f.location.span[0] : f.location.span[1]] for f in findings}


# ------------------------------------------------------------------ configuration


def test_bad_configuration_raises_typed_errors() -> None:
    with pytest.raises(ConfigError, match="unknown entity") as exc:
        TextPII(entities=["SSN"])
    assert exc.value.hint and "US_SSN" in exc.value.hint
    with pytest.raises(ConfigError, match="outside"):
        TextPII(score_threshold=1.5)
    with pytest.raises(ConfigError, match="language"):
        TextPII(language="de")
    with pytest.raises(ConfigError, match="XX") as exc:
        TextPII(phone_regions=["US", "XX"])
    assert exc.value.key == "phone_regions"
    with pytest.raises(ConfigError, match="no region"):
        TextPII(phone_regions=[])


def test_non_string_input(rules: TextPII) -> None:
    with pytest.raises(InvalidInputError, match="expected a str") as exc:
        rules.detect(b"bytes")  # type: ignore[arg-type]
    assert exc.value.hint


def test_empty_text(rules: TextPII) -> None:
    assert rules.detect("") == []
    assert rules.detect("   \n") == []


# ------------------------------------------------------------------ rules only


def test_each_validated_type_with_span(rules: TextPII) -> None:
    found = by_type(rules.detect(SAMPLE), SAMPLE)
    assert found == {
        "US_SSN": "536-22-1234",
        "CREDIT_CARD": "4111 1111 1111 1111",
        "PHONE_NUMBER": "212-555-0147",
        "EMAIL_ADDRESS": "john.smith@example.com",
        "IBAN_CODE": "DE89 3704 0044 0532 0130 00",
        "IP_ADDRESS": "192.168.0.1",
    }


def test_finding_fields_and_masking(rules: TextPII) -> None:
    findings = rules.detect(SAMPLE, source="ocr")
    assert findings
    for f in findings:
        raw = SAMPLE[f.location.span[0] : f.location.span[1]]
        assert f.modality == "text"
        assert f.location.source == "ocr"
        assert f.text == raw
        assert raw not in f.snippet
        assert len(f.snippet) == len(raw)
        assert f.detector.startswith("polyfuse.")
        assert f.detector_version == RULES_VERSION
        assert f.explanation
        assert 0.4 <= f.score <= 1.0
        serialised = json.dumps(f.to_dict())
        assert raw not in serialised
        assert "text" not in f.to_dict()


def test_entities_and_threshold_filter(rules: TextPII) -> None:
    only = TextPII(entities=["EMAIL_ADDRESS"], use_ner=False)
    assert [f.type for f in only.detect(SAMPLE)] == ["EMAIL_ADDRESS"]
    strict = TextPII(score_threshold=0.99, use_ner=False)
    assert {f.type for f in strict.detect(SAMPLE)} == {"CREDIT_CARD", "EMAIL_ADDRESS", "IBAN_CODE"}


def test_negatives_not_found(rules: TextPII) -> None:
    text = (
        "card 4111 1111 1111 1112, SSN 000-12-3456, SSN 666-12-3456, "
        "IBAN GB82WEST12345698765431, ip 999.1.1.1, I looked at the dot com"
    )
    assert rules.detect(text) == []


def test_ocr_and_asr_style_text(rules: TextPII) -> None:
    text = "my social security number is 536 22 1234 and card 4111 1111 1111 1111"
    assert by_type(rules.detect(text), text) == {
        "US_SSN": "536 22 1234",
        "CREDIT_CARD": "4111 1111 1111 1111",
    }
    spoken = "you can email me at john dot smith at example dot com thanks"
    (f,) = rules.detect(spoken)
    assert f.type == "EMAIL_ADDRESS"
    assert spoken[f.location.span[0] : f.location.span[1]] == "john dot smith at example dot com"


def test_heard_forms_only_in_speech_transcripts(rules: TextPII) -> None:
    text = "what is the limit for card 4454 7451139 0933"  # 15 digits, Luhn fails
    assert rules.detect(text) == []
    (f,) = rules.detect(text, source="asr")
    assert (f.type, f.text, f.location.source) == ("CREDIT_CARD", "4454 7451139 0933", "asr")
    assert f.score == 0.6 and "mishear" in f.explanation
    valid = "card 4111 1111 1111 1111"  # a valid number keeps its validated finding
    (v,) = rules.detect(valid, source="asr")
    assert v.score == 1.0 and v.detector == "polyfuse.luhn"


def test_other_rule_types(rules: TextPII) -> None:
    text = (
        "I was born on March 3, 1985. My driver's license number is F162823540116. "
        "passport number C03005988. key: AKIAIOSFODNN7EXAMPLE"
    )
    assert by_type(rules.detect(text), text) == {
        "DATE_OF_BIRTH": "March 3, 1985",
        "US_DRIVER_LICENSE": "F162823540116",
        "US_PASSPORT": "C03005988",
        "SECRET": "AKIAIOSFODNN7EXAMPLE",
    }


@given(
    body=st.text(alphabet="0123456789", min_size=15, max_size=15).filter(lambda s: len(set(s)) > 1),
    prefix=st.text(alphabet="abc ", max_size=10),
)
@settings(max_examples=40, deadline=None)
def test_any_luhn_valid_visa_found_exactly(body: str, prefix: str) -> None:
    number = "4" + body[:14]
    number += next(d for d in "0123456789" if luhn_valid(number + d))
    text = f"{prefix} card {number} end"
    findings = TextPII(entities=["CREDIT_CARD"], use_ner=False).detect(text)
    assert [(f.text, f.snippet.endswith(number[-2:])) for f in findings] == [(number, True)]
    assert number not in findings[0].snippet


# ------------------------------------------------------------------ overlap resolution


def cand(
    s: int, e: int, t: str, score: float, det: str = "polyfuse.x", v: bool = True
) -> Candidate:
    return Candidate(s, e, t, score, f"{det} fired", det, "1", v)


def test_same_type_overlaps_merge_to_union() -> None:
    out = resolve_overlaps(
        [cand(0, 10, "PERSON", 0.85, "presidio", False), cand(5, 15, "PERSON", 0.6, "other")]
    )
    assert len(out) == 1
    assert (out[0].start, out[0].end) == (0, 15)
    assert out[0].validated  # one of the merged candidates was validated
    assert "also found by" in out[0].explanation


def test_a_heard_address_outranks_the_name_spacy_sees_in_it() -> None:
    out = resolve_overlaps(
        [
            cand(0, 24, "PERSON", 0.85, "presidio", v=False),
            cand(0, 24, "EMAIL_ADDRESS", 0.5, "polyfuse.heard", v=False),
        ]
    )
    assert [c.type for c in out] == ["EMAIL_ADDRESS"]


def test_different_types_keep_validated_then_higher_score() -> None:
    out = resolve_overlaps(
        [
            cand(0, 11, "US_SSN", 0.85),
            cand(0, 11, "PERSON", 0.9, "presidio", v=False),
            cand(20, 30, "PHONE_NUMBER", 0.55),
            cand(22, 30, "US_DRIVER_LICENSE", 0.85),
            cand(40, 45, "LOCATION", 0.85, "presidio", v=False),
        ]
    )
    assert [(c.type, c.start) for c in out] == [
        ("US_SSN", 0),
        ("US_DRIVER_LICENSE", 22),
        ("LOCATION", 40),
    ]


def test_overlapping_findings_never_returned(rules: TextPII) -> None:
    text = "My driver's license number is 2270-66-1551, phone 212-555-0147"
    findings = rules.detect(text)
    assert by_type(findings, text) == {
        "US_DRIVER_LICENSE": "2270-66-1551",
        "PHONE_NUMBER": "212-555-0147",
    }
    spans = sorted(f.location.span for f in findings if f.location.span)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


# ------------------------------------------------------------------ with Presidio / spaCy


@pytest.fixture(scope="module")
def full() -> TextPII:
    pytest.importorskip("presidio_analyzer")
    detector = TextPII()
    _ = detector.analyzer  # build (and cache) once for the module
    return detector


@pytest.mark.integration
def test_person_and_location(full: TextPII) -> None:
    text = "Yesterday John Smith flew from Paris to Berlin."
    found = [(f.type, f.text, f.detector) for f in full.detect(text)]
    assert ("PERSON", "John Smith", "presidio") in found
    assert {t for t, _, _ in found} == {"PERSON", "LOCATION"}
    person = next(f for f in full.detect(text) if f.type == "PERSON")
    assert person.detector_version.startswith("presidio-analyzer")
    assert "spaCy" in person.explanation
    assert "John" not in person.snippet


@pytest.mark.integration
def test_full_detector_merges_presidio_and_rules(full: TextPII) -> None:
    text = f"Jane Doe here. {SAMPLE}"
    findings = full.detect(text)
    offset = len("Jane Doe here. ")
    got = by_type(findings, text)
    assert got["PERSON"] == "Jane Doe"
    assert got["US_SSN"] == "536-22-1234"
    assert got["CREDIT_CARD"] == "4111 1111 1111 1111"
    card = next(f for f in findings if f.type == "CREDIT_CARD")
    assert card.location.span == (offset + 22, offset + 41)
    assert card.detector == "polyfuse.luhn"  # validated rule ranks first
    assert "presidio" in card.explanation  # Presidio's duplicate was merged in
    assert sum(f.type == "CREDIT_CARD" for f in findings) == 1
    for f in findings:
        assert f.text not in json.dumps(f.to_dict())


@pytest.mark.integration
def test_analyzer_shared_between_instances(full: TextPII) -> None:
    other = TextPII(entities=["PERSON"])
    assert other.analyzer is full.analyzer


@pytest.mark.integration
def test_supported_entities_reported_by_full_detector(full: TextPII) -> None:
    assert set(SUPPORTED_ENTITIES) >= {f.type for f in full.detect(SAMPLE)}


@pytest.mark.integration
def test_no_network_during_detection(full: TextPII, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access during detection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    text = "Mail bob@example.co.uk or see https://www.example.org, Bob lives in Rome."
    assert "EMAIL_ADDRESS" in {f.type for f in full.detect(text)}


@pytest.mark.integration
def test_presidio_logs_no_input_at_debug(full: TextPII, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from polyfuse.guard.detectors.pii import PRESIDIO_LOGGERS

    secret = "Maria Gonzalez lives in Lisbon, mail maria.g@example.org"
    with caplog.at_level(logging.DEBUG):  # what `polyfuse -v` sets on the root logger
        TextPII().detect(secret)
        full.detect(secret)
    assert all(logging.getLogger(n).level == logging.WARNING for n in PRESIDIO_LOGGERS)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not any(part in logged for part in ("Maria", "Lisbon", "example.org")), logged
