"""The canary's sequential test: the statistic by hand, its error rates on simulated
streams (no difference: false decisions within alpha; a real difference: found), the
minimum sample, and the settings' errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from polyfuse.core.errors import ConfigError
from polyfuse.release.canary import (
    SIGNALS,
    CanaryJudge,
    CanarySettings,
    Comparison,
    SignalSettings,
    log_mixture_ratio,
)


def test_log_mixture_ratio_by_hand() -> None:
    # V = 0.01, tau = 0.1 (tau^2 = V): 0.5 log(1/2) + 0.01 * 0.04 / (2 * 0.01 * 0.02)
    assert log_mixture_ratio(0.2, 0.0, 0.01, 0.1) == pytest.approx(
        0.5 * math.log(0.5) + 0.0004 / 0.0004
    )
    # no difference: the mixture only pays its price
    assert log_mixture_ratio(0.0, 0.0, 0.01, 0.1) == pytest.approx(0.5 * math.log(0.5))


def comparison(signal: str, min_samples: int = 10, **settings: float) -> Comparison:
    return Comparison(SIGNALS[signal], SignalSettings(**settings), 0.05, min_samples)


def test_a_signal_decides_nothing_before_its_minimum_sample() -> None:
    c = comparison("errors", min_samples=20)
    for _ in range(19):
        c.add("canary", 1.0)
        c.add("champion", 0.0)
    assert c.verdict().state == "undecided" and c.verdict().worse == 0.0
    c.add("canary", 1.0)
    c.add("champion", 0.0)
    verdict = c.verdict()
    assert verdict.state == "worse" and verdict.worse > verdict.threshold
    assert verdict.canary == {"n": 20, "mean": 1.0} and verdict.champion == {"n": 20, "mean": 0.0}


def test_direction_follows_the_signal() -> None:
    """Higher accuracy is better, higher latency worse; the margin absorbs small slowdowns."""
    accuracy = comparison("accuracy")
    for i in range(200):
        accuracy.add("canary", float(i % 10 != 0))  # 90 %
        accuracy.add("champion", float(i % 2 == 0))  # 50 %
    assert accuracy.verdict().state == "better" and accuracy.verdict().difference > 0
    latency = comparison("latency", margin=0.1, tau=0.2)
    rng = np.random.default_rng(0)
    for _ in range(300):
        latency.add("canary", math.log(10.0) + 0.05 + 0.1 * rng.standard_normal())
        latency.add("champion", math.log(10.0) + 0.1 * rng.standard_normal())
    assert latency.verdict().state == "undecided"  # 5 % slower: inside the 10 % margin


def test_a_rare_event_does_not_look_certain() -> None:
    """One error in 60 canary requests against none in 600 is no evidence yet."""
    c = comparison("errors", min_samples=50, tau=0.05)
    for i in range(600):
        c.add("champion", 0.0)
        if i < 60:
            c.add("canary", float(i < 1))
    assert c.verdict().state == "undecided"


def simulate(
    settings: CanarySettings,
    *,
    streams: int,
    requests: int,
    weight: float,
    canary_accuracy: float,
    seed: int,
) -> list[int | None]:
    """Per stream, the request at which the judge first says "worse" (None: never), over
    requests split ``weight`` to the canary; the champion is right 85 % of the time."""
    rng = np.random.default_rng(seed)
    found: list[int | None] = []
    for _ in range(streams):
        judge = CanaryJudge(settings)
        arms = np.where(rng.random(requests) < weight, "canary", "champion")
        right = rng.random(requests)
        confidence = rng.beta(8, 2, requests)
        latency = rng.lognormal(2.5, 0.4, requests)
        rare = rng.random(requests)
        first = None
        for i, arm in enumerate(arms):
            p = canary_accuracy if arm == "canary" else 0.85
            shift = (canary_accuracy - 0.85) if arm == "canary" else 0.0
            judge.observe("errors", arm, float(rare[i] < 0.01))
            judge.observe("degraded", arm, float(rare[i] > 0.97))
            judge.observe("latency", arm, math.log(latency[i]))
            judge.observe("slow", arm, float(latency[i] > 23.0))
            judge.observe("estimated_accuracy", arm, float(np.clip(confidence[i] + shift, 0, 1)))
            judge.observe("accuracy", arm, float(right[i] < p))
            if i % 5 == 4 and judge.judge().state == "worse":
                first = i
                break
        found.append(first)
    return found


def test_no_difference_false_rollbacks_stay_within_alpha() -> None:
    settings = CanarySettings(alpha=0.05, min_samples=30)
    found = simulate(settings, streams=60, requests=1500, weight=0.2, canary_accuracy=0.85, seed=1)
    assert sum(f is not None for f in found) / len(found) <= settings.alpha


def test_a_worse_canary_is_found_within_a_bounded_number_of_requests() -> None:
    settings = CanarySettings(alpha=0.05, min_samples=30)
    found = simulate(settings, streams=20, requests=1500, weight=0.2, canary_accuracy=0.65, seed=2)
    assert all(f is not None for f in found)
    assert max(f for f in found if f is not None) < 1000


def test_judgement_lists_the_deciding_signals() -> None:
    judge = CanaryJudge(CanarySettings(min_samples=5))
    for _ in range(40):
        judge.observe("errors", "canary", 1.0)
        judge.observe("errors", "champion", 0.0)
        judge.observe("accuracy", "canary", 1.0)
        judge.observe("accuracy", "champion", 1.0)
    judged = judge.judge()
    assert judged.state == "worse" and judged.deciding == ("errors",)
    assert judged.to_dict()["signals"]["accuracy"]["state"] == "undecided"


def test_settings_merge_defaults_and_name_bad_keys() -> None:
    settings = CanarySettings.parse({"signals": {"latency": {"enabled": False}}})
    assert "latency" not in settings.enabled() and "errors" in settings.enabled()
    assert settings.signals["slow"].tau == 0.05  # defaults kept for the others
    with pytest.raises(ConfigError, match=r"serve\.canary_judge\.signals\.speed"):
        CanarySettings.parse({"signals": {"speed": {}}}, "serve.canary_judge")
    with pytest.raises(ConfigError, match=r"canary\.min_samples"):
        CanarySettings.parse({"min_samples": 1})
