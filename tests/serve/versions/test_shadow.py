"""The shadow's queue: offers never wait, a full queue drops and counts, concurrency and
sampling are bounded, failures are counted."""

from __future__ import annotations

import asyncio
import random

from polyfuse.serve.config import ShadowSettings
from polyfuse.serve.versions.shadow import ShadowRunner


def test_a_full_queue_drops_and_counts_without_waiting() -> None:
    async def go() -> tuple[dict[str, int], list[int], int]:
        release = asyncio.Event()
        running: list[int] = []
        peak = 0

        async def work(job: int) -> None:
            nonlocal peak
            running.append(job)
            peak = max(peak, len(running) - len(done))
            await release.wait()
            done.append(job)

        done: list[int] = []
        runner: ShadowRunner[int] = ShadowRunner(work, ShadowSettings(queue=3, concurrency=2))
        accepted = [runner.offer(i) for i in range(10)]  # no await: offers never wait
        assert accepted[:3] == [True] * 3 and not any(accepted[5:])
        await asyncio.sleep(0.01)  # the workers take two jobs; the queue refills
        more = [runner.offer(i) for i in range(10, 14)]
        release.set()
        await runner.drain()
        await runner.close()
        assert sum(more) == 2
        return runner.stats(), done, peak

    stats, done, peak = asyncio.run(go())
    assert peak <= 2
    assert stats["offered"] == 14 and stats["queued"] == 5 and stats["dropped"] == 9
    assert stats["run"] == 5 == len(done) and stats["queue_depth"] == 0


def test_sampling_and_failures() -> None:
    async def go() -> dict[str, int]:
        async def work(job: int) -> None:
            if job % 2:
                raise RuntimeError("shadow broke")

        settings = ShadowSettings(sample=0.5, queue=1000)
        runner: ShadowRunner[int] = ShadowRunner(work, settings, rng=random.Random(1))
        for i in range(400):
            runner.offer(i)
        await runner.drain()
        await runner.close()
        return runner.stats()

    stats = asyncio.run(go())
    assert 150 < stats["offered"] < 250
    assert stats["run"] + stats["failed"] == stats["queued"] == stats["offered"]
    assert stats["failed"] > 0


def test_a_worker_rests_so_the_shadow_works_at_most_its_busy_share() -> None:
    """A shadow request of 20 ms at busy_share 0.2 is followed by 80 ms of rest: in half a
    second one worker runs about five of them, however many are queued."""
    import time

    async def go() -> tuple[int, float]:
        busy = 0.0

        async def work(job: int) -> None:
            nonlocal busy
            start = time.perf_counter()
            await asyncio.sleep(0.02)
            busy += time.perf_counter() - start

        settings = ShadowSettings(queue=1000, busy_share=0.2)
        runner: ShadowRunner[int] = ShadowRunner(work, settings)
        for i in range(100):
            runner.offer(i)
        began = time.perf_counter()
        await asyncio.sleep(0.5)
        elapsed = time.perf_counter() - began
        run = runner.stats()["run"]
        await runner.close()
        return run, busy / elapsed

    run, share = asyncio.run(go())
    assert 2 <= run <= 6, run
    assert share <= 0.3, share
