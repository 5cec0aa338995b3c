"""The routing rules on hand-computed outputs: confidence, contradiction, firewall, shadow."""

from __future__ import annotations

import numpy as np
import pytest

from polyfuse.core.errors import ConfigError
from polyfuse.monitor.estimate import OutputCalibration
from polyfuse.monitor.outputs import Outputs
from polyfuse.serve.review.routing import (
    DEFAULT_REASONS,
    Confidences,
    Router,
    RoutingDecision,
    RoutingPolicy,
    Signals,
)

#: The single-signal rules and the firewall and shadow reasons (the error model's reason
#: has its own tests in test_errors.py).
RULES = ("low_confidence", "contradiction", "firewall", "shadow_disagreement")


def test_a_confident_consistent_answer_is_not_routed() -> None:
    decision = Router(RoutingPolicy(reasons=RULES)).decide(
        Signals([0.9, 0.1], {"image": [0.8, 0.2], "text": [0.7, 0.3]})
    )
    assert decision == RoutingDecision((), 0.9, (), pytest.approx(0.1))
    assert not decision.routed
    assert decision.to_dict() == {"routed": False, "reasons": [], "error_probability": 0.1}


def test_low_confidence_is_below_the_threshold_only() -> None:
    router = Router(RoutingPolicy(reasons=RULES, threshold=0.5))
    assert router.decide(Signals([0.45, 0.35, 0.2])).reasons == ("low_confidence",)
    assert router.decide(Signals([0.5, 0.3, 0.2])).reasons == ()  # not below
    assert (
        Router(RoutingPolicy(reasons=RULES, threshold=0.0)).decide(Signals([0.4, 0.3, 0.3])).reasons
        == ()
    )


def test_calibrated_confidence_is_used_when_given() -> None:
    """A temperature of 2 flattens [0.8, 0.2] to sqrt(.8)/(sqrt(.8)+sqrt(.2)) = 2/3."""
    cal = OutputCalibration(temperature=2.0, threshold=None)
    router = Router(RoutingPolicy(reasons=RULES, threshold=0.7), Confidences(Outputs(), cal))
    decision = router.decide(Signals([0.8, 0.2]))
    assert decision.confidence == pytest.approx(2 / 3)
    assert decision.reasons == ("low_confidence",)


def test_contradiction_needs_a_confident_other_answer_from_the_rest() -> None:
    router = Router(RoutingPolicy(reasons=RULES, contradiction=0.9))
    # without image, the model would say class 1 at 0.95: image alone carried class 0
    d = router.decide(Signals([0.7, 0.3], {"image": [0.05, 0.95], "text": [0.8, 0.2]}))
    assert d.reasons == ("contradiction",) and d.contradicting == ("image",)
    # the same other answer but only 0.85 sure: no contradiction
    d = router.decide(Signals([0.7, 0.3], {"image": [0.15, 0.85], "text": [0.8, 0.2]}))
    assert d.reasons == ()
    # confident and the same answer: no contradiction
    d = router.decide(Signals([0.7, 0.3], {"image": [0.95, 0.05], "text": [0.99, 0.01]}))
    assert d.reasons == ()


def test_one_present_modality_cannot_be_contradicted() -> None:
    """Without its only modality the model answers from nothing (its prior)."""
    d = Router(RoutingPolicy(reasons=RULES)).decide(Signals([0.8, 0.2], {"image": [0.01, 0.99]}))
    assert d.reasons == ()


def test_multilabel_answers_are_label_sets() -> None:
    """Set confidence: labels 0 and 2 on, 1 off: 0.9 * (1 - 0.3) * 0.6 = 0.378."""
    router = Router(
        RoutingPolicy(reasons=RULES, threshold=0.5), Confidences(Outputs(multilabel=True))
    )
    d = router.decide(Signals([0.9, 0.3, 0.6]))
    assert d.confidence == pytest.approx(0.378) and d.reasons == ("low_confidence",)
    # leaving text out flips label 1 on with a set confidence of .99*.99*.99 > 0.9
    d = Router(
        RoutingPolicy(reasons=RULES, threshold=0.0), Confidences(Outputs(multilabel=True))
    ).decide(Signals([0.9, 0.3, 0.6], {"text": [0.99, 0.99, 0.99], "image": [0.9, 0.3, 0.6]}))
    assert d.reasons == ("contradiction",) and d.contradicting == ("text",)


@pytest.mark.parametrize(
    ("action", "routed"), [("allow", False), ("flag", False), ("redact", True), ("block", True)]
)
def test_firewall_routes_redacted_and_blocked(action: str, routed: bool) -> None:
    d = Router(RoutingPolicy(reasons=RULES)).decide(Signals([0.99, 0.01], firewall=action))
    assert d.reasons == (("firewall",) if routed else ())


def test_reasons_keep_their_order_and_policy_can_turn_one_off() -> None:
    signals = Signals(
        [0.4, 0.35, 0.25], {"a": [0.02, 0.95, 0.03], "b": [0.5, 0.3, 0.2]}, firewall="redact"
    )
    assert Router(RoutingPolicy(reasons=RULES)).decide(signals).reasons == (
        "low_confidence",
        "contradiction",
        "firewall",
    )
    only = Router(RoutingPolicy(reasons=("firewall",))).decide(signals)
    assert only.reasons == ("firewall",) and only.contradicting == ()


def test_decide_many_matches_decide_row_by_row() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), 30)
    without = {m: rng.dirichlet(np.ones(4) * 0.3, 30) for m in ("a", "b")}
    present = {"a": np.ones(30, bool), "b": rng.random(30) > 0.3}
    router = Router(RoutingPolicy(reasons=RULES, threshold=0.6, contradiction=0.7))
    many = router.decide_many(probs, without, present)
    for i, d in enumerate(many):
        shown = {m: w[i] for m, w in without.items() if present[m][i]}
        assert router.decide(Signals(probs[i], shown)) == d
    assert any(d.routed for d in many) and not all(d.routed for d in many)


def test_shadow_disagreement_compares_answers() -> None:
    router = Router(RoutingPolicy(reasons=RULES))
    assert router.disagree([0.6, 0.4], [0.3, 0.7])
    assert not router.disagree([0.6, 0.4], [0.9, 0.1])
    with pytest.raises(ConfigError, match="label order"):
        router.disagree([0.6, 0.4], [0.2, 0.3, 0.5])


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"threshold": 1.5}, "review_threshold"),
        ({"contradiction": 0.0}, "review_contradiction"),
        ({"reasons": ("low_confidence", "typo")}, "review_reasons"),
        ({"share": 0.0}, "review_share"),
        ({"window": 5}, "review_window"),
    ],
)
def test_bad_policies_name_their_setting(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        RoutingPolicy(**kwargs)  # type: ignore[arg-type]
    assert RoutingPolicy().reasons == DEFAULT_REASONS
