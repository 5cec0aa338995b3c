"""One policy for every modality: what to do with each kind of finding.

A policy maps entity / threat types to an action (``allow`` < ``flag`` < ``redact`` <
``block``) and a minimum score, with optional per-modality overrides::

    version: 1
    default: {action: flag, threshold: 0.5}   # types not listed below
    entities:
      US_SSN: redact                          # shorthand for {action: redact}
      CREDIT_CARD: {action: redact, threshold: 0.6}
      PROMPT_INJECTION: block
      HIDDEN_TEXT: block
    modalities:
      image:
        FACE: redact
      audio:
        PERSON: allow

An input's action is the strictest action of its findings (``allow`` when none).
Findings scored below their threshold are dropped before the decision.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyfuse.core.errors import ConfigError
from polyfuse.guard.findings import ACTIONS, Action, Finding

POLICY_VERSION = 1

#: The policy used when none is given: secrets and identifiers are redacted, attacks
#: blocked, names and places flagged.
DEFAULT_POLICY: dict[str, Any] = {
    "version": POLICY_VERSION,
    "default": {"action": "flag", "threshold": 0.5},
    "entities": {
        "US_SSN": "redact",
        "CREDIT_CARD": "redact",
        "IBAN_CODE": "redact",
        "PHONE_NUMBER": "redact",
        "EMAIL_ADDRESS": "redact",
        "IP_ADDRESS": "redact",
        "US_PASSPORT": "redact",
        "US_DRIVER_LICENSE": "redact",
        "DATE_OF_BIRTH": "redact",
        "SECRET": "redact",
        "FACE": "redact",
        "PERSON": "flag",
        "LOCATION": "flag",
        "PROMPT_INJECTION": "block",
        "HIDDEN_TEXT": "block",
        "UNRELIABLE_TRANSCRIPT": "block",
    },
    "modalities": {},
}


@dataclass(frozen=True)
class Rule:
    """Action and minimum score for one type."""

    action: Action
    threshold: float


def _rule(where: str, value: Any, default: Rule) -> Rule:
    if isinstance(value, str):
        value = {"action": value}
    if not isinstance(value, Mapping):
        raise ConfigError(where, f"expected an action name or a mapping, got {value!r}")
    unknown = set(value) - {"action", "threshold"}
    if unknown:
        raise ConfigError(where, f"unknown keys {sorted(unknown)}", hint="use action, threshold")
    action = str(value.get("action", default.action))
    if action not in ACTIONS:
        raise ConfigError(f"{where}.action", f"must be one of {', '.join(ACTIONS)}, got {action!r}")
    try:
        threshold = float(value.get("threshold", default.threshold))
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.threshold", "must be a number in [0, 1]") from None
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"{where}.threshold", "must be in [0, 1]")
    return Rule(action, threshold)


@dataclass
class Decision:
    """A policy's verdict on one input: its action and the findings that count, each
    with its own action."""

    action: Action
    findings: list[tuple[Finding, Action]] = field(default_factory=list)


@dataclass
class Policy:
    """Per-type rules, a default, and per-modality overrides (see the module docstring)."""

    default: Rule
    entities: dict[str, Rule]
    modalities: dict[str, dict[str, Rule]]
    source: dict[str, Any]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        """Validate a parsed policy."""
        if not isinstance(data, Mapping):
            raise ConfigError("policy", "a policy must be a mapping")
        unknown = set(data) - {"version", "default", "entities", "modalities"}
        if unknown:
            raise ConfigError("policy", f"unknown keys {sorted(unknown)}")
        version = int(data.get("version", POLICY_VERSION))
        if version != POLICY_VERSION:
            raise ConfigError(
                "policy.version", f"this polyfuse reads version {POLICY_VERSION}, got {version}"
            )
        default = _rule("policy.default", data.get("default", {}), Rule("flag", 0.5))
        entities = {
            str(k): _rule(f"policy.entities.{k}", v, default)
            for k, v in (data.get("entities") or {}).items()
        }
        modalities: dict[str, dict[str, Rule]] = {}
        for m, rules in (data.get("modalities") or {}).items():
            if m not in ("text", "image", "audio", "document"):
                raise ConfigError(
                    f"policy.modalities.{m}", "not a modality (text, image, audio, document)"
                )
            modalities[str(m)] = {
                str(k): _rule(f"policy.modalities.{m}.{k}", v, entities.get(str(k), default))
                for k, v in (rules or {}).items()
            }
        return cls(default, entities, modalities, dict(data))

    @classmethod
    def load(cls, path: str | Path | None = None) -> Policy:
        """A policy from a YAML (or JSON) file, or the `DEFAULT_POLICY`."""
        if path is None:
            return cls.from_dict(DEFAULT_POLICY)
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(str(path), "policy file not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError(str(path), f"not valid YAML: {exc}") from exc
        return cls.from_dict(data or {})

    def rule(self, type_: str, modality: str) -> Rule:
        """The rule for a type in a modality (override, then entity rule, then default)."""
        return self.modalities.get(modality, {}).get(type_, self.entities.get(type_, self.default))

    def decide(self, findings: Sequence[Finding], modality: str) -> Decision:
        """Drop findings below threshold, give each the action of its rule, and the input
        the strictest of them."""
        kept = []
        for f in findings:
            rule = self.rule(f.type, modality)
            if f.score >= rule.threshold:
                kept.append((f, rule.action))
        action: Action = "allow"
        for _, a in kept:
            if ACTIONS.index(a) > ACTIONS.index(action):
                action = a
        return Decision(action, kept)

    @property
    def digest(self) -> str:
        """Short hash of the policy (logged with every decision)."""
        text = json.dumps(self.source, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
