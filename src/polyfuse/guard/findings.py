"""One finding type for every modality (contract version 1).

A `Finding` says *what* was found (an entity or threat type named like Presidio's:
``US_SSN``, ``CREDIT_CARD``, ``PROMPT_INJECTION``, ``HIDDEN_TEXT``, ``FACE`` ...), *how
sure* the detector is, *where* it is in the input (a character span of text, a pixel box
of an image, a time range of audio, a page of a document), *who* found it (detector name
and version) and a masked snippet that is safe to log. The raw matched text is kept in
memory only (``text``) for redaction and is never serialised.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

#: Version of the finding contract; bump on an incompatible change of `Finding.to_dict`.
FINDING_VERSION = 1

Modality = Literal["text", "image", "audio", "document", "video"]
Action = Literal["allow", "flag", "redact", "block"]
#: Actions from mildest to strictest; an input's action is its strictest finding's.
ACTIONS: tuple[Action, ...] = ("allow", "flag", "redact", "block")

#: Types that identify a person or a secret, in the order `TextPII` reports them.
PII_ENTITIES: tuple[str, ...] = (
    "PERSON",
    "LOCATION",
    "US_SSN",
    "CREDIT_CARD",
    "PHONE_NUMBER",
    "EMAIL_ADDRESS",
    "IP_ADDRESS",
    "IBAN_CODE",
    "DATE_OF_BIRTH",
    "US_DRIVER_LICENSE",
    "US_PASSPORT",
    "SECRET",
)
PII_TYPES: frozenset[str] = frozenset(PII_ENTITIES)
#: Threats and untrustworthy content: attacks, hidden text, faces, unreliable transcripts.
THREAT_TYPES: frozenset[str] = frozenset(
    {"PROMPT_INJECTION", "HIDDEN_TEXT", "FACE", "UNRELIABLE_TRANSCRIPT"}
)
#: Every type a detector of `polyfuse.guard` can emit (a policy naming another is wrong).
ENTITY_TYPES: frozenset[str] = PII_TYPES | THREAT_TYPES


@dataclass(frozen=True)
class Location:
    """Where a finding is. Set the fields that apply to the modality:

    Attributes:
        span: ``(start, end)`` character offsets in the (extracted) text, end exclusive.
        box: ``(x0, y0, x1, y1)`` pixel box in the image, x1/y1 exclusive.
        seconds: ``(start, end)`` time range in the audio, in seconds.
        page: 1-based page of a document.
        source: which text the span refers to: ``text`` (the input), ``ocr``,
            ``ocr:enhanced``, ``asr``, ``metadata:<key>``, ``pdf:text`` ...
    """

    span: tuple[int, int] | None = None
    box: tuple[int, int, int, int] | None = None
    seconds: tuple[float, float] | None = None
    page: int | None = None
    source: str = "text"

    def to_dict(self) -> dict[str, Any]:
        """JSON form with only the fields that are set (plus ``source``)."""
        out: dict[str, Any] = {"source": self.source}
        if self.span is not None:
            out["span"] = list(self.span)
        if self.box is not None:
            out["box"] = list(self.box)
        if self.seconds is not None:
            out["seconds"] = [round(self.seconds[0], 3), round(self.seconds[1], 3)]
        if self.page is not None:
            out["page"] = self.page
        return out


def mask(value: str, keep: int = 2) -> str:
    """A snippet safe to log: the last ``keep`` alphanumerics stay, other letters and
    digits become ``*``, separators stay ("123-45-6789" -> "***-**-**89")."""
    alnum = [i for i, c in enumerate(value) if c.isalnum()]
    show = set(alnum[-keep:]) if keep and len(alnum) > 2 * keep else set()
    return "".join(c if (not c.isalnum() or i in show) else "*" for i, c in enumerate(value))


@dataclass
class Finding:
    """One detection in one input.

    Attributes:
        type: entity or threat type (``US_SSN``, ``PROMPT_INJECTION``, ``HIDDEN_TEXT`` ...).
        score: detector confidence in [0, 1].
        modality: the input's modality.
        location: where it is.
        detector: detector name (``presidio``, ``luhn``, ``rapidocr+presidio`` ...).
        detector_version: its version (package version or our rule-set version).
        snippet: masked text safe to log (see `mask`).
        explanation: why it fired, for humans ("Luhn checksum valid", "contrast 1.03:1").
        text: the raw matched text, kept for redaction only; never serialised.
    """

    type: str
    score: float
    modality: Modality
    location: Location
    detector: str
    detector_version: str
    snippet: str
    explanation: str = ""
    text: str = field(default="", repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the ``--json`` output and the audit log); no raw text."""
        return {
            "type": self.type,
            "score": round(float(self.score), 4),
            "modality": self.modality,
            "location": self.location.to_dict(),
            "detector": self.detector,
            "detector_version": self.detector_version,
            "snippet": self.snippet,
            "explanation": self.explanation,
        }


def _loose(value: str) -> str:
    """A regex for ``value`` that also matches it with digits already masked."""
    return "".join("[0-9*]" if c.isdigit() else re.escape(c) for c in value)


#: Shortest piece of a value that is masked where a snippet was cut ("jane.d...").
_MIN_CUT = 3


def _mask_value(snippet: str, value: str) -> str:
    """``snippet`` with every occurrence of ``value`` masked, including a piece of it cut
    off by the snippet's ``...`` at either end."""
    whole = re.compile(_loose(value), re.IGNORECASE)
    snippet = whole.sub(mask(value).replace("\\", "\\\\"), snippet)
    for k in range(len(value) - 1, _MIN_CUT - 1, -1):
        head, tail = value[:k], value[-k:]
        if re.search(_loose(head) + r"\.\.\.$", snippet, re.IGNORECASE):
            return snippet[: -(k + 3)] + mask(head) + "..."
        if re.match(r"\.\.\." + _loose(tail), snippet, re.IGNORECASE):
            return "..." + mask(tail) + snippet[k + 3 :]
    return snippet


def mask_snippets(findings: Sequence[Finding]) -> list[Finding]:
    """The one masking step every finding passes before it leaves the firewall.

    A snippet of one finding (a prompt-injection sentence, hidden text, a transcript
    passage) can contain the raw value of another finding of the same input (an e-mail
    address, a card number): every PII value found in the input is masked (`mask`) in
    every snippet, wherever it occurs, also where the snippet cut it short. Findings are
    returned in order, changed copies where a snippet changed.
    """
    values = sorted(
        {f.text for f in findings if f.type in PII_TYPES and len(f.text.strip()) > 1},
        key=len,
        reverse=True,
    )
    out: list[Finding] = []
    for f in findings:
        snippet = f.snippet
        for value in values:
            snippet = _mask_value(snippet, value)
        out.append(f if snippet == f.snippet else replace(f, snippet=snippet))
    return out


class TextDetector:
    """What every text detector provides (PII, prompt injection ...): findings with
    character spans in ``text``. Image and audio scanners run text detectors on OCR text
    and transcripts and map the spans back to pixel boxes and time ranges.

    Subclasses set ``name`` and ``version`` and implement `detect`.
    """

    name: str = "text-detector"
    version: str = "0"

    def detect(self, text: str, *, source: str = "text") -> list[Finding]:
        """Findings in ``text`` with ``modality="text"`` and ``location.span`` set
        (``location.source`` = ``source``)."""
        raise NotImplementedError
