"""The error model's features on hand-computed outputs, its fit on a reference, and the
``predicted_error`` reason: a share of recent answers, capped per window."""

from __future__ import annotations

import math

import numpy as np
import pytest

from polyfuse.monitor.observe import ModalityView, Observations
from polyfuse.monitor.profile import ReferenceProfile
from polyfuse.serve.review.errors import (
    FEATURES,
    MIN_ERRORS,
    Answers,
    ErrorModel,
    features,
    one_modality_requests,
)
from polyfuse.serve.review.routing import Confidences, Router, RoutingPolicy, Signals


def arrays(*rows: list[float]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float64)


def test_features_read_confidence_margin_entropy_and_the_modalities() -> None:
    """Row 0: both modalities; the model without ``a`` says class 1 at 0.9 and ``a``'s own
    head says class 1 at 0.7. Row 1: only ``a`` was used (``b``'s outputs are ignored)."""
    answers = Answers(
        probs=arrays([0.8, 0.2], [0.6, 0.4]),
        without={"a": arrays([0.1, 0.9], [0.5, 0.5]), "b": arrays([0.7, 0.3], [0.2, 0.8])},
        unimodal={"a": arrays([0.3, 0.7], [0.6, 0.4]), "b": arrays([0.95, 0.05], [0.0, 1.0])},
        present={"a": np.array([True, True]), "b": np.array([True, False])},
        modalities=("a", "b"),
    )
    x = features(answers, Confidences(), {})
    entropy = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2)) / math.log(2)
    assert dict(zip(FEATURES, x[0], strict=True)) == pytest.approx(
        {
            "confidence": math.log(4.0),
            "margin": 0.6,
            "entropy": entropy,
            "contradiction": 0.9,
            "dissent": 0.7,
            "missing": 0.0,
        }
    )
    assert x[1, 3:] == pytest.approx([0.0, 0.0, 0.5])  # one modality: never contradicted


def test_one_modality_requests_answer_with_the_other_left_out() -> None:
    obs = reference(n=6, k=2, seed=0)
    obs.modalities["b"].present[0] = False  # row 0 carried one modality: no request from it
    requests = one_modality_requests(obs)
    assert [list(rows) for _, rows in requests] == [[1, 2, 3, 4, 5]] * 2
    without_a, rows = requests[0]
    assert np.array_equal(without_a.probs, obs.modalities["a"].without[rows])
    assert not without_a.present["a"].any() and without_a.present["b"].all()


def reference(n: int, k: int, seed: int, wrong_rate: float = 0.2) -> Observations:
    """A labelled two-modality reference whose errors are its least confident answers."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    sure = rng.uniform(0.4, 0.99, n)  # above 1 / k: the answer is the top class
    wrong = sure < np.quantile(sure, wrong_rate)
    said = np.where(wrong, (labels + 1) % k, labels)

    def outputs(conf: np.ndarray, answer: np.ndarray) -> np.ndarray:
        p = np.tile(((1 - conf) / (k - 1))[:, None], (1, k))
        p[np.arange(n), answer] = conf
        return p

    def view(shift: float) -> ModalityView:
        return ModalityView(
            kind="image",
            present=np.ones(n, dtype=bool),
            statistics=np.zeros((n, 1)),
            names=("x",),
            embedding=rng.normal(size=(n, 4)),
            probs=outputs(np.clip(sure - shift, 0.4, 0.99), said),
            without=outputs(np.clip(sure - shift, 0.4, 0.99), said),
        )

    return Observations(
        ids=[str(i) for i in range(n)],
        modalities={"a": view(0.05), "b": view(0.1)},
        probs=outputs(sure, said),
        classes=tuple(str(c) for c in range(k)),
        labels=labels.astype(np.int64),
    )


def test_the_error_model_fits_the_reference_and_its_one_modality_requests() -> None:
    obs = reference(n=200, k=3, seed=1)
    model = ErrorModel.fit(obs, Confidences())
    assert model is not None and model.rows == 600 and model.modalities == ("a", "b")
    assert model.errors >= MIN_ERRORS
    answers = Answers.of(obs)
    p = model.probability(answers, Confidences())
    conf = obs.probs.max(axis=1)
    # the least confident tenth is predicted more often wrong than the most confident
    assert p[conf < np.quantile(conf, 0.1)].mean() > 3 * p[conf > np.quantile(conf, 0.9)].mean()


def test_no_error_model_without_enough_reference_errors() -> None:
    assert ErrorModel.fit(reference(n=200, k=3, seed=2, wrong_rate=0.0), Confidences()) is None


def test_calibration_of_a_reference_without_errors_is_not_trusted() -> None:
    """A clean reference drives the fitted temperature to its bound: confidences read raw."""
    clean = ReferenceProfile(reference(n=200, k=3, seed=3, wrong_rate=0.0))
    assert clean.calibration is not None
    router = Router.of_profile(RoutingPolicy(), clean, clean.observations.outputs)
    assert router.confidences.fused is None and router.errors is None
    noisy = ReferenceProfile(reference(n=200, k=3, seed=3))
    router = Router.of_profile(RoutingPolicy(), noisy, noisy.observations.outputs)
    assert router.confidences.fused is not None and router.errors is not None


def test_predicted_error_routes_the_riskiest_share_and_never_more_per_window() -> None:
    profile = ReferenceProfile(reference(n=200, k=3, seed=4))
    policy = RoutingPolicy(share=0.1, window=40)
    router = Router.of_profile(policy, profile, profile.observations.outputs)
    stream = reference(n=400, k=3, seed=5, wrong_rate=0.4)  # riskier than the reference
    answers = Answers.of(stream)
    decided = router.decide_many(
        stream.probs, answers.without, answers.present, None, answers.unimodal
    )
    routed = np.array([d.routed for d in decided])
    assert all(d.reasons in ((), ("predicted_error",)) for d in decided)
    windows = np.convolve(routed, np.ones(40, dtype=int), mode="valid")
    assert windows.max() <= 4 and 0.05 < routed.mean() <= 0.1
    error = np.array([d.error for d in decided])
    assert error[routed].mean() > 2 * error[~routed].mean()
    wrong = ~stream.outputs.correct(stream.probs, np.asarray(stream.labels))
    assert wrong[routed].mean() > 2 * wrong.mean()  # routed answers are mostly errors


def test_decide_reads_heads_and_used_modalities_like_decide_many() -> None:
    profile = ReferenceProfile(reference(n=200, k=3, seed=6))
    stream = reference(n=30, k=3, seed=7)
    stream.modalities["b"].present[::3] = False
    answers = Answers.of(stream)
    policy = RoutingPolicy(share=0.2, window=20)
    many = Router.of_profile(policy, profile, stream.outputs).decide_many(
        stream.probs, answers.without, answers.present, None, answers.unimodal
    )
    one = Router.of_profile(policy, profile, stream.outputs)
    for i, d in enumerate(many):
        used = [m for m in ("a", "b") if answers.present[m][i]]
        signals = Signals(
            stream.probs[i].tolist(),
            {m: answers.without[m][i].tolist() for m in used},
            unimodal={m: answers.unimodal[m][i].tolist() for m in used},
            used=used,
        )
        got = one.decide(signals)
        assert got.reasons == d.reasons and got.error == pytest.approx(d.error)


def test_without_a_profile_the_predicted_error_is_one_minus_the_confidence() -> None:
    router = Router(RoutingPolicy(share=0.5, window=10), seed=[0.1] * 10)
    assert router.decide(Signals([0.7, 0.3])).error == pytest.approx(0.3)
    assert router.decide(Signals([0.7, 0.3])).reasons == ("predicted_error",)
    assert router.decide(Signals([0.95, 0.05])).reasons == ()
