"""Time-series contract: npy/csv parsing, shapes, fitting, normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from polyfuse.core.errors import InvalidInputError
from polyfuse.modalities import TimeSeriesContract


def test_npy_and_csv_load_the_same_series(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.float32).reshape(6, 2)
    np.save(tmp_path / "s.npy", arr)
    (tmp_path / "s.csv").write_text("ax,ay\n" + "\n".join(f"{a},{b}" for a, b in arr))
    c = TimeSeriesContract.create("motion", {})
    assert np.array_equal(c.load(tmp_path / "s.npy"), c.load(tmp_path / "s.csv"))


def test_fit_sets_channels_and_global_statistics() -> None:
    c = TimeSeriesContract.create("motion", {})
    assert c.needs_fit
    fitted = c.fit([np.array([[0.0, 10.0], [2.0, 10.0]]), np.array([[4.0, 10.0]])])
    assert fitted.channels == 2 and fitted.mean == (2.0, 10.0)
    assert fitted.std[1] == 1.0  # constant channel: std floored to 1
    x = fitted.preprocess(np.array([[2.0, 10.0]], np.float32))
    assert torch.allclose(x, torch.zeros(1, 2))


def test_when_channels_differ_from_contract_then_typed_error() -> None:
    c = TimeSeriesContract.create("motion", {"channels": 3})
    with pytest.raises(InvalidInputError, match="2 channels, the contract expects 3"):
        c.load(np.zeros((5, 2)))


def test_when_nan_then_error_or_zero_by_policy() -> None:
    arr = np.array([[1.0], [np.nan]])
    with pytest.raises(InvalidInputError, match="NaN"):
        TimeSeriesContract.create("m", {}).load(arr)
    c = TimeSeriesContract.create("m", {"nan_policy": "zero", "normalize": "none"})
    assert c.preprocess(c.load(arr)).tolist() == [[1.0], [0.0]]


def test_when_pickled_object_array_then_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidInputError, match="cannot parse"):
        TimeSeriesContract.create("m", {}).load(tmp_path / "o.npy")


def test_collate_pads_time_axis() -> None:
    c = TimeSeriesContract.create("m", {"normalize": "none"})
    batch = c.collate([torch.ones(4, 2), torch.ones(2, 2)], torch.tensor([True, True]))
    assert batch.data.shape == (2, 4, 2) and batch.lengths.tolist() == [4, 2]
    assert batch.data[1, 2:].abs().sum() == 0
