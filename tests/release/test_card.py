"""The model card: written by training, complete, re-evaluated on other data, rendered."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from polyfuse.cli import main
from polyfuse.core.config import Config
from polyfuse.core.errors import ArtifactError
from polyfuse.release.card import (
    CARD_HTML,
    CARD_JSON,
    CARD_MD,
    SECTIONS,
    ModelCard,
    load_card,
)
from polyfuse.train import Trainer
from tests.conftest import SMALL_CONFIG, relabel, write_manifest, write_synthetic


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A small four-modality classifier with a card config; its train and test manifests."""
    root = tmp_path_factory.mktemp("card")
    rows = write_synthetic(root / "data", 80)
    for i, r in enumerate(rows):
        r["site"] = "north" if i % 3 else "south"
    train = write_manifest(root / "data" / "train.jsonl", rows[:56])
    test = write_manifest(root / "data" / "test.jsonl", rows[56:])
    cfg = copy.deepcopy(SMALL_CONFIG)
    cfg["train"]["card"] = True
    cfg["card"] = {
        "name": "synthetic-demo",
        "intended_use": "Sorting synthetic shapes in tests.",
        "limitations": ["Trained on 56 synthetic rows."],
        "owners": ["ml-platform"],
    }
    art = Trainer(Config.from_dict(cfg), root / "art", progress=False).fit(train, test).path
    return art, train, test


def test_training_writes_a_complete_card(trained: tuple[Path, Path, Path]) -> None:
    art, _, _ = trained
    for name in (CARD_JSON, CARD_MD, CARD_HTML):
        assert (art / name).is_file(), name
    card = load_card(art)
    assert card.empty_sections() == []
    assert card.model["name"] == "synthetic-demo"
    assert card.intended_use["intended_use"] == "Sorting synthetic shapes in tests."
    # the config's limitation first, then the measured ones
    assert card.intended_use["limitations"][0] == "Trained on 56 synthetic rows."
    assert any("With only audio" in x for x in card.intended_use["limitations"])
    assert card.intended_use["owners"] == ["ml-platform"]
    # lineage with the label distribution of the manifest actually trained on
    lineage = card.training_data["manifests"]["train"]
    assert lineage["rows"] == 56 and sum(lineage["labels"].values()) == 56
    assert set(lineage["labels"]) == {"c0", "c1", "c2"}
    assert card.evaluation_data["source"] == "validation split at training time"
    # 15 non-empty subsets of four modalities, each with an interval around its value
    subsets = card.subsets["subsets"]
    assert len(subsets) == 15
    for v in subsets.values():
        assert v["interval"]["low"] <= v["accuracy"] <= v["interval"]["high"]
    assert set(card.contributions["modalities"]) == {"image", "audio", "text", "series"}
    assert {c.split("/")[0] for c in card.robustness["corruptions"]} == {
        "image",
        "audio",
        "text",
        "timeseries",
    }
    assert 0 <= card.calibration["ece"] <= 1
    assert "site" in card.slices["columns"] and len(card.slices["worst_classes"]) == 3
    assert "PROMPT_INJECTION" in card.firewall["actions"]["block"]
    # trainable encoders carry no third-party licence; the table says so
    assert all(e["weights"].startswith("trained from scratch") for e in card.encoders.values())


def test_markdown_has_every_section_with_content(trained: tuple[Path, Path, Path]) -> None:
    text = (trained[0] / CARD_MD).read_text()
    parts = text.split("\n## ")[1:]
    assert [p.split("\n", 1)[0] for p in parts] == list(SECTIONS.values())
    for part in parts:
        body = part.split("\n", 1)[1].strip()
        assert body, f"section {part.splitlines()[0]} is empty"


def test_card_on_other_data_replaces_the_stored_one(
    trained: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    art, train, _ = trained
    code = main(
        [
            "card",
            str(art),
            "--data",
            str(train),
            "--source",
            "training rows",
            "-q",
            "--format",
            "json",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["evaluation_data"]["rows"] == 56
    assert load_card(art).evaluation_data["source"] == "training rows"
    out = tmp_path / "card.html"
    assert main(["card", str(art), "--format", "html", "--out", str(out), "-q"]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_missing_and_broken_cards_say_how_to_fix(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    with pytest.raises(ArtifactError, match="no model card") as info:
        load_card(tmp_path)
    assert "polyfuse card" in (info.value.hint or "")
    data = json.loads((trained[0] / CARD_JSON).read_text())
    with pytest.raises(ArtifactError, match="lacks the section"):
        ModelCard.from_dict({k: v for k, v in data.items() if k != "robustness"})
    with pytest.raises(ArtifactError, match="version"):
        ModelCard.from_dict({**data, "version": 99})


def test_a_card_with_an_empty_section_is_caught(trained: tuple[Path, Path, Path]) -> None:
    card = load_card(trained[0])
    card.robustness = {"metric": "accuracy", "corruptions": {}}
    card.encoders = {}
    assert card.empty_sections() == ["encoders", "robustness"]


@pytest.mark.parametrize("task", ["multilabel", "regression"])
def test_cards_of_other_tasks(tmp_path: Path, task: str) -> None:
    rows = relabel(write_synthetic(tmp_path / "data", 40), task)
    train = write_manifest(tmp_path / "data" / "train.jsonl", rows[:30])
    val = write_manifest(tmp_path / "data" / "val.jsonl", rows[30:])
    cfg = copy.deepcopy(SMALL_CONFIG)
    cfg["task"], cfg["train"]["epochs"], cfg["train"]["card"] = task, 2, True
    art = Trainer(Config.from_dict(cfg), tmp_path / "run", progress=False).fit(train, val).path
    card = load_card(art)
    assert card.empty_sections() == []
    if task == "regression":
        assert card.calibration["rmse"] is not None
    else:
        assert "ece" in card.calibration
        assert set(card.training_data["manifests"]["train"]["labels"]) == {"c0", "c1", "c2", "even"}


def test_a_policy_file_is_summarised(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from polyfuse.evaluation.analysis import analyze
    from polyfuse.inference.predict import Predictor
    from polyfuse.release.card import build_card, card_analyses

    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "entities: {PERSON: redact, PROMPT_INJECTION: flag}\n"
        "outputs: {names: true, entities: {PHONE_NUMBER: flag}}\n"
    )
    art, _, test = trained
    predictor = Predictor.load(art)
    analysis = analyze(predictor, test, card_analyses(bootstrap=100), progress=False)
    card = build_card(predictor.artifact, analysis, policy=policy)
    assert card.firewall["source"] == str(policy)
    assert card.firewall["actions"] == {"flag": ["PROMPT_INJECTION"], "redact": ["PERSON"]}
    assert card.firewall["outputs"] == {
        "enabled": True,
        "names": True,
        "injection": False,
        "overrides": {"PHONE_NUMBER": "flag"},
    }
    from polyfuse.release.card import render_markdown

    assert (
        "- outputs (captions, search results, labels): scanned for identifiers and secrets, "
        "and names: PHONE_NUMBER flag" in render_markdown(card)
    )


def test_card_html_opens_in_headless_chromium(trained: tuple[Path, Path, Path]) -> None:
    """The real browser, offline: every section has text, charts have size, no errors."""
    from tests.browser import open_page

    with open_page(trained[0] / CARD_HTML) as page:
        assert page.errors == [], page.errors
        texts = page.evaluate(
            "Array.from(document.querySelectorAll('section')).map(s => [s.id, "
            "s.innerText.replace(s.querySelector('h2').innerText, '').trim().length])"
        )
        assert [t[0] for t in texts] == list(SECTIONS)
        assert all(n > 20 for _, n in texts), texts
        sizes = page.evaluate(
            "Array.from(document.querySelectorAll('svg')).map(s => s.getBoundingClientRect().width)"
        )
        assert len(sizes) >= 3 and min(sizes) > 50
        external = page.evaluate(
            "Array.from(document.querySelectorAll('[src],[href]'))"
            ".map(e => e.getAttribute('src') || e.getAttribute('href'))"
            ".filter(u => !u.startsWith('#') && !u.startsWith('data:'))"
        )
        assert external == []
