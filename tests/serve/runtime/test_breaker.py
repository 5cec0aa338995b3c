"""CircuitBreaker states with a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from polyfuse.serve.runtime.breaker import BreakerOpenError, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def boom() -> int:
    raise RuntimeError("down")


def test_opens_after_consecutive_failures_and_refuses_calls() -> None:
    clock = Clock()
    b = CircuitBreaker("image", failure_threshold=3, reset_timeout=10, clock=clock)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            b.call(boom)
    assert b.state is BreakerState.CLOSED
    assert b.call(lambda: 5) == 5  # a success resets the count
    for _ in range(3):
        with pytest.raises(RuntimeError):
            b.call(boom)
    assert b.state is BreakerState.OPEN
    clock.now += 4
    with pytest.raises(BreakerOpenError, match="'image' is open") as info:
        b.call(lambda: 1)
    assert info.value.retry_in == pytest.approx(6)
    assert b.snapshot() == {"state": "open", "failures": 3, "opens": 1}


def test_half_open_allows_limited_trials_then_closes_on_success() -> None:
    clock = Clock()
    b = CircuitBreaker("text", failure_threshold=1, reset_timeout=5, half_open_max=1, clock=clock)
    with pytest.raises(RuntimeError):
        b.call(boom)
    clock.now += 5
    assert b.state is BreakerState.HALF_OPEN
    b.acquire()  # the one trial
    with pytest.raises(BreakerOpenError):
        b.acquire()  # a second concurrent trial is refused
    b.record_success()
    assert b.state is BreakerState.CLOSED


def test_a_failed_trial_opens_again_for_a_full_timeout() -> None:
    clock = Clock()
    b = CircuitBreaker("audio", failure_threshold=2, reset_timeout=5, clock=clock)
    for _ in range(2):
        b.record_failure()
    clock.now += 5
    with pytest.raises(RuntimeError):
        b.call(boom)
    assert b.state is BreakerState.OPEN
    clock.now += 4.9
    assert b.state is BreakerState.OPEN
    clock.now += 0.1
    assert b.state is BreakerState.HALF_OPEN
    assert b.snapshot()["opens"] == 2


def test_release_frees_a_trial_without_judging_the_encoder() -> None:
    clock = Clock()
    b = CircuitBreaker("x", failure_threshold=1, reset_timeout=1, clock=clock)
    b.record_failure()
    clock.now += 1
    b.acquire()
    b.release()
    b.acquire()  # the slot is free again
    assert b.state is BreakerState.HALF_OPEN


def test_async_call_timeout_counts_as_failure() -> None:
    b = CircuitBreaker("slow", failure_threshold=1, reset_timeout=60)

    async def never() -> int:
        await asyncio.Event().wait()
        return 0

    async def ok() -> int:
        return 3

    async def go() -> None:
        assert await b.acall(ok, timeout=5) == 3
        with pytest.raises(TimeoutError):
            await b.acall(never, timeout=0.01)
        with pytest.raises(BreakerOpenError):
            await b.acall(ok)

    asyncio.run(go())
    assert b.state is BreakerState.OPEN


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0)
