"""Canary routing: sticky per caller, the weight's share, growth that never moves a caller
back, random routing without a caller."""

from __future__ import annotations

import random

import pytest

from polyfuse.core.errors import ConfigError
from polyfuse.serve.http.inputs import route_key
from polyfuse.serve.versions.routing import CanaryRouter, bucket


def test_the_same_caller_always_gets_the_same_version() -> None:
    router = CanaryRouter("digits-v4-aa11bb22", 0.3)
    for caller in (f"user-{i}" for i in range(200)):
        first = router.canary(caller)
        assert all(router.canary(caller) == first for _ in range(5))


def test_the_canary_answers_its_weight_of_the_callers() -> None:
    router = CanaryRouter("v2", 0.1)
    share = sum(router.canary(f"user-{i}") for i in range(20_000)) / 20_000
    assert share == pytest.approx(0.1, abs=0.01)


def test_more_weight_only_moves_callers_to_the_canary() -> None:
    callers = [f"key-{i}" for i in range(2000)]
    low, high = CanaryRouter("v2", 0.05), CanaryRouter("v2", 0.2)
    on_low = {c for c in callers if low.canary(c)}
    on_high = {c for c in callers if high.canary(c)}
    assert on_low < on_high


def test_each_canary_draws_its_own_callers() -> None:
    callers = [f"key-{i}" for i in range(2000)]
    a = {c for c in callers if CanaryRouter("v2", 0.1).canary(c)}
    b = {c for c in callers if CanaryRouter("v3", 0.1).canary(c)}
    assert len(a & b) < len(a) / 2  # independent draws overlap by about 10 %


def test_without_a_caller_the_route_is_random_per_request() -> None:
    router = CanaryRouter("v2", 0.5, rng=random.Random(0))
    picks = [router.canary(None) for _ in range(400)]
    assert 150 < sum(picks) < 250


def test_weight_zero_and_bounds() -> None:
    assert not any(CanaryRouter("v2", 0.0).canary(f"k{i}") for i in range(100))
    assert all(CanaryRouter("v2", 1.0).canary(f"k{i}") for i in range(100))
    with pytest.raises(ConfigError, match="--canary-weight"):
        CanaryRouter("v2", 1.5)
    assert 0.0 <= bucket("k", "s") < 1.0


def test_route_key_prefers_the_header_and_ignores_anonymous_clients() -> None:
    assert route_key("end-user-7", "ab12cd34ef56") == "end-user-7"
    assert route_key(None, "ab12cd34ef56") == "ab12cd34ef56"
    assert route_key("  ", "ab12cd34ef56") == "ab12cd34ef56"
    assert route_key(None, "client:127.0.0.1") is None
    assert route_key(None, None) is None
    assert route_key("x" * 500, None) == "x" * 200
