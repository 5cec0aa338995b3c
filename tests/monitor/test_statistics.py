"""Input statistics: the out-of-vocabulary rate of reference texts is measured held out."""

from __future__ import annotations

import numpy as np

from polyfuse.monitor.statistics import (
    TEXT_STATS,
    HeldOutVocabulary,
    text_statistics,
    vocabulary,
    word_counts,
)

OOV = TEXT_STATS.index("oov_rate")


def _texts(rng: np.random.Generator, n: int) -> list[str]:
    # Zipf-like word use: a few common words and a long tail, as in captions
    words = [f"w{i}" for i in range(400)]
    p = 1.0 / np.arange(1, 401)
    p /= p.sum()
    return [" ".join(rng.choice(words, 8, p=p)) for _ in range(n)]


def test_held_out_vocabulary_leaves_the_text_out() -> None:
    counts = word_counts(["a b", "a c", "c d"])
    seen = HeldOutVocabulary(counts, "a b")
    assert "a" not in seen  # only one other text uses it: under the minimum count of 2
    assert "c" in seen and "b" not in seen and "d" not in seen
    assert set(seen) == {"c"} and len(seen) == 1 and bool(seen)
    assert not HeldOutVocabulary(word_counts([]), "a")


def test_reference_and_new_texts_get_the_same_oov_rate() -> None:
    rng = np.random.default_rng(0)
    reference, later = _texts(rng, 300), _texts(rng, 300)
    counts, vocab = word_counts(reference), vocabulary(reference)
    held = np.mean([text_statistics(t, HeldOutVocabulary(counts, t))[OOV] for t in reference])
    naive = np.mean([text_statistics(t, vocab)[OOV] for t in reference])
    new = np.mean([text_statistics(t, vocab)[OOV] for t in later])
    assert abs(held - new) < 0.02  # comparable
    assert new - naive > 0.03  # measured against itself the reference looks too familiar
