"""The monitor on a multi-label model: same decisions, subset-accuracy estimates."""

from __future__ import annotations

import numpy as np
import pytest

from polyfuse.monitor import assess
from polyfuse.monitor.detectors import label_prevalence, sample_weights
from polyfuse.monitor.live import LiveMonitor
from tests.monitor.helpers import make_multilabel, multilabel_reference


@pytest.fixture(scope="module")
def ref():  # type: ignore[no-untyped-def]
    return multilabel_reference()


def test_unshifted_windows_rarely_alarm(ref) -> None:  # type: ignore[no-untyped-def]
    alarms = [assess(ref, make_multilabel(200, seed=s)).drift for s in range(20)]
    assert sum(alarms) <= 2


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"shift": {"image": 1.0}}, "image"), ({"noise": ("audio",)}, "audio")],
)
def test_shift_names_the_modality(ref, kwargs, named) -> None:  # type: ignore[no-untyped-def]
    result = assess(ref, make_multilabel(200, seed=7, **kwargs))
    assert result.drifted == [named]


def test_label_prevalence_is_estimated_and_explains_a_prior_change(ref) -> None:  # type: ignore[no-untyped-def]
    current = make_multilabel(300, seed=3, prevalence=(0.75, 0.4, 0.2))
    q = label_prevalence(ref.observations, current)
    assert q is not None and abs(q[0] - 0.75) < 0.1 and abs(q[2] - 0.2) < 0.1
    w = sample_weights(ref.observations, current)
    assert w is not None
    truth = ref.observations.labels > 0  # type: ignore[operator]
    assert np.average(truth[:, 0], weights=w) == pytest.approx(q[0], abs=0.01)
    result = assess(ref, current)
    assert result.prediction.drift
    assert not any(d.drift for d in result.modalities.values())


def test_estimate_is_subset_accuracy_without_false_comfort(ref) -> None:  # type: ignore[no-untyped-def]
    cal = ref.calibration
    assert cal is not None
    for kwargs in ({}, {"noise": ("audio",)}):
        obs = make_multilabel(400, seed=21, **kwargs)
        truth = float(obs.correct.mean())  # type: ignore[union-attr]
        est = cal.estimate(obs, assess(ref, obs).drifted)
        assert abs(est.value - truth) < 0.06, (kwargs, est.to_dict(), truth)
        assert est.value <= truth + 0.05


def test_feedback_takes_label_sets(ref) -> None:  # type: ignore[no-untyped-def]
    live = LiveMonitor(ref, window=50, background=False, min_labels=10)
    obs = make_multilabel(50, seed=9)
    for i in range(50):
        live.record(obs.take(slice(i, i + 1)))
    said = obs.predicted
    labels = obs.labels
    assert labels is not None
    outcomes = [
        live.feedback(rid, [int(j) for j in np.flatnonzero(labels[i])])
        for i, rid in enumerate(obs.ids)
    ]
    expected = ["correct" if (said[i] == (labels[i] > 0)).all() else "wrong" for i in range(50)]
    assert outcomes == expected
    assert live.state().observed_accuracy == pytest.approx(float(obs.correct.mean()))  # type: ignore[union-attr]


def test_set_confidence_is_calibrated_where_labels_are_not_independent() -> None:
    from polyfuse.monitor.estimate import OutputCalibration
    from polyfuse.monitor.outputs import Outputs

    rng = np.random.default_rng(0)
    n, k = 2000, 4
    labels = np.eye(k, dtype=np.int64)[rng.integers(0, k, n)]  # every sample shows one
    hard = rng.random(n) < 0.4
    # easy samples: the right label at 0.9, the others at 0.05; hard ones: 0.25 each (the
    # model cannot tell which, and answers the empty set, which is never right)
    probs = np.where(labels > 0, 0.9, 0.05)
    probs[hard] = 0.25
    out = Outputs(multilabel=True)
    cal = OutputCalibration.fit(probs, labels, out)
    product = np.prod(np.where(probs >= 0.5, probs, 1.0 - probs), axis=1)
    assert product[hard].mean() > 0.3  # independence: the empty set looks 32 % likely
    conf = cal.confidence(probs)
    assert conf[hard].mean() < 0.05
    truth = out.correct(probs, labels)
    assert abs(conf.mean() - truth.mean()) < 0.02
