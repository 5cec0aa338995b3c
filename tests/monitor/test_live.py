"""LiveMonitor: windows, drift state, quarantine on and off, feedback."""

from __future__ import annotations

import pytest

from polyfuse.monitor.live import LiveMonitor, QuarantinePolicy
from tests.monitor.helpers import make, reference


@pytest.fixture(scope="module")
def ref():  # type: ignore[no-untyped-def]
    return reference()


def _feed(live: LiveMonitor, obs) -> None:  # type: ignore[no-untyped-def]
    for i in range(len(obs)):
        live.record(obs.take(slice(i, i + 1)))


def test_windows_fill_and_assess(ref) -> None:  # type: ignore[no-untyped-def]
    live = LiveMonitor(ref, window=100, background=False)
    _feed(live, make(250, seed=5))
    state = live.state()
    assert state.windows == 2 and state.samples == 50
    assert not any(s.drift for s in state.modalities.values())
    assert state.estimated_accuracy is not None and state.reference_accuracy is not None
    assert 0.0 <= (state.agreement_rate or 0.0) <= 1.0


def test_quarantine_needs_consecutive_harmful_drift_and_lifts(ref) -> None:  # type: ignore[no-untyped-def]
    policy = QuarantinePolicy(enabled=True, windows=2)
    live = LiveMonitor(ref, window=100, background=False, policy=policy)
    _feed(live, make(100, seed=6, noise=("audio",)))
    assert live.quarantined() == frozenset()  # one drifted window is not enough
    _feed(live, make(100, seed=7, noise=("audio",)))
    assert live.quarantined() == {"audio"}
    audio = live.state().modalities["audio"]
    assert audio.estimate_without is not None and audio.quarantined_since is not None
    _feed(live, make(300, seed=8))  # clean windows: two in a row lift it
    state = live.state().modalities["audio"]
    assert live.quarantined() == frozenset() and state.clean_windows >= 2


def test_quarantine_is_opt_in_and_harmless_drift_is_not_quarantined(ref) -> None:  # type: ignore[no-untyped-def]
    off = LiveMonitor(ref, window=100, background=False)
    _feed(off, make(300, seed=9, noise=("audio",)))
    assert off.state().modalities["audio"].drift and off.quarantined() == frozenset()
    on = LiveMonitor(
        ref, window=100, background=False, policy=QuarantinePolicy(enabled=True, windows=1)
    )
    _feed(on, make(200, seed=10, shift={"image": 1.0}))  # drifted but still informative
    assert on.state().modalities["image"].drift
    assert on.quarantined() == frozenset()


def test_admin_lift_and_unknown_modality(ref) -> None:  # type: ignore[no-untyped-def]
    live = LiveMonitor(
        ref, window=100, background=False, policy=QuarantinePolicy(enabled=True, windows=1)
    )
    _feed(live, make(100, seed=11, noise=("audio",)))
    assert live.quarantined() == {"audio"}
    assert live.lift("audio") is True and live.quarantined() == frozenset()
    assert live.lift("audio") is False
    with pytest.raises(Exception, match="unknown modality"):
        live.lift("video")


def test_feedback_replaces_the_estimate(ref) -> None:  # type: ignore[no-untyped-def]
    live = LiveMonitor(ref, window=100, background=False, min_labels=20)
    obs = make(100, seed=12)
    _feed(live, obs.take(slice(0, 99)))
    for rid, label in zip(obs.ids[:40], obs.labels[:40], strict=True):  # type: ignore[index]
        assert live.feedback(rid, int(label)) in ("correct", "wrong")
    assert live.feedback("never-served", 0) == "unknown"
    _feed(live, obs.take(slice(99, 100)))
    state = live.state()
    truth = float((obs.predicted[:40] == obs.labels[:40]).mean())  # type: ignore[index]
    assert state.observed_accuracy == pytest.approx(truth)
    assert state.feedback["correct"] + state.feedback["wrong"] == 40


def test_labels_that_arrive_after_their_window_was_assessed_count(ref) -> None:  # type: ignore[no-untyped-def]
    live = LiveMonitor(ref, window=50, background=False, min_labels=20)
    first, second = make(50, seed=14), make(50, seed=15)
    second.ids = [f"second-{i}" for i in range(50)]  # request ids are unique in a service
    _feed(live, first)
    _feed(live, second)
    assert live.state().windows == 2 and live.state().observed_accuracy is None
    for rid, label in zip(first.ids[:25], first.labels[:25], strict=True):  # type: ignore[index]
        live.feedback(rid, int(label))
    truth = float((first.predicted[:25] == first.labels[:25]).mean())  # type: ignore[index]
    assert live.state().observed_accuracy == pytest.approx(truth)
    # a small window needs only as many labels as it has requests
    small = LiveMonitor(ref, window=10, background=False, min_labels=20)
    obs = make(10, seed=16)
    _feed(small, obs)
    for rid, label in zip(obs.ids, obs.labels, strict=True):  # type: ignore[arg-type]
        small.feedback(rid, int(label))
    assert small.state().observed_accuracy is not None


def test_background_assessment(ref) -> None:  # type: ignore[no-untyped-def]
    live = LiveMonitor(ref, window=100)
    _feed(live, make(100, seed=13))
    live.wait()
    assert live.state().windows == 1
    with pytest.raises(Exception, match="at least 10"):
        LiveMonitor(ref, window=5)


def test_isolated_assessment_matches_the_thread_and_ends_on_close(ref) -> None:  # type: ignore[no-untyped-def]
    drifted = make(100, seed=14, noise=("audio",))
    thread = LiveMonitor(ref, window=100)
    process = LiveMonitor(ref, window=100, isolate=True)
    for live in (thread, process):
        _feed(live, drifted)
        live.wait()
    a, b = thread.state(), process.state()
    assert a.windows == b.windows == 1
    assert a.estimated_accuracy == b.estimated_accuracy
    for m, s in a.modalities.items():
        t = b.modalities[m]
        assert (s.drift, s.p_value, s.missing_rate) == (t.drift, t.p_value, t.missing_rate)
    assert b.modalities["audio"].drift  # the noisy modality, seen from the process too
    pool = process._pool
    assert pool is not None
    worker = next(iter(pool._processes.values()))
    process.close()
    thread.close()
    assert process._pool is None and not worker.is_alive()
