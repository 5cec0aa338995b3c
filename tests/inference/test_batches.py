"""The batch-assembly helper: presence masks, padding and raw-value loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polyfuse.core.errors import InvalidInputError
from polyfuse.inference.batches import assemble, collate_all, load_batch
from polyfuse.modalities.image import ImageContract
from polyfuse.modalities.timeseries import TimeSeriesContract

SERIES = TimeSeriesContract("series", normalize="none")
IMAGE = ImageContract("image", size=(12, 12), channels=1)
CONTRACTS = {"image": IMAGE, "series": SERIES}


@pytest.mark.parametrize(
    ("presence", "expected"),
    [
        # which sample has which modality -> name -> presence mask (absent names left out)
        ([{"image", "series"}, {"image", "series"}], {"image": [1, 1], "series": [1, 1]}),
        ([{"image"}, {"series"}, {"image"}], {"image": [1, 0, 1], "series": [0, 1, 0]}),
        ([{"series"}, set()], {"series": [1, 0]}),
        ([set(), set()], {}),
    ],
)
def test_assemble_masks_each_modality(
    presence: list[set[str]], expected: dict[str, list[int]]
) -> None:
    tensors = {"image": torch.ones(1, 12, 12), "series": torch.ones(5, 2)}
    samples = [{m: tensors[m] for m in have} for have in presence]
    batch = assemble(CONTRACTS, samples)
    assert set(batch) == set(expected)
    for name, mask in expected.items():
        assert batch[name].present.tolist() == [bool(v) for v in mask]
        assert batch[name].data.shape[0] == sum(mask)  # only present samples are stored


def test_assemble_pads_like_the_contract() -> None:
    samples = [{"series": torch.ones(3, 2)}, {"series": torch.full((5, 2), 2.0)}]
    mb = assemble({"series": SERIES}, samples)["series"]
    expected = SERIES.collate([s["series"] for s in samples], torch.ones(2, dtype=torch.bool))
    torch.testing.assert_close(mb.data, expected.data)
    assert mb.lengths is not None and mb.lengths.tolist() == [3, 5]
    torch.testing.assert_close(collate_all(SERIES, [s["series"] for s in samples]).data, mb.data)


def test_load_batch_loads_preprocesses_and_collates() -> None:
    raw = [np.arange(8, dtype=np.float32).reshape(4, 2), np.ones((6, 2), dtype=np.float32)]
    mb = load_batch(SERIES, raw)
    assert mb.present.tolist() == [True, True] and mb.data.shape[0] == 2
    with pytest.raises(InvalidInputError):
        load_batch(SERIES, ["not a series"], field="series")
