"""The shadow version's work queue: a copy of the traffic, run after the champion's answer
has gone out, within a fixed budget.

`ShadowRunner.offer` never waits: it queues the job, or drops and counts it when the queue
is full. ``concurrency`` tasks take jobs from the queue, one at a time each, so the shadow
never has more than ``concurrency`` requests in its encoders; ``sample`` mirrors only that
share of the requests; after each job a worker rests long enough that it works at most
``busy_share`` of the time. The champion therefore pays at most the queue operations per
request and ``concurrency * busy_share`` of a core (``benchmarks/serve_shadow.py`` measures
its p99 with and without a shadow).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from polyfuse.serve.config import ShadowSettings

log = logging.getLogger("polyfuse.serve.versions.shadow")
J = TypeVar("J")


@dataclass
class ShadowCounts:
    """What the runner has done: jobs offered, queued, dropped (queue full), run, failed."""

    offered: int = 0
    queued: int = 0
    dropped: int = 0
    run: int = 0
    failed: int = 0

    def to_dict(self) -> dict[str, int]:
        """JSON form."""
        return dict(vars(self))


class ShadowRunner(Generic[J]):
    """Runs ``work(job)`` for offered jobs in the background (see the module docstring).

    Args:
        work: the shadow's work for one job; its exceptions are logged and counted.
        settings: sample, queue size, concurrency.
        rng: random source of the sampling.
    """

    def __init__(
        self,
        work: Callable[[J], Awaitable[None]],
        settings: ShadowSettings | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.work = work
        self.settings = settings or ShadowSettings()
        self.counts = ShadowCounts()
        self._rng = rng or random.Random()
        self._queue: asyncio.Queue[J] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._busy = 0

    def offer(self, job: J) -> bool:
        """Queue ``job`` unless it is not sampled or the queue is full (counted as
        dropped); never waits. Call on the event loop."""
        if self.settings.sample < 1.0 and self._rng.random() >= self.settings.sample:
            return False
        self.counts.offered += 1
        queue = self._start()
        try:
            queue.put_nowait(job)
        except asyncio.QueueFull:
            self.counts.dropped += 1
            return False
        self.counts.queued += 1
        return True

    def _start(self) -> asyncio.Queue[J]:
        """The queue, and the worker tasks on the running loop (made on first use)."""
        if self._queue is None:
            queue: asyncio.Queue[J] = asyncio.Queue(self.settings.queue)
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._worker(queue)) for _ in range(self.settings.concurrency)
            ]
            self._queue = queue
        return self._queue

    async def _worker(self, queue: asyncio.Queue[J]) -> None:
        while True:
            job = await queue.get()
            # the champion's route is still writing its answer: let it finish first
            await asyncio.sleep(0)
            self._busy += 1
            start = time.perf_counter()
            try:
                await self.work(job)
                self.counts.run += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                self.counts.failed += 1
                log.exception(json.dumps({"event": "shadow_failed"}))
            finally:
                self._busy -= 1
                queue.task_done()
            share = self.settings.busy_share
            if share < 1.0:  # rest so that this worker works at most `share` of the time
                await asyncio.sleep((time.perf_counter() - start) * (1.0 / share - 1.0))

    def stats(self) -> dict[str, Any]:
        """Counts, queue depth and jobs in flight."""
        depth = 0 if self._queue is None else self._queue.qsize()
        return {**self.counts.to_dict(), "queue_depth": depth, "in_flight": self._busy}

    async def drain(self) -> None:
        """Wait until every queued job has run (tests, benchmarks)."""
        if self._queue is not None:
            await self._queue.join()

    async def close(self) -> None:
        """Stop the workers (queued jobs are dropped)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        self._queue = None
