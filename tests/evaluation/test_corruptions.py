"""Corruptions keep the raw type and shape, grow with severity, and are reproducible."""

from __future__ import annotations

import difflib

import numpy as np
import pytest

from polyfuse.evaluation.corruptions import CORRUPTIONS, Corruption, corruptions_for


def _raw(kind: str) -> object:
    rng = np.random.default_rng(0)
    if kind == "image":
        return rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)  # texture JPEG must lose
    if kind == "audio":
        t = np.arange(8000) / 8000
        tones = (
            np.sin(2 * np.pi * 440 * t)
            + np.sin(2 * np.pi * 1800 * t)
            + np.sin(2 * np.pi * 3500 * t)
        )
        return (0.2 * tones).astype(np.float32)
    if kind == "text":
        return " ".join(["the quick brown fox jumps over the lazy dog"] * 20)
    return rng.standard_normal((50, 3)).astype(np.float32)


def _distance(a: object, b: object) -> float:
    if isinstance(a, str):
        return 1.0 - difflib.SequenceMatcher(None, a, str(b), autojunk=False).ratio()
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float(abs(a.shape[0] - b.shape[0]))
    return float(np.abs(a - b).mean())


@pytest.mark.parametrize("name", CORRUPTIONS.list())
def test_corruption_contract(name: str) -> None:
    kind = name.split("/", maxsplit=1)[0]
    raw = _raw(kind)
    out = [Corruption(name, s, seed=3)(raw, row=7) for s in (1, 3, 5)]
    again = Corruption(name, 3, seed=3)(raw, row=7)
    assert _distance(out[1], again) == 0, "same seed and row: same corruption"
    for o in out:
        assert type(o) is type(raw)
        if isinstance(raw, np.ndarray):
            assert o.dtype == raw.dtype and o.shape[1:] == raw.shape[1:]
            if name != "timeseries/dropped_steps":
                assert o.shape == raw.shape
    d = [_distance(raw, o) for o in out]
    assert d[0] <= d[1] + 1e-4 and d[1] <= d[2] + 1e-4 and d[2] > 0, d


def test_every_kind_has_corruptions() -> None:
    assert set(corruptions_for("image")) == {
        "image/gaussian_noise",
        "image/blur",
        "image/jpeg",
        "image/colour_shift",
    }
    assert set(corruptions_for("audio")) == {"audio/noise", "audio/resample", "audio/clipping"}
    assert set(corruptions_for("text")) == {"text/typos", "text/truncation"}
    assert set(corruptions_for("timeseries")) == {"timeseries/noise", "timeseries/dropped_steps"}


def test_bad_severity() -> None:
    with pytest.raises(ValueError, match="severity"):
        Corruption("image/jpeg", 6)(_raw("image"), 0)
