"""Circuit breakers: stop calling an encoder that keeps failing, try it again later.

States:

- ``closed``: calls go through; ``failure_threshold`` failures in a row open the breaker.
- ``open``: calls are refused at once (`BreakerOpenError`) for ``reset_timeout`` seconds.
- ``half_open``: up to ``half_open_max`` trial calls go through; a success closes the
  breaker, a failure opens it again for another ``reset_timeout``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, TypeVar

from polyfuse.core.errors import PolyfuseError

R = TypeVar("R")


class BreakerState(StrEnum):
    """Breaker states."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerOpenError(PolyfuseError):
    """A call was refused because the breaker is open.

    Attributes:
        name: the breaker's name (a modality).
        retry_in: seconds until the breaker lets a trial call through.
    """

    def __init__(self, name: str, retry_in: float) -> None:
        self.name = name
        self.retry_in = retry_in
        super().__init__(
            f"the circuit breaker of '{name}' is open after repeated failures",
            hint=f"it lets a trial call through in {retry_in:.1f} s",
        )


class CircuitBreaker:
    """A thread-safe circuit breaker.

    Args:
        name: shown in errors and stats.
        failure_threshold: consecutive failures that open the breaker.
        reset_timeout: seconds the breaker stays open before a trial.
        half_open_max: trial calls allowed at once while half-open.
        clock: monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        name: str = "breaker",
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        half_open_max: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or half_open_max < 1 or reset_timeout < 0:
            raise ValueError(
                f"{name}: need failure_threshold >= 1, half_open_max >= 1, reset_timeout >= 0"
            )
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.half_open_max = half_open_max
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trials = 0
        self._opens = 0

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker turns half-open once its timeout passed)."""
        with self._lock:
            return self._current()

    def _current(self) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.reset_timeout
        ):
            self._state = BreakerState.HALF_OPEN
            self._trials = 0
        return self._state

    def acquire(self) -> None:
        """Ask to make a call; pair it with `record_success` or `record_failure`.

        Raises:
            BreakerOpenError: open, or half-open with every trial slot taken.
        """
        with self._lock:
            state = self._current()
            if state is BreakerState.CLOSED:
                return
            if state is BreakerState.HALF_OPEN and self._trials < self.half_open_max:
                self._trials += 1
                return
            retry_in = max(0.0, self._opened_at + self.reset_timeout - self._clock())
        raise BreakerOpenError(self.name, retry_in)

    def record_success(self) -> None:
        """A call succeeded: close the breaker."""
        with self._lock:
            self._state = BreakerState.CLOSED
            self._failures = 0
            self._trials = 0

    def record_failure(self) -> None:
        """A call failed: open after ``failure_threshold`` in a row, or at once if half-open."""
        with self._lock:
            state = self._current()
            self._failures += 1
            if state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
                if state is not BreakerState.OPEN:
                    self._opens += 1
                self._state = BreakerState.OPEN
                self._opened_at = self._clock()
                self._trials = 0

    def call(self, fn: Callable[[], R]) -> R:
        """Run ``fn()`` through the breaker (synchronous; no timeout)."""
        self.acquire()
        try:
            result = fn()
        except Exception:
            self.record_failure()
            raise
        self.record_success()
        return result

    async def acall(self, fn: Callable[[], Awaitable[R]], timeout: float | None = None) -> R:
        """Await ``fn()`` through the breaker; a timeout counts as a failure.

        Raises:
            BreakerOpenError: the breaker refused the call.
            TimeoutError: ``fn()`` took longer than ``timeout`` seconds.
        """
        self.acquire()
        try:
            result = await asyncio.wait_for(fn(), timeout)
        except asyncio.CancelledError:
            self.release()
            raise
        except Exception:
            self.record_failure()
            raise
        self.record_success()
        return result

    def release(self) -> None:
        """A call was abandoned (caller gone, queue full): neither success nor failure."""
        with self._lock:
            if self._state is BreakerState.HALF_OPEN and self._trials > 0:
                self._trials -= 1

    def snapshot(self) -> dict[str, Any]:
        """``{"state", "failures", "opens"}`` for metrics."""
        with self._lock:
            return {
                "state": str(self._current()),
                "failures": self._failures,
                "opens": self._opens,
            }


__all__ = ["BreakerOpenError", "BreakerState", "CircuitBreaker"]
