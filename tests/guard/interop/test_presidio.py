"""Our recognizers inside a user's own Presidio AnalyzerEngine (real Presidio, real spaCy)."""

from __future__ import annotations

from typing import Any

import pytest

from polyfuse.core.errors import ConfigError
from polyfuse.guard.detectors.pii import SPACY_MODEL
from polyfuse.guard.detectors.recognizers import RECOGNIZERS
from polyfuse.guard.interop.presidio import PolyfuseRecognizer, recognizers

TEXT = (
    "Ring Anna on +46 (0)8 928 571 38 or mail anna dot berg at example dot com; "
    "she was born on 12/03/1985 and her key is sk-proj-4fQ9xZ2mL7pR8tV1wY3bN6cD."
)


@pytest.fixture(scope="module")
def analyzer() -> Any:
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    nlp = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": SPACY_MODEL}],
        }
    ).create_engine()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp)
    for name in ("EmailRecognizer", "UrlRecognizer"):  # they may fetch the suffix list
        registry.remove_recognizer(name)
    for recognizer in recognizers(phone_regions=["US", "SE"]):
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])


def test_analyzer_engine_finds_our_types(analyzer: Any) -> None:
    results = analyzer.analyze(text=TEXT, language="en", return_decision_process=True)
    mine = [r for r in results if r.recognition_metadata["recognizer_name"].startswith("Polyfuse")]
    ours = {r.entity_type: TEXT[r.start : r.end] for r in mine}
    assert ours["PHONE_NUMBER"] == "+46 (0)8 928 571 38"
    assert ours["EMAIL_ADDRESS"] == "anna dot berg at example dot com"
    assert ours["DATE_OF_BIRTH"] == "12/03/1985"
    assert ours["SECRET"].startswith("sk-proj-")
    phone = next(r for r in mine if r.entity_type == "PHONE_NUMBER")
    assert "valid phone number for SE" in phone.analysis_explanation.textual_explanation


def test_one_recognizer_per_type_and_errors() -> None:
    every = recognizers()
    assert sorted(r.supported_entities[0] for r in every) == sorted(RECOGNIZERS)
    assert {r.name for r in recognizers(["US_SSN"])} == {"PolyfuseUsSsnRecognizer"}
    assert recognizers(["US_SSN"])[0].analyze("SSN 536-22-1234", ["CREDIT_CARD"]) == []
    with pytest.raises(ConfigError, match="US_SNN"):
        PolyfuseRecognizer("US_SNN")
    with pytest.raises(ConfigError, match="ZZ"):
        recognizers(phone_regions=["ZZ"])
