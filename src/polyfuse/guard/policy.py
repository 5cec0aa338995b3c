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
    pii:
      phone_regions: [US, GB, DE]             # national numbering plans, home region first
    outputs:                                  # what the service returns (captions, search
      enabled: true                           # results and their metadata, labels ...)
      names: false                            # also look for PERSON and LOCATION (NER)
      injection: false                        # also look for PROMPT_INJECTION
      entities:                               # overrides; other types: the rules above
        EMAIL_ADDRESS: flag

An input's action is the strictest action of its findings (``allow`` when none).
Findings scored below their threshold are dropped before the decision. Outputs are
text: a type's output rule is ``outputs.entities``, else its rule for text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from polyfuse.core.config import UnitFloat, unknown_key, validate
from polyfuse.core.errors import ConfigError
from polyfuse.guard.detectors.recognizers import DEFAULT_PHONE_REGIONS, unknown_phone_regions
from polyfuse.guard.findings import ACTIONS, ENTITY_TYPES, Action, Finding

POLICY_VERSION = 1
#: Types found by NER (names and places): looked for in outputs only with ``outputs.names``.
NAME_TYPES = frozenset({"PERSON", "LOCATION"})

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


class RuleSpec(BaseModel):
    """A rule as written in a policy file: unset fields inherit (entity rule <- default)."""

    model_config = ConfigDict(extra="forbid")

    action: Action | None = None
    threshold: UnitFloat | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"action": value} if isinstance(value, str) else value

    def over(self, base: Rule) -> Rule:
        """This rule with the unset fields taken from ``base``."""
        action = base.action if self.action is None else self.action
        threshold = base.threshold if self.threshold is None else self.threshold
        return Rule(action, threshold)


_TYPES_SCHEMA = {"propertyNames": {"enum": sorted(ENTITY_TYPES)}}
EntityRules = Annotated[dict[str, RuleSpec], Field(json_schema_extra=_TYPES_SCHEMA)]


class PiiSpec(BaseModel):
    """The ``pii`` section: how PII is looked for.

    ``phone_regions``: ISO 3166 region codes (``US``, ``GB`` ...) whose national numbering
    plans phone numbers are read with (numbers written with ``+country`` are found in any
    plan). The first is the home region: its national numbers count without phone words;
    the others' need phone words nearby.
    """

    model_config = ConfigDict(extra="forbid")

    phone_regions: list[str] = Field(default_factory=lambda: list(DEFAULT_PHONE_REGIONS))

    @field_validator("phone_regions")
    @classmethod
    def _known_regions(cls, value: list[str]) -> list[str]:
        regions = [r.upper() for r in value]
        unknown = unknown_phone_regions(regions)
        if unknown or not regions:
            what = f"unknown region(s) {unknown}" if unknown else "no region"
            raise ValueError(f"{what}; use ISO 3166 codes such as US, GB, DE")
        return list(dict.fromkeys(regions))


class OutputsSpec(BaseModel):
    """The ``outputs`` section: the policy over what a model returns (captions, search
    results and their stored metadata, labels); see `polyfuse.guard.outputs`.

    Attributes:
        enabled: scan outputs (default); ``false`` returns them unscanned.
        names: also look for PERSON and LOCATION (spaCy NER, about 20 times the cost of
            the identifier recognizers on a search answer); off by default.
        injection: also look for PROMPT_INJECTION (the injection detector); off by default.
        entities: per-type rules for outputs; unlisted types take their rule for text.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: StrictBool = True
    names: StrictBool = False
    injection: StrictBool = False
    entities: EntityRules = {}


class PolicyFile(BaseModel):
    """The policy file's schema (``polyfuse schema policy``); see the module docstring."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    default: RuleSpec = RuleSpec()
    entities: EntityRules = {}
    modalities: dict[Literal["text", "image", "audio", "document", "video"], EntityRules] = {}
    pii: PiiSpec = PiiSpec()
    outputs: OutputsSpec = OutputsSpec()


def _check_types(rules: Mapping[str, Any], where: str) -> None:
    """`ConfigError` for a type no detector reports, suggesting the closest known one."""
    for name in rules:
        if name not in ENTITY_TYPES:
            error = unknown_key(f"{where}.{name}", name, ENTITY_TYPES)
            raise ConfigError(error.key, "unknown entity type", hint=error.hint)


@dataclass
class Decision:
    """A policy's verdict on one input: its action and the findings that count, each
    with its own action."""

    action: Action
    findings: list[tuple[Finding, Action]] = field(default_factory=list)


@dataclass(frozen=True)
class OutputRules:
    """The ``outputs`` section, resolved: whether outputs are scanned, whether names and
    places (NER) and prompt injection are looked for, and the per-type output overrides."""

    enabled: bool = True
    names: bool = False
    injection: bool = False
    entities: dict[str, Rule] = field(default_factory=dict)


@dataclass
class Policy:
    """Per-type rules, a default, per-modality overrides and the rules of outputs (see
    the module docstring)."""

    default: Rule
    entities: dict[str, Rule]
    modalities: dict[str, dict[str, Rule]]
    source: dict[str, Any]
    #: Regions whose national phone numbers are recognised, home region first.
    phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS
    outputs: OutputRules = field(default_factory=OutputRules)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        """Validate a parsed policy."""
        if not isinstance(data, Mapping):
            raise ConfigError("policy", "a policy must be a mapping", hint="see polyfuse schema")
        for key in data:  # named in the message; the key path stays "policy"
            if key not in PolicyFile.model_fields:
                error = unknown_key(str(key), str(key), PolicyFile.model_fields)
                raise ConfigError(
                    "policy",
                    f"unknown key '{key}'; valid keys: {', '.join(PolicyFile.model_fields)}",
                    hint=error.hint,
                )
        raw = {k: ({} if v is None else v) for k, v in data.items()}
        spec = validate(PolicyFile, raw, "policy")
        _check_types(spec.entities, "policy.entities")
        for m, rules in spec.modalities.items():
            _check_types(rules, f"policy.modalities.{m}")
        default = spec.default.over(Rule("flag", 0.5))
        entities = {k: r.over(default) for k, r in spec.entities.items()}
        modalities = {
            str(m): {k: r.over(entities.get(k, default)) for k, r in rules.items()}
            for m, rules in spec.modalities.items()
        }
        policy = cls(default, entities, modalities, dict(data))
        policy.phone_regions = tuple(spec.pii.phone_regions)
        _check_types(spec.outputs.entities, "policy.outputs.entities")
        policy.outputs = OutputRules(
            spec.outputs.enabled,
            spec.outputs.names,
            spec.outputs.injection,
            {k: r.over(policy.rule(k, "text")) for k, r in spec.outputs.entities.items()},
        )
        return policy

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

    def output_rule(self, type_: str) -> Rule:
        """The rule for a type in an output (``outputs.entities``, else its text rule)."""
        return self.outputs.entities.get(type_) or self.rule(type_, "text")

    def looks_for_in_outputs(self, type_: str) -> bool:
        """Whether output scans look for ``type_`` (names and places only with
        ``outputs.names``, prompt injection only with ``outputs.injection``)."""
        if type_ in NAME_TYPES:
            return self.outputs.names
        return self.outputs.injection or type_ != "PROMPT_INJECTION"

    def decide_output(self, findings: Sequence[Finding]) -> Decision:
        """`decide` for outputs, with the output rules; findings of a type outputs are
        not scanned for (`looks_for_in_outputs`) are dropped."""
        kept = []
        for f in findings:
            if not self.looks_for_in_outputs(f.type):
                continue
            rule = self.output_rule(f.type)
            if f.score >= rule.threshold:
                kept.append((f, rule.action))
        return Decision(_strictest(a for _, a in kept), kept)

    @property
    def digest(self) -> str:
        """Short hash of the policy (logged with every decision)."""
        text = json.dumps(self.source, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _strictest(actions: Iterable[Action]) -> Action:
    """The strictest of ``actions`` (``allow`` when none)."""
    return max(actions, key=ACTIONS.index, default="allow")
