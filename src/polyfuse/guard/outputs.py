"""What a model returns, under the same policy as what it reads.

Captions, search results and their stored metadata, class labels: every text a service
or a command hands back is scanned by the firewall's text detectors and decided by the
policy's ``outputs`` section (`polyfuse.guard.policy.OutputRules`): a finding whose rule
is ``redact`` is replaced by ``<TYPE>`` in the text, ``flag`` is reported, ``block``
withholds the whole answer (the caller refuses it, as it refuses a blocked input).

Outputs are scanned for identifiers and secrets by default; names and places (PERSON,
LOCATION: spaCy NER, which costs about 20 times the rest) only with ``outputs.names``,
prompt injection only with ``outputs.injection`` (`output_detectors`).

The texts of one answer are scanned together: distinct texts are joined with a blank
line between them and each detector runs once over the join (Presidio's NLP pipeline
costs per call, not per character); a finding that crosses from one text into the next
belongs to neither and is dropped. The prompt-injection detector runs on each text
alone, since its windows would otherwise mix texts. What is reported never holds a
value: types, actions, scores and the field each finding is in (`OutputScan.to_dict`).
"""

from __future__ import annotations

import bisect
import hashlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from polyfuse.core.errors import InvalidInputError
from polyfuse.guard.audit import AuditLog
from polyfuse.guard.findings import Action, Finding, Location, TextDetector, mask_snippets
from polyfuse.guard.policy import Policy
from polyfuse.guard.redact.text import redact_text

#: Between two texts of one answer in the joined text a detector reads.
SEPARATOR = "\n\n"


@dataclass
class OutputScan:
    """The verdict on the texts of one answer.

    Attributes:
        texts: the texts as they may be returned (redacted spans are ``<TYPE>``), in the
            order given.
        action: the strictest action of the findings (``allow`` when none).
        findings: findings at or above their threshold with their action; each one's
            ``location.source`` is ``output:<field>`` and its span indexes that text.
        sha256: hash of the scanned texts (the audit log's reference to them).
    """

    texts: list[str]
    action: Action = "allow"
    findings: list[tuple[Finding, Action]] = field(default_factory=list)
    sha256: str = ""

    def redacted(self) -> dict[str, int]:
        """Type -> how many spans were redacted."""
        return dict(Counter(f.type for f, a in self.findings if a == "redact"))

    def to_dict(self) -> dict[str, Any]:
        """The ``output_scan`` field of an answer: action, redaction counts by type, and
        each finding's type, action, score, field and detector (never a value, not even
        a masked one)."""
        return {
            "action": self.action,
            "redacted": self.redacted(),
            "findings": [
                {
                    "type": f.type,
                    "action": a,
                    "score": round(float(f.score), 4),
                    "field": f.location.source.removeprefix("output:"),
                    "detector": f.detector,
                }
                for f, a in self.findings
            ],
        }


def scan_outputs(
    texts: Sequence[str],
    fields: Sequence[str],
    *,
    policy: Policy,
    detectors: Sequence[TextDetector],
    max_chars: int,
    audit: AuditLog | None = None,
    name: str | None = None,
    audit_clean: bool = True,
) -> OutputScan:
    """Scan ``texts`` (one answer's; ``fields`` names where each is in it) under
    ``policy.outputs`` with ``detectors`` (`output_detectors` of the firewall's text
    detectors); see the module docstring. One line goes to ``audit`` (unless nothing was
    found and not ``audit_clean``).

    Raises:
        InvalidInputError: the distinct texts together are over ``max_chars``.
    """
    if len(texts) != len(fields):
        raise InvalidInputError("output", f"{len(texts)} texts but {len(fields)} fields")
    digest = hashlib.sha256(SEPARATOR.join(texts).encode("utf-8", "surrogatepass")).hexdigest()
    if not policy.outputs.enabled or not texts:
        return OutputScan(list(texts), sha256=digest)
    distinct = list(dict.fromkeys(texts))
    size = sum(len(t) for t in distinct) + len(SEPARATOR) * (len(distinct) - 1)
    if size > max_chars:
        raise InvalidInputError(
            "output", f"{size} characters of output is over the limit of {max_chars}"
        )
    found = _find(distinct, detectors)
    findings: list[Finding] = []
    for text, where in zip(texts, fields, strict=True):
        findings += [_placed(f, where) for f in found[text]]
    decision = policy.decide_output(mask_snippets(findings))
    redacted = list(texts)
    for i, where in enumerate(fields):
        source = _src(where)
        todo = [f for f, a in decision.findings if a == "redact" and f.location.source == source]
        if todo:
            redacted[i] = redact_text(texts[i], todo)
    result = OutputScan(redacted, decision.action, decision.findings, digest)
    if audit is not None and (audit_clean or result.findings):
        audit.write(_record(result, policy, name, len(texts), size))
    return result


def texts_of(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """``(field, text)`` for every string of ``value`` in a fixed order (dict values in
    insertion order, then list items); dict keys are names, not scanned."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from texts_of(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from texts_of(v, f"{where}[{i}]")


def with_texts(value: Any, texts: Iterator[str]) -> Any:
    """``value`` with its strings replaced, in `texts_of`'s order, from ``texts``."""
    if isinstance(value, str):
        return next(texts)
    if isinstance(value, Mapping):
        return {k: with_texts(v, texts) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [with_texts(v, texts) for v in value]
    return value


def output_detectors(detectors: Sequence[TextDetector], policy: Policy) -> list[TextDetector]:
    """The detectors an output scan runs: the injection detector only with
    ``outputs.injection``, and `TextPII` without its NER (spaCy) unless ``outputs.names``
    (its validated recognizers find every identifier type without it)."""
    from polyfuse.guard.detectors.injection import InjectionDetector
    from polyfuse.guard.detectors.pii import TextPII

    out: list[TextDetector] = []
    for detector in detectors:
        d = detector
        if isinstance(d, InjectionDetector) and not policy.outputs.injection:
            continue
        if isinstance(d, TextPII) and d.use_ner and not policy.outputs.names:
            d = TextPII(d.entities, d.score_threshold, d.language, use_ner=False, models=d.models)
        out.append(d)
    return out


def _find(texts: list[str], detectors: Sequence[TextDetector]) -> dict[str, list[Finding]]:
    """Text -> its findings (spans into that text), each detector run once over the
    join, or per text for the injection detector."""
    from polyfuse.guard.detectors.injection import InjectionDetector

    starts, pos = [], 0
    for t in texts:
        starts.append(pos)
        pos += len(t) + len(SEPARATOR)
    joined = SEPARATOR.join(texts)
    out: dict[str, list[Finding]] = {t: [] for t in texts}
    for detector in detectors:
        if isinstance(detector, InjectionDetector):
            for t in texts:
                out[t] += detector.detect(t, source="output")
            continue
        for f in detector.detect(joined, source="output"):
            span = f.location.span
            if span is None:
                continue
            i = _owner(starts, span[0])
            start, text = starts[i], texts[i]
            if span[1] - start <= len(text):  # crossing into the next text: neither's
                moved = replace(f.location, span=(span[0] - start, span[1] - start))
                out[text].append(replace(f, location=moved))
    return out


def _owner(starts: list[int], offset: int) -> int:
    """Index of the text whose part of the join holds ``offset``."""
    return max(0, bisect.bisect_right(starts, offset) - 1)


def _src(where: str) -> str:
    return f"output:{where}"


def _placed(finding: Finding, where: str) -> Finding:
    location: Location = replace(finding.location, source=_src(where))
    return replace(finding, location=location)


def _record(
    result: OutputScan, policy: Policy, name: str | None, count: int, size: int
) -> dict[str, Any]:
    """The audit line of one scanned answer (no text: its hash, sizes and findings)."""
    return {
        "output": {"name": name, "sha256": result.sha256, "texts": count, "chars": size},
        "policy": policy.digest,
        "action": result.action,
        "error": None,
        "findings": [{**f.to_dict(), "action": a} for f, a in result.findings],
    }
