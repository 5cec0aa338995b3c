"""LLM Guard-style input scanners over polyfuse's firewall.

LLM Guard chains input scanners, each an object with ``scan(prompt) -> (sanitized_prompt,
is_valid, risk_score)``, through ``scan_prompt(scanners, prompt)``. The scanners here
follow that protocol (`InputScanner`, structural: no dependency on the llm-guard package),
so they mix with LLM Guard's own in one list, and `scan_prompt` has LLM Guard's semantics:

    from polyfuse.guard.interop.llm_guard import PII, Firewall, PromptInjection, scan_prompt

    sanitized, valid, scores = scan_prompt([PII(), PromptInjection()], prompt)
    if not all(valid.values()):
        ...  # refuse, or send `sanitized` on

Each scanner runs a `polyfuse.guard.engine.Guard` on the prompt under its policy
(default: `polyfuse.guard.policy.DEFAULT_POLICY`):

* ``sanitized``: the prompt with every finding whose action is ``redact`` replaced by
  ``<TYPE>`` (``Call <PHONE_NUMBER>``);
* ``valid``: False when any finding's action is ``redact`` or ``block`` (like LLM Guard's
  ``Anonymize``, a prompt that had to be changed is reported);
* ``risk``: LLM Guard's risk score in [-1, 1] (`risk_score`): the highest over the
  findings of ``(score - threshold)`` scaled by the policy threshold of the finding's
  type; -1.0 when nothing is found.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from polyfuse.guard.engine import Guard, ScanResult
from polyfuse.guard.policy import Policy
from polyfuse.guard.redact.text import redact_text

#: The actions that make a prompt invalid.
INVALID_ACTIONS = frozenset({"redact", "block"})


@runtime_checkable
class InputScanner(Protocol):
    """LLM Guard's input-scanner protocol (``llm_guard.input_scanners.base.Scanner``)."""

    def scan(self, prompt: str) -> tuple[str, bool, float]:
        """``(sanitized prompt, is valid, risk score in [-1, 1])``."""
        ...


def risk_score(score: float, threshold: float) -> float:
    """LLM Guard's risk score: ``score`` above ``threshold`` maps to (0, 1], below it to
    [-1, 0), rounded to one decimal."""
    if score > threshold:
        risk = (score - threshold) / (1 - threshold) if threshold < 1 else 1.0
    else:
        risk = (score - threshold) / threshold if threshold > 0 else 0.0
    return min(max(round(risk, 1), -1.0), 1.0)


class GuardScanner:
    """An input scanner over a `Guard` (see the module docstring for the tuple).

    Args:
        guard: the firewall to run on each prompt (its policy, detectors, limits and
            audit log).
    """

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def scan(self, prompt: str) -> tuple[str, bool, float]:
        """``(sanitized, valid, risk)`` for ``prompt``; an empty prompt is valid (-1.0),
        one the firewall cannot scan (over the size limit) invalid (1.0)."""
        if not prompt.strip():
            return prompt, True, -1.0
        result = self.guard.scan_text(prompt)
        if result.error is not None:
            return prompt, False, 1.0
        todo = [f for f, action in result.findings if action == "redact"]
        sanitized = redact_text(prompt, todo) if todo else prompt
        valid = not any(action in INVALID_ACTIONS for _, action in result.findings)
        return sanitized, valid, self._risk(result)

    def _risk(self, result: ScanResult) -> float:
        policy = self.guard.policy
        risks = [
            risk_score(f.score, policy.rule(f.type, "text").threshold) for f, _ in result.findings
        ]
        return max(risks, default=-1.0)


class PII(GuardScanner):
    """PII anonymized under the policy: `TextPII` (Presidio NER plus the validated
    recognizers, phone numbers in the policy's ``pii.phone_regions``).

    Args:
        policy: the policy (default `DEFAULT_POLICY`: identifiers and secrets redacted,
            names and places flagged).
        use_ner: run Presidio/spaCy for PERSON and LOCATION (``False``: the rules only).
    """

    def __init__(self, policy: Policy | None = None, *, use_ner: bool = True) -> None:
        from polyfuse.guard.detectors.pii import TextPII

        policy = policy or Policy.load()
        pii = TextPII(use_ner=use_ner, phone_regions=policy.phone_regions)
        super().__init__(Guard(policy, text_detectors=[pii]))


class PromptInjection(GuardScanner):
    """Prompt injection (`InjectionDetector`: attack-shape rules and the n-gram model);
    the prompt comes back unchanged, invalid when the policy blocks it.

    Args:
        policy: the policy (default `DEFAULT_POLICY`: ``PROMPT_INJECTION`` blocked at 0.5).
    """

    def __init__(self, policy: Policy | None = None) -> None:
        from polyfuse.guard.detectors.injection import InjectionDetector

        super().__init__(Guard(policy, text_detectors=[InjectionDetector()]))


class Firewall(GuardScanner):
    """The whole text firewall in one scanner: PII and prompt injection under one policy.

    Args:
        policy: the policy (default `DEFAULT_POLICY`).
        guard: a configured `Guard` to use instead (its policy wins).
    """

    def __init__(self, policy: Policy | None = None, *, guard: Guard | None = None) -> None:
        super().__init__(guard if guard is not None else Guard(policy))


def scan_prompt(
    scanners: Sequence[InputScanner], prompt: str, fail_fast: bool = False
) -> tuple[str, dict[str, bool], dict[str, float]]:
    """LLM Guard's ``scan_prompt``: run ``scanners`` in order, each on the previous one's
    sanitized prompt.

    Returns:
        The final sanitized prompt, and per scanner (by class name) whether the prompt
        was valid and its risk score. With no scanners or a blank prompt, the prompt and
        two empty dicts. With ``fail_fast``, scanning stops after the first invalid result.
    """
    sanitized = prompt
    valid: dict[str, bool] = {}
    scores: dict[str, float] = {}
    if not scanners or not prompt.strip():
        return sanitized, valid, scores
    for scanner in scanners:
        sanitized, ok, risk = scanner.scan(sanitized)
        name = type(scanner).__name__
        valid[name], scores[name] = ok, risk
        if fail_fast and not ok:
            break
    return sanitized, valid, scores


__all__ = [
    "INVALID_ACTIONS",
    "PII",
    "Firewall",
    "GuardScanner",
    "InputScanner",
    "PromptInjection",
    "risk_score",
    "scan_prompt",
]
