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
        ({"modalities": {"video": {}}}, "policy.modalities.video"),
        ({"version": 9}, "policy.version"),
        ({"rules": {}}, "policy"),
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


def test_redact_text_replaces_and_merges_spans() -> None:
    text = "SSN 219-09-1937, mail a@b.co."
    findings = [_finding("US_SSN", span=(4, 15)), _finding("EMAIL_ADDRESS", span=(22, 28))]
    assert redact_text(text, findings) == "SSN <US_SSN>, mail <EMAIL_ADDRESS>."
    assert redact_text(text, findings, style="mask") == "SSN ***-**-****, mail *@*.**."
    overlap = [_finding("A", span=(0, 6)), _finding("B", span=(4, 10))]
    assert redact_text("0123456789xy", overlap) == "<A>xy"
