"""BLEU and CIDEr-D against hand-computed values and NLTK's corpus BLEU."""

from __future__ import annotations

import math

import pytest

from polyfuse.evaluation.text_metrics import bleu, cider_d, tokenize


def test_tokenize() -> None:
    assert tokenize("A dog, running!  It's fast.") == ["a", "dog", "running", "it's", "fast"]


def test_bleu_by_hand() -> None:
    # unigrams: the(2, clipped 2) cat on mat match, sat does not -> 5/6; equal lengths, BP 1
    # bigrams: the-cat, on-the, the-mat match of 5 -> 3/5; BLEU-2 = sqrt(5/6 * 3/5)
    out = bleu(["the cat sat on the mat"], [["the cat is on the mat"]])
    assert out["BLEU-1"] == pytest.approx(5 / 6)
    assert out["BLEU-2"] == pytest.approx(math.sqrt(5 / 6 * 3 / 5))
    assert out["BLEU-4"] == 0.0  # no matching 4-gram
    # brevity penalty: 3 candidate words against a 6-word reference
    short = bleu(["the cat is"], [["the cat is on the mat"]])
    assert short["BLEU-1"] == pytest.approx(math.exp(1 - 6 / 3))
    assert bleu(["a b c d"], [["a b c d"]])["BLEU-4"] == pytest.approx(1.0)


@pytest.mark.filterwarnings("ignore:\\nThe hypothesis contains 0 counts")
def test_bleu_matches_nltk() -> None:
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    cands = ["a man rides a red bike down the street", "two dogs play in the snow together"]
    refs = [
        ["a man is riding a bike on the street", "a cyclist rides down a city street"],
        ["two dogs are playing in the snow", "dogs run through deep snow", "two dogs in snow"],
    ]
    ours = bleu(cands, refs)
    for n in range(1, 5):
        weights = tuple([1 / n] * n)
        theirs = nltk_bleu.corpus_bleu(
            [[tokenize(r) for r in rs] for rs in refs], [tokenize(c) for c in cands], weights
        )
        assert ours[f"BLEU-{n}"] == pytest.approx(theirs, abs=1e-9)


def test_cider_d_by_hand() -> None:
    # unigrams only, two images: idf("a") = 0, idf(other words) = log 2. Image 1:
    # candidate (0, log2 dog, log2 sits) vs reference (0, log2 dog, log2 runs): clipped dot
    # log2^2 over norms 2 log2^2 = 0.5; same length -> no penalty; x10 -> 5.0.
    # Image 2: "a cat sits" against "a cat sits": 1.0 -> 10.0. Mean 7.5.
    score = cider_d(["a dog sits", "a cat sits"], [["a dog runs"], ["a cat sits"]], max_n=1)
    assert score == pytest.approx(7.5)


def test_cider_d_orders_captions() -> None:
    refs = [
        ["a brown dog runs on the grass", "a dog running across a lawn"],
        ["a child swims in a pool", "a kid in the swimming pool"],
        ["a man climbs a rock wall", "a climber on a cliff"],
    ]
    good = cider_d(
        ["a brown dog running on grass", "a child in a pool", "a man climbs a rock"], refs
    )
    poor = cider_d(
        ["a man climbs a rock", "a brown dog running on grass", "a child in a pool"], refs
    )
    assert good > 1.0 > poor >= 0.0
