"""Drift decisions on synthetic observations: the right modality, few false alarms."""

from __future__ import annotations

import numpy as np
import pytest

from polyfuse.monitor import assess, monitor
from tests.monitor.helpers import make, reference


@pytest.fixture(scope="module")
def ref():  # type: ignore[no-untyped-def]
    return reference()


def test_unshifted_windows_rarely_alarm(ref) -> None:  # type: ignore[no-untyped-def]
    alarms = [assess(ref, make(200, seed=s)).drift for s in range(20)]
    assert sum(alarms) <= 2  # alpha = 0.05 per window; 20 windows


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"shift": {"image": 1.0}}, "image"),
        ({"shift": {"audio": 1.0}}, "audio"),
        ({"noise": ("audio",)}, "audio"),
        ({"missing": {"image": 0.3}}, "image"),
    ],
)
def test_shift_names_the_modality(ref, kwargs, named) -> None:  # type: ignore[no-untyped-def]
    result = assess(ref, make(200, seed=7, **kwargs))
    assert result.drift
    assert result.drifted == [named]


def test_class_prior_change_is_a_label_shift_not_modality_drift(ref) -> None:  # type: ignore[no-untyped-def]
    result = assess(ref, make(300, seed=3, prior=(0.7, 0.2, 0.1)))
    assert result.prediction.drift
    assert not any(d.drift for d in result.modalities.values())
    assert any(d.explained_by_labels for d in result.modalities.values())


def test_monitor_json_shape_and_first_window(ref) -> None:  # type: ignore[no-untyped-def]
    from polyfuse.monitor import concat

    stream = concat([make(200, seed=11), make(200, seed=12, noise=("audio",))])
    report = monitor(ref, stream, window=100, progress=False)
    data = report.to_dict()
    assert data["drift"] is True
    assert data["n"] == 400 and data["window"] == 100 and len(data["windows"]) == 4
    assert data["modalities"]["audio"]["drift"] is True
    assert data["modalities"]["audio"]["first_window"] == 2
    assert data["modalities"]["image"]["drift"] is False
    assert set(data["missing_rate"]["audio"]) >= {"reference", "current", "drift"}
    assert "audio" in data["harm"]
    harm = data["harm"]["audio"]
    assert harm["without"] > harm["with"]  # noise audio hurts: the image alone is better
    assert [w["drift"] for w in data["windows"]] == [False, False, True, True]


def test_estimate_tracks_accuracy_and_flags_harm(ref) -> None:  # type: ignore[no-untyped-def]
    cal = ref.calibration
    assert cal is not None
    clean, noisy = make(400, seed=21), make(400, seed=22, noise=("audio",))
    estimates = {}
    for name, obs in (("clean", clean), ("noisy", noisy)):
        truth = float((obs.predicted == obs.labels).mean())
        drifted = assess(ref, obs).drifted
        est = cal.estimate(obs, drifted)
        estimates[name] = est
        assert abs(est.value - truth) < 0.05, (name, est.to_dict(), truth)
        assert est.value <= truth + 0.05  # no false comfort
    assert estimates["clean"].cross_modal is None
    # confidence alone is fooled by the noise; the cross-modal estimate is not
    assert estimates["noisy"].cbpe > float((noisy.predicted == noisy.labels).mean()) + 0.1
    assert estimates["noisy"].cross_modal is not None and "audio" in estimates["noisy"].cross_modal


def test_windows_drop_a_short_tail() -> None:
    obs = make(250, seed=1)
    assert obs.windows(100) == [(0, 100), (100, 200), (200, 250)]
    assert make(240, seed=1).windows(100) == [(0, 100), (100, 200)]
    with pytest.raises(Exception, match="positive"):
        obs.windows(0)
    assert np.isfinite(obs.probs).all()
