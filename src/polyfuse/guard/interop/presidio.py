"""polyfuse's validated recognizers as Presidio recognizers.

Each type of `polyfuse.guard.detectors.recognizers` (Luhn-checked card numbers, SSA-valid
SSNs, mod-97 IBANs, phone numbers read with ``phonenumbers`` in the regions you choose,
spoken e-mail addresses, dates of birth, secrets ...) becomes one ``EntityRecognizer``
that a Presidio ``AnalyzerEngine`` runs beside its own::

    from presidio_analyzer import AnalyzerEngine
    from polyfuse.guard.interop.presidio import recognizers

    analyzer = AnalyzerEngine()
    for recognizer in recognizers(phone_regions=["GB", "DE"]):
        analyzer.registry.add_recognizer(recognizer)
    analyzer.analyze("Ring +44 20 7946 0958", language="en")

Every result carries our explanation (``analysis_explanation.textual_explanation``) and
the recognizer's name in ``recognition_metadata``. Requires ``polyfuse[guard]``
(presidio-analyzer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from presidio_analyzer import AnalysisExplanation, EntityRecognizer, RecognizerResult

from polyfuse.core.errors import ConfigError
from polyfuse.guard.detectors.pii import check_phone_regions
from polyfuse.guard.detectors.recognizers import (
    DEFAULT_PHONE_REGIONS,
    RECOGNIZERS,
    RULES_VERSION,
    Match,
    find_phone_numbers,
)


def _class_name(entity: str) -> str:
    return "Polyfuse" + "".join(w.capitalize() for w in entity.split("_")) + "Recognizer"


class PolyfuseRecognizer(EntityRecognizer):
    """One polyfuse finder as a Presidio recognizer of one entity type.

    Args:
        entity: the entity type (a key of `RECOGNIZERS`, named like Presidio's:
            ``CREDIT_CARD``, ``PHONE_NUMBER``, ``SECRET`` ...).
        finder: ``text -> list[Match]`` (default: the catalogue's finder for ``entity``).
        supported_language: the language Presidio runs it for.

    Raises:
        ConfigError: ``entity`` has no finder in the catalogue and none is given.
    """

    def __init__(
        self,
        entity: str,
        finder: Callable[[str], list[Match]] | None = None,
        *,
        supported_language: str = "en",
    ) -> None:
        if finder is None and entity not in RECOGNIZERS:
            raise ConfigError(
                "entity",
                f"no polyfuse recognizer for {entity!r}",
                hint=f"use one of {', '.join(sorted(RECOGNIZERS))}",
            )
        self.finder = finder or RECOGNIZERS[entity]
        #: The recognizer's name in Presidio's results (``PolyfusePhoneNumberRecognizer``).
        self.label: str = _class_name(entity)
        super().__init__(
            supported_entities=[entity],
            name=self.label,
            supported_language=supported_language,
            version=RULES_VERSION,
        )

    def load(self) -> None:
        """Nothing to load: the rules are pure Python."""

    def analyze(
        self, text: str, entities: Sequence[str], nlp_artifacts: Any = None
    ) -> list[RecognizerResult]:
        """Presidio results for the finder's matches in ``text`` (none unless one of
        ``entities`` is this recognizer's type)."""
        if entities and not set(entities) & set(self.supported_entities):
            return []
        return [self._result(m) for m in self.finder(text)]

    def _result(self, m: Match) -> RecognizerResult:
        explanation = AnalysisExplanation(
            recognizer=self.label,
            original_score=m.score,
            pattern_name=m.rule,
            validation_result=True,
            textual_explanation=m.explanation,
        )
        metadata = {
            RecognizerResult.RECOGNIZER_NAME_KEY: self.label,
            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
        }
        return RecognizerResult(m.type, m.start, m.end, m.score, explanation, metadata)


def recognizers(
    entities: Iterable[str] | None = None,
    *,
    phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
    supported_language: str = "en",
) -> list[PolyfuseRecognizer]:
    """One `PolyfuseRecognizer` per type of the catalogue (of ``entities`` only, when
    given), phone numbers read with the numbering plans of ``phone_regions`` (home region
    first; a policy's ``pii.phone_regions``). Add them with ``registry.add_recognizer``.

    Raises:
        ConfigError: an entity type the catalogue does not have, or an unknown region.
    """
    wanted = sorted(RECOGNIZERS) if entities is None else list(entities)
    regions = check_phone_regions(phone_regions)

    def phones(text: str) -> list[Match]:
        return find_phone_numbers(text, regions)

    return [
        PolyfuseRecognizer(
            e,
            phones if e == "PHONE_NUMBER" else None,
            supported_language=supported_language,
        )
        for e in wanted
    ]


__all__ = ["PolyfuseRecognizer", "recognizers"]
