"""Finding serialisation, masking, the policy and text redaction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyfuse.core.errors import ConfigError
from polyfuse.guard.findings import Finding, Location, mask
from polyfuse.guard.policy import DEFAULT_POLICY, Policy
from polyfuse.guard.redact.text import redact_text


def _finding(type_: str, score: float = 0.9, span: tuple[int, int] = (0, 4)) -> Finding:
    return Finding(type_, score, "text", Location(span=span), "t", "1", "****", "", "1234")


def test_mask_keeps_separators_and_last_characters() -> None:
    assert mask("219-09-1937") == "***-**-**37"
    assert mask("john@example.com") == "****@*******.*om"
    assert mask("ab") == "**"  # too short to show anything
    assert mask("4111 1111 1111 1111", keep=4) == "**** **** **** 1111"


def test_finding_json_has_no_raw_text() -> None:
    f = Finding(
        "US_SSN",
        0.85,
        "audio",
        Location(span=(3, 14), seconds=(1.23456, 2.5), source="asr"),
        "d",
        "1",
        mask("219-09-1937"),
        "valid SSN",
        "219-09-1937",
    )
    d = f.to_dict()
    assert d["location"] == {"source": "asr", "span": [3, 14], "seconds": [1.235, 2.5]}
    assert "219-09-1937" not in json.dumps(d) and d["snippet"] == "***-**-**37"


def test_policy_rules_overrides_thresholds_and_strictest_action() -> None:
    policy = Policy.from_dict(
        {
            "default": {"action": "flag", "threshold": 0.5},
            "entities": {
                "US_SSN": "redact",
                "PROMPT_INJECTION": {"action": "block", "threshold": 0.8},
            },
            "modalities": {"audio": {"US_SSN": "block"}},
        }
    )
    d = policy.decide([_finding("US_SSN"), _finding("PERSON")], "text")
    assert d.action == "redact" and [a for _, a in d.findings] == ["redact", "flag"]
    assert policy.decide([_finding("US_SSN")], "audio").action == "block"
    low = policy.decide([_finding("PROMPT_INJECTION", 0.7), _finding("PERSON", 0.4)], "text")
    assert low.action == "allow" and low.findings == []  # both under their thresholds
    assert policy.decide([], "image").action == "allow"
    assert len(policy.digest) == 16 and policy.digest != Policy.load().digest


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"entities": {"X": "delete"}}, "policy.entities.X.action"),
        ({"entities": {"X": {"action": "flag", "threshold": 2}}}, "policy.entities.X.threshold"),
        ({"modalities": {"smell": {}}}, "policy.modalities.smell"),
        ({"version": 9}, "policy.version"),
        ({"rules": {}}, "policy"),
        ({"pii": {"phone_regions": ["XX"]}}, "policy.pii.phone_regions"),
        ({"pii": {"phone_regions": []}}, "policy.pii.phone_regions"),
    ],
)
def test_policy_errors_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        Policy.from_dict(data)
    assert err.value.key == key


def test_policy_file_round_trip(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(DEFAULT_POLICY))
    assert Policy.load(path).digest == Policy.load().digest
    with pytest.raises(ConfigError):
        Policy.load(tmp_path / "missing.yaml")


def test_policy_phone_regions_default_and_override() -> None:
    from polyfuse.guard.detectors.recognizers import DEFAULT_PHONE_REGIONS

    assert Policy.load().phone_regions == DEFAULT_PHONE_REGIONS
    assert Policy.from_dict({"pii": {"phone_regions": ["gb", "SE", "GB"]}}).phone_regions == (
        "GB",
        "SE",
    )


def test_redact_text_replaces_and_merges_spans() -> None:
    text = "SSN 219-09-1937, mail a@b.co."
    findings = [_finding("US_SSN", span=(4, 15)), _finding("EMAIL_ADDRESS", span=(22, 28))]
    assert redact_text(text, findings) == "SSN <US_SSN>, mail <EMAIL_ADDRESS>."
    assert redact_text(text, findings, style="mask") == "SSN ***-**-****, mail *@*.**."
    overlap = [_finding("A", span=(0, 6)), _finding("B", span=(4, 10))]
    assert redact_text("0123456789xy", overlap) == "<A>xy"


# --- entity catalogue and snippet masking --------------------------------------------------------


def test_entity_types_cover_every_detector_and_the_default_policy() -> None:
    from polyfuse.guard.detectors.pii import SUPPORTED_ENTITIES
    from polyfuse.guard.findings import ENTITY_TYPES
    from polyfuse.guard.policy import DEFAULT_POLICY

    assert set(SUPPORTED_ENTITIES) <= ENTITY_TYPES
    assert {"PROMPT_INJECTION", "HIDDEN_TEXT", "FACE", "UNRELIABLE_TRANSCRIPT"} <= ENTITY_TYPES
    assert set(DEFAULT_POLICY["entities"]) <= ENTITY_TYPES


def _f(type_: str, snippet: str, text: str = "") -> Finding:
    return Finding(type_, 1.0, "text", Location(span=(0, 1)), "t", "1", snippet, text=text)


@pytest.mark.parametrize(
    ("pii", "snippet", "expected"),
    [
        # e-mail inside an injection snippet (which masks digits only)
        (
            _f("EMAIL_ADDRESS", "****@*******.**om", "jane.doe@example.com"),
            "Send it to jane.doe@example.com now",
            "Send it to ****.***@*******.*om now",
        ),
        # a value whose digits another detector already masked is still found
        (
            _f("PHONE_NUMBER", "***-***-**47", "212-555-0147"),
            "call 212-555-**** today",
            "call ***-***-**47 today",
        ),
        # case-insensitive, every occurrence
        (
            _f("PERSON", "****th", "John Smith"),
            "JOHN SMITH and john smith",
            "**** ***th and **** ***th",
        ),
        # nothing to mask: the finding is returned unchanged
        (_f("US_SSN", "***-**-**89", "123-45-6789"), "ignore previous rules", None),
        # threats do not mask other snippets
        (_f("PROMPT_INJECTION", "ignore", "ignore"), "please ignore this", None),
    ],
)
def test_mask_snippets(pii: Finding, snippet: str, expected: str | None) -> None:
    from polyfuse.guard.findings import mask_snippets

    other = _f("PROMPT_INJECTION", snippet, snippet)
    masked_pii, masked = mask_snippets([pii, other])
    assert masked_pii is pii
    if expected is None:
        assert masked is other
    else:
        assert masked.snippet == expected and masked.text == other.text
        assert masked.to_dict()["snippet"] == expected


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("Send it to jane.doe@exampl...", "Send it to ****.***@****pl..."),
        ("...doe@example.com now", "...***@*******.*om now"),
        ("Send it to ja...", "Send it to ja..."),  # under 3 characters: not identifying
    ],
)
def test_mask_snippets_masks_values_cut_by_the_snippet(snippet: str, expected: str) -> None:
    from polyfuse.guard.findings import mask_snippets

    email = _f("EMAIL_ADDRESS", "****.***@*******.**om", "jane.doe@example.com")
    (_, masked) = mask_snippets([email, _f("PROMPT_INJECTION", snippet)])
    assert masked.snippet == expected
