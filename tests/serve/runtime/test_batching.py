"""MicroBatcher and autotune with small fake batch functions (no timing assertions)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from polyfuse.serve.runtime.batching import (
    Chained,
    MicroBatcher,
    OnlineTuner,
    TuneResult,
    autotune,
)
from polyfuse.serve.types import ServeError


class GatedFn:
    """Records every batch; the first call blocks until `release`, so later items queue up."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.gate = threading.Event()
        self.fail = fail

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.started.set()
        self.gate.wait(10)
        if self.fail:
            raise RuntimeError("encoder exploded")
        return [x * 10 for x in items]


async def _queue_behind_first(
    batcher: MicroBatcher[int, int], fn: GatedFn, later: list[int]
) -> list[asyncio.Task[int]]:
    """Submit 0, wait until its batch runs, then queue ``later`` behind it."""
    tasks = [asyncio.create_task(batcher.submit(0))]
    await asyncio.to_thread(fn.started.wait, 10)
    for x in later:
        tasks.append(asyncio.create_task(batcher.submit(x)))
    while batcher.stats().queue_depth < len(later):
        await asyncio.sleep(0)
    return tasks


def run(coro: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(coro())


def test_items_queued_while_a_batch_runs_form_the_next_batch() -> None:
    fn = GatedFn()
    batcher = MicroBatcher(fn, max_batch=4, max_wait=0.0, name="text")

    async def go() -> list[int]:
        tasks = await _queue_behind_first(batcher, fn, [1, 2, 3, 4, 5])
        fn.gate.set()
        return list(await asyncio.gather(*tasks))

    assert run(go) == [0, 10, 20, 30, 40, 50]
    assert fn.batches == [[0], [1, 2, 3, 4], [5]]
    stats = batcher.stats()
    assert stats.batch_sizes == {1: 2, 4: 1} and stats.items == 6 and stats.batches == 3


def test_batches_group_items_of_similar_size() -> None:
    fn = GatedFn()
    batcher = MicroBatcher(fn, max_batch=2, max_wait=0.0, size_key=lambda x: x)

    async def go() -> None:
        tasks = await _queue_behind_first(batcher, fn, [1, 100, 2, 101])
        fn.gate.set()
        await asyncio.gather(*tasks)

    run(go)
    assert fn.batches == [[0], [1, 2], [100, 101]]


def test_an_exception_reaches_every_item_of_the_batch() -> None:
    fn = GatedFn(fail=True)
    batcher = MicroBatcher(fn, max_batch=8, max_wait=0.0)

    async def go() -> list[Any]:
        tasks = await _queue_behind_first(batcher, fn, [1, 2, 3])
        fn.gate.set()
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    results = run(go)
    assert len(results) == 4
    assert all(isinstance(r, RuntimeError) and "exploded" in str(r) for r in results)
    assert batcher.stats().errors == 2


def test_a_full_queue_answers_overloaded_with_retry_after() -> None:
    fn = GatedFn()
    batcher = MicroBatcher(fn, max_batch=1, max_wait=0.0, max_queue=2, name="image")

    async def go() -> ServeError:
        tasks = await _queue_behind_first(batcher, fn, [1, 2])
        with pytest.raises(ServeError) as info:
            await batcher.submit(3)
        fn.gate.set()
        await asyncio.gather(*tasks)
        return info.value

    err = run(go)
    assert err.code == "overloaded" and err.status == 503
    assert err.retry_after is not None and err.retry_after >= 1
    assert err.details == {"modality": "image"}
    assert batcher.stats().rejected == 1


def test_waits_for_company_until_the_batch_is_full() -> None:
    calls: list[list[int]] = []

    def fn(items: list[int]) -> list[int]:
        calls.append(items)
        return items

    # a long max_wait: the batch goes as soon as it is full, not when the wait ends
    batcher = MicroBatcher(fn, max_batch=3, max_wait=30.0)

    async def go() -> list[int]:
        return list(await asyncio.gather(*(batcher.submit(i) for i in range(3))))

    assert run(go) == [0, 1, 2]
    assert calls == [[0, 1, 2]]


def test_a_wrong_number_of_results_is_an_internal_error() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(lambda items: [1, 2, 3], max_batch=1)

    async def go() -> None:
        await batcher.submit(1)

    with pytest.raises(ServeError, match="returned 3 results for 1 items") as info:
        run(go)
    assert info.value.code == "internal"


def test_a_closed_batcher_is_unavailable_and_works_across_event_loops() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(lambda items: items, max_batch=2)

    async def one() -> int:
        return await batcher.submit(7)

    assert run(one) == 7
    assert run(one) == 7  # a second asyncio.run binds a new worker

    async def close_then_submit() -> None:
        await batcher.close()
        await batcher.submit(1)

    with pytest.raises(ServeError) as info:
        run(close_then_submit)
    assert info.value.code == "unavailable"


class TwoGates:
    """Each call blocks on its own gate (by call number), so two batches can be running."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.running = threading.Semaphore(0)
        self.gates = [threading.Event() for _ in range(8)]
        self.lock = threading.Lock()

    def __call__(self, items: list[int]) -> list[int]:
        with self.lock:
            k = len(self.batches)
            self.batches.append(list(items))
        self.running.release()
        self.gates[k].wait(10)
        return [x * 10 for x in items]


def test_concurrency_runs_a_second_batch_while_the_first_is_busy() -> None:
    fn = TwoGates()
    batcher = MicroBatcher(fn, max_batch=3, max_wait=0.0, concurrency=2, name="pre")

    async def go() -> list[int]:
        first = asyncio.create_task(batcher.submit(0))
        await asyncio.to_thread(fn.running.acquire, True, 10)  # batch 0 runs, blocked
        later = [asyncio.create_task(batcher.submit(x)) for x in (1, 2, 3)]
        await asyncio.to_thread(fn.running.acquire, True, 10)  # batch 1 runs too
        assert batcher.stats().in_flight == 4  # both batches at once
        third = asyncio.create_task(batcher.submit(4))  # no free slot: waits
        await asyncio.sleep(0.05)
        assert len(fn.batches) == 2 and batcher.stats().queue_depth == 1
        fn.gates[1].set()  # the second batch finishes first
        done = await asyncio.gather(*later)
        assert not first.done()
        fn.gates[0].set()
        fn.gates[2].set()
        return [await first, *done, await third]

    assert run(go) == [0, 10, 20, 30, 40]
    assert fn.batches == [[0], [1, 2, 3], [4]]
    assert batcher.stats().in_flight == 0


def test_closing_fails_the_items_of_running_batches() -> None:
    fn = TwoGates()
    batcher = MicroBatcher(fn, max_batch=2, concurrency=2, name="pre")

    async def go() -> BaseException | int:
        task = asyncio.create_task(batcher.submit(1))
        await asyncio.to_thread(fn.running.acquire, True, 10)
        await batcher.close()
        fn.gates[0].set()
        return (await asyncio.gather(task, return_exceptions=True))[0]

    err = run(go)
    assert isinstance(err, ServeError) and err.code == "unavailable"


def test_inline_single_runs_a_lone_item_on_the_loop_and_batches_the_rest() -> None:
    threads: list[tuple[int, int]] = []  # (batch size, thread id)

    def fn(items: list[int]) -> list[int]:
        threads.append((len(items), threading.get_ident()))
        return [x + 1 for x in items]

    batcher = MicroBatcher(fn, max_batch=8, inline_single=True, name="fusion")

    async def go() -> tuple[int, list[int], int]:
        loop_thread = threading.get_ident()
        alone = await batcher.submit(1)
        together = await asyncio.gather(*(batcher.submit(x) for x in (10, 20, 30)))
        return alone, list(together), loop_thread

    alone, together, loop_thread = run(go)
    assert alone == 2 and together == [11, 21, 31]
    assert threads[0] == (1, loop_thread)  # no hand-off for the lone item
    assert threads[1][0] == 3 and threads[1][1] != loop_thread  # a real batch: its thread
    assert batcher.stats().batch_sizes == {1: 1, 3: 1}


@pytest.mark.parametrize(
    "bad", [{"max_batch": 0}, {"max_queue": 0}, {"max_wait": -1.0}, {"concurrency": 0}]
)
def test_bad_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="need max_batch"):
        MicroBatcher(lambda items: items, **bad)


class FakeCost:
    """A batch function whose cost in fake seconds is ``cost(batch size)``."""

    def __init__(self, cost: Callable[[int], float]) -> None:
        self.now = 0.0
        self.cost = cost

    def clock(self) -> float:
        return self.now

    def __call__(self, items: list[int]) -> list[int]:
        self.now += self.cost(len(items))
        return items


def test_autotune_picks_the_fastest_batch_when_batching_helps() -> None:
    # MiniLM-like: a fixed overhead per call, cheap per item
    fake = FakeCost(lambda b: 0.010 + 0.002 * b)
    result = autotune(fake, [1], sizes=(1, 2, 4, 8, 16), clock=fake.clock)
    assert result.max_batch == 16
    assert result.throughput[1] == pytest.approx(1 / 0.012)
    assert result.speedup > 2


def test_autotune_keeps_batch_one_when_bigger_batches_are_slower_per_item() -> None:
    # EfficientNet-Lite0 on 2 cores: per-item cost grows with the batch
    fake = FakeCost(lambda b: 0.0175 * b * (1 + 0.05 * (b - 1)))
    result = autotune(fake, [1], sizes=(1, 2, 4, 8, 16, 32, 64), clock=fake.clock)
    assert result.max_batch == 1 and result.speedup == 1.0
    assert result.throughput[32] < result.throughput[1] / 2
    assert 64 not in result.throughput  # stopped once a size fell under half the best


def test_autotune_needs_a_real_gain_to_batch() -> None:
    fake = FakeCost(lambda b: 0.01 * b * (0.95 if b > 1 else 1.0))  # 5 % faster: not enough
    assert autotune(fake, [1], sizes=(1, 2, 4), clock=fake.clock).max_batch == 1
    with pytest.raises(ValueError, match="at least one sample"):
        autotune(fake, [], clock=fake.clock)


# ---- online tuning -------------------------------------------------------------------


def minilm(b: int) -> float:
    """Fake seconds of a batch of ``b``: fixed overhead, cheap per item (batching helps)."""
    return 0.010 + 0.002 * b


def efficientnet(b: int) -> float:
    """Fake seconds of a batch of ``b``: per-item cost grows with the batch (2-core CPU)."""
    return 0.0175 * b * (1 + 0.05 * (b - 1))


def seed(max_batch: int, batch_seconds: dict[int, float]) -> TuneResult:
    throughput = {b: b / s for b, s in batch_seconds.items()}
    return TuneResult(max_batch, throughput, batch_seconds)


def drive(tuner: OnlineTuner, cost: Callable[[int], float], batches: int) -> list[int]:
    """Run ``batches`` batches with a full queue; the cap after each one."""
    caps = []
    for _ in range(batches):
        size = tuner.limit(queued=100)
        assert 1 <= size <= tuner.max_batch
        tuner.observe(size, cost(size))
        caps.append(tuner.cap)
    return caps


def test_online_cap_grows_from_one_to_the_best_size_when_batching_helps() -> None:
    tuner = OnlineTuner(16, every=5)
    assert tuner.cap == 1
    caps = drive(tuner, minilm, 200)
    assert caps[-1] == 16
    # step by step, one bucket per exploration, never back down
    assert [c for i, c in enumerate(caps) if i == 0 or c != caps[i - 1]] == [1, 2, 4, 8, 16]
    assert tuner.throughput()[16] == pytest.approx(16 / minilm(16))


def test_online_explores_past_a_small_gain_and_stops_at_the_best_size() -> None:
    # 2 is only 1.1x unbatched (under min_gain), 4 is 1.4x, 8 is no better than 1
    per_item = {1: 1.0, 2: 1 / 1.1, 4: 1 / 1.4, 8: 1.0, 16: 1.2}
    tuner = OnlineTuner(16, every=4)
    caps = drive(tuner, lambda b: b * per_item[b], 300)
    assert caps[-1] == 4 and max(caps) == 4
    assert 2 not in caps  # 1.1x never justified batching


def test_online_cap_shrinks_to_one_when_bigger_batches_are_slower_per_item() -> None:
    # start-up chose 16 (small synthetic sample, and a busy machine made 1 look slow)
    start = seed(16, {1: 0.030, 2: 0.020, 4: 0.030, 8: 0.050, 16: 0.080})
    tuner = OnlineTuner(32, seed=start, every=10)
    assert tuner.cap == 16
    caps = drive(tuner, efficientnet, 600)
    assert caps[-1] == 1 and set(caps[-200:]) == {1}
    # bucket 1 was refreshed by exploring down: now the real 57 items/s
    assert tuner.throughput()[1] == pytest.approx(1 / efficientnet(1), rel=0.02)


def test_online_cap_stays_between_one_and_max_batch() -> None:
    # seeded with 32 but the batcher allows 8: cap 8, and exploring never goes above it
    tuner = OnlineTuner(8, seed=seed(32, {1: 0.01, 8: 0.02, 32: 0.04}), every=2)
    assert tuner.cap == 8
    assert set(drive(tuner, minilm, 100)) == {8}
    assert tuner.explorations == 50  # all down (to 4): up is not allowed
    # batches bigger than max_batch (a batcher with a larger ceiling) count in its bucket
    tuner.observe(20, 0.01)
    assert set(tuner.per_item) <= {1, 2, 4, 8}

    slow = OnlineTuner(8, every=2)
    assert set(drive(slow, efficientnet, 100)) == {1}
    slow.observe(1, 0.0)  # a clock that did not move must not break anything
    assert slow.cap == 1
    with pytest.raises(ValueError, match="OnlineTuner needs"):
        OnlineTuner(0)


def test_online_explores_every_n_batches_alternately_up_and_down() -> None:
    # measured best is 4, so up means 8 and down means 2
    tuner = OnlineTuner(16, seed=seed(4, {1: 0.01, 2: 0.012, 4: 0.016, 8: 0.04}), every=5)
    limits = [tuner.limit(queued=100) for _ in range(20)]
    assert limits == [4, 4, 4, 4, 8, 4, 4, 4, 4, 2] * 2
    assert tuner.explorations == 4

    # at cap 1 an exploration waits until the queue can fill a batch of 2
    one = OnlineTuner(16, every=3)
    assert [one.limit(queued=1) for _ in range(5)] == [1, 1, 1, 1, 1]
    assert one.explorations == 0
    assert one.limit(queued=2) == 2 and one.explorations == 1
    assert [one.limit(queued=9) for _ in range(3)] == [1, 1, 2]


class TimedGatedFn(GatedFn):
    """A GatedFn that also advances a fake clock by ``cost(batch size)`` (a `FakeCost`)."""

    def __init__(self, cost: Callable[[int], float], fail: bool = False) -> None:
        super().__init__(fail)
        self.fake = FakeCost(cost)
        self.clock = self.fake.clock

    def __call__(self, items: list[int]) -> list[int]:
        self.fake(items)
        return super().__call__(items)


def test_a_batcher_forms_batches_up_to_the_online_cap_and_shows_it_in_stats() -> None:
    fake = TimedGatedFn({1: 0.010, 2: 0.012}.__getitem__)
    tuner = OnlineTuner(8, seed=seed(2, {1: 0.010, 2: 0.012, 4: 0.040}), every=1000)
    batcher = MicroBatcher(fake, max_batch=8, max_wait=0.0, online=tuner, clock=fake.clock)

    async def go() -> list[int]:
        tasks = await _queue_behind_first(batcher, fake, [1, 2, 3, 4, 5, 6])
        fake.gate.set()
        return list(await asyncio.gather(*tasks))

    assert run(go) == [0, 10, 20, 30, 40, 50, 60]
    assert fake.batches == [[0], [1, 2], [3, 4], [5, 6]]  # cap 2, not max_batch 8
    assert tuner.samples[1] == 3 + 1 and tuner.samples[2] == 3 + 3  # seed + observed
    stats = batcher.stats()
    assert stats.online_cap == 2 and stats.max_batch == 8
    assert stats.online_throughput[2] == pytest.approx(2 / 0.012)
    assert stats.to_dict()["online_cap"] == 2 and stats.online_explorations == 0


def test_online_tuning_is_off_by_default_and_ignores_failed_batches() -> None:
    plain: MicroBatcher[int, int] = MicroBatcher(lambda items: items, max_batch=4)
    assert plain.tuner is None
    assert plain.stats().to_dict()["online_cap"] is None

    fake = TimedGatedFn(lambda b: 0.01, fail=True)
    batcher = MicroBatcher(fake, max_batch=4, max_wait=0.0, online=True, clock=fake.clock)
    assert batcher.tuner is not None and batcher.stats().online_cap == 1

    async def go() -> None:
        tasks = await _queue_behind_first(batcher, fake, [1])
        fake.gate.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    run(go)
    assert batcher.stats().errors == 2 and not batcher.tuner.samples


def test_a_timeout_fails_the_caller_and_its_item_is_dropped_or_ignored() -> None:
    fn = GatedFn()
    batcher = MicroBatcher(fn, max_batch=4, max_wait=0.0, name="audio")

    async def go() -> tuple[BaseException | int, ...]:
        running = asyncio.create_task(batcher.submit(0, 0.05))  # its batch hangs
        await asyncio.to_thread(fn.started.wait, 10)
        queued = asyncio.create_task(batcher.submit(1, 0.05))  # waits behind it
        late = await asyncio.gather(running, queued, return_exceptions=True)
        fn.gate.set()
        return (*late, await batcher.submit(2, 5.0))

    first, second, third = run(go)
    assert isinstance(first, TimeoutError) and isinstance(second, TimeoutError)
    assert third == 20
    assert fn.batches == [[0], [2]]  # the timed-out queued item never ran


def test_a_chained_batcher_hands_results_on_without_the_event_loop() -> None:
    encoder = GatedFn()
    encoder.gate.set()
    enc = MicroBatcher(encoder, max_batch=8, max_wait=0.0, name="audio", size_key=abs)
    threads: list[str] = []

    def parse(items: list[str]) -> list[str]:
        threads.append(threading.current_thread().name)
        return items

    def route(text: str) -> int | None:  # "bad" is answered by the first batcher itself
        # runs on the first batcher's thread: the hand-on never goes through the loop
        assert threading.current_thread().name.startswith("batch-pre")
        return None if text == "bad" else int(text)

    pre = MicroBatcher(parse, max_batch=8, max_wait=0.0, name="pre", then=enc, route=route)

    async def go() -> list[Any]:
        futures = [pre.submit_nowait(x) for x in ("1", "bad", "3")]
        return list(await asyncio.gather(*futures))

    first, bad, third = run(go)
    assert bad == "bad"  # not handed on: the first batcher's own answer
    assert isinstance(first, Chained) and isinstance(third, Chained)
    assert (first.value, first.carry, third.value, third.carry) == (10, "1", 30, "3")
    assert first.forwarded > 0 and sorted(x for b in encoder.batches for x in b) == [1, 3]
    assert threads and all(t.startswith("batch-pre") for t in threads)


def test_a_chained_batcher_is_full_when_the_queue_it_feeds_is() -> None:
    encoder = GatedFn()
    enc = MicroBatcher(encoder, max_batch=1, max_wait=0.0, max_queue=2, name="audio")
    pre = MicroBatcher(
        lambda xs: xs, max_batch=4, max_wait=0.0, max_queue=2, name="pre", then=enc, route=int
    )

    async def go() -> ServeError:
        futures = [pre.submit_nowait(0)]
        await asyncio.to_thread(encoder.started.wait, 10)  # 0 is in the encoder
        futures += [pre.submit_nowait(x) for x in (1, 2)]
        while enc.stats().queue_depth < 2:  # 1 and 2 wait in the encoder's queue
            await asyncio.sleep(0.001)
        with pytest.raises(ServeError) as info:
            pre.submit_nowait(3)
        encoder.gate.set()
        await asyncio.gather(*futures)
        return info.value

    err = run(go)
    assert err.code == "overloaded" and err.details == {"modality": "audio"}
    assert pre.stats().rejected == 1


def test_chaining_needs_both_then_and_route() -> None:
    with pytest.raises(ValueError, match="go together"):
        MicroBatcher(lambda xs: xs, then=MicroBatcher(lambda xs: xs))
