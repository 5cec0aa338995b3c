"""Length-grouped batches: coverage, padding reduction, determinism."""

from __future__ import annotations

import random

from polyfuse.data import LengthGroupedBatchSampler


def _padding(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


def test_every_index_once_and_less_padding_than_random() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(1, 500) for _ in range(1000)]
    sampler = LengthGroupedBatchSampler(lengths, batch_size=16, seed=1, group=20)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    shuffled = list(range(1000))
    rng.shuffle(shuffled)
    random_batches = [shuffled[s : s + 16] for s in range(0, 1000, 16)]
    assert _padding(batches, lengths) < 0.2 * _padding(random_batches, lengths)


def test_same_epoch_same_order_new_epoch_new_order() -> None:
    lengths = list(range(100))
    a = LengthGroupedBatchSampler(lengths, 8, seed=3)
    b = LengthGroupedBatchSampler(lengths, 8, seed=3)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)


def test_evaluation_order_is_sorted_and_complete() -> None:
    sampler = LengthGroupedBatchSampler([5, 1, 3], batch_size=2, shuffle=False)
    assert list(sampler) == [[1, 2], [0]] and len(sampler) == 2
