"""Batch sampling that groups samples of similar length to minimise padding."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches whose members have similar lengths.

    Indices are shuffled, cut into mega-batches of ``batch_size * group``,
    each sorted by length and split into batches; batch order is shuffled
    again. Lengths are read from ``lengths`` at every epoch, so lengths learned
    while loading the first epoch group the following ones.

    Args:
        lengths: per-index padded length (updated by the dataset as it loads).
        batch_size: samples per batch.
        shuffle: shuffle (training) or keep order (evaluation).
        seed: base seed; the epoch is added (see `set_epoch`).
        group: mega-batch size in batches.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        group: int = 50,
    ) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.group = group
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the shuffle of the next iteration deterministically."""
        self.epoch = epoch

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            order = sorted(range(n), key=lambda i: self.lengths[i])
            yield from (order[s : s + self.batch_size] for s in range(0, n, self.batch_size))
            return
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(n, generator=gen).tolist()
        mega = self.batch_size * self.group
        batches: list[list[int]] = []
        for s in range(0, n, mega):
            chunk = sorted(perm[s : s + mega], key=lambda i: self.lengths[i])
            batches += [
                chunk[b : b + self.batch_size] for b in range(0, len(chunk), self.batch_size)
            ]
        for b in torch.randperm(len(batches), generator=gen).tolist():
            yield batches[b]
