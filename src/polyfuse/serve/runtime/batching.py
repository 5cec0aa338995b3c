"""Dynamic micro-batching: requests that arrive close together share one forward pass.

`MicroBatcher` collects items submitted from many coroutines into batches of at most
``max_batch`` items, waiting at most ``max_wait`` seconds after the oldest one, runs
``fn(items)`` on its own thread (torch releases the GIL) and resolves each caller with
its own result. One batch runs at a time per batcher, so items queue up while the
encoder works and the next batch is formed from them: under load batches fill, at low
load nothing waits longer than ``max_wait``.

`autotune` measures an encoder at several batch sizes and picks the fastest; it answers
``max_batch=1`` (no batching) when batching does not beat unbatched throughput, because on
a small CPU some encoders (EfficientNet-Lite0) get *slower* per item in bigger batches.

`OnlineTuner` keeps choosing while serving: start-up measurement can be wrong (a busy
machine, a synthetic sample smaller than real inputs), so a batcher given one caps its
batches at the size that real batches show to be fastest (see the class docstring).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from polyfuse.serve.types import ServeError

T = TypeVar("T")
R = TypeVar("R")

#: A batch function: items in, one result per item out, in the same order.
BatchFn = Callable[[list[T]], Sequence[R]]


_NOTHING: Any = object()  # no carry: the item was submitted to this batcher directly


@dataclass(eq=False)  # compared by identity: items may be tensors (`_active.remove`)
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    key: int
    arrived: float
    carry: Any = _NOTHING  # a chained item: what the batcher before this one answered
    forwarded: float = 0.0  # a chained item: when the batcher before this one handed it on


@dataclass(frozen=True)
class Chained(Generic[R]):
    """What a caller of a chained batcher gets when its item went on to the next batcher
    (see `MicroBatcher`'s ``then``): the next batcher's result, the first batcher's
    result for the item, and when (``time.perf_counter()``) it was handed on."""

    value: R
    carry: Any
    forwarded: float


@dataclass
class BatcherStats:
    """What a batcher has done so far (for metrics).

    Attributes:
        name: the batcher's name (a modality).
        max_batch: largest batch it forms.
        max_wait_ms: longest an item waits for company.
        queue_depth: items waiting now (not yet in a running batch).
        in_flight: items in the batch running now.
        batches: batches run.
        items: items answered (with a result or an error).
        errors: batches whose function raised.
        rejected: submissions refused because the queue was full.
        batch_sizes: batch size -> number of batches of that size.
        mean_batch_ms: mean wall time of one batch.
        online_cap: batch size the online tuner allows now (None: no online tuning).
        online_throughput: tuner's size bucket -> measured items per second.
        online_explorations: batches the tuner ran at a neighbouring size to measure it.
    """

    name: str
    max_batch: int
    max_wait_ms: float
    queue_depth: int
    in_flight: int
    batches: int
    items: int
    errors: int
    rejected: int
    batch_sizes: dict[int, int] = field(default_factory=dict)
    mean_batch_ms: float = 0.0
    online_cap: int | None = None
    online_throughput: dict[int, float] = field(default_factory=dict)
    online_explorations: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dict(self.__dict__)


class MicroBatcher(Generic[T, R]):
    """Groups concurrent submissions into batches for ``fn``.

    Args:
        fn: ``fn(items) -> results``, one per item in order; runs on the batcher's thread.
            An exception is forwarded to every item of the batch.
        max_batch: most items per call of ``fn`` (1 disables batching).
        max_wait: seconds a batch may wait for more items after its oldest one arrived.
        max_queue: most items waiting; beyond it `submit` raises ``ServeError("overloaded")``.
        size_key: item -> size (tokens, samples); a batch takes the items whose size is
            closest to its oldest item's, so little padding is wasted. None: arrival order.
        name: shown in stats and errors (the modality).
        online: an `OnlineTuner` (or True for a default one) that caps each batch by
            measurement; ``max_batch`` stays the hard ceiling. False: always ``max_batch``.
        clock: seconds counter timing each batch (tests pass a fake one).
        concurrency: batches that may run at once, each on its own thread (1: the next
            batch forms while one runs; more pipelines work that waits on something
            else, e.g. a process pool with several workers).
        inline_single: run a batch of one item on the event loop itself instead of the
            batcher's thread, saving two thread hand-offs; only for work of well under a
            millisecond (fusion). Items that arrive together still form one batch: the
            batch is taken after every ready caller has queued its item.
        then: a batcher the results go on to, straight from this batcher's thread (no
            hop through the event loop): preprocessing chained into its encoder. Each
            result is passed to ``route``; what it returns is queued on ``then`` as the
            item (past ``then``'s queue bound: it was admitted here), and the caller gets
            a `Chained` with ``then``'s result once that is done; when ``route`` returns
            None (an unreadable input) the caller gets this batcher's result at once.
        route: result -> the item for ``then``, or None to answer the caller now.
    """

    def __init__(
        self,
        fn: BatchFn[T, R],
        *,
        max_batch: int = 8,
        max_wait: float = 0.005,
        max_queue: int = 256,
        size_key: Callable[[T], int] | None = None,
        name: str = "batcher",
        online: OnlineTuner | bool = False,
        clock: Callable[[], float] = time.perf_counter,
        concurrency: int = 1,
        inline_single: bool = False,
        then: MicroBatcher[Any, Any] | None = None,
        route: Callable[[R], Any] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait < 0 or concurrency < 1:
            raise ValueError(
                f"{name}: need max_batch >= 1, max_queue >= 1, max_wait >= 0 and "
                f"concurrency >= 1 (got {max_batch}, {max_queue}, {max_wait}, {concurrency})"
            )
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_queue = max_queue
        self.size_key = size_key
        self.name = name
        self.tuner: OnlineTuner | None = None
        if isinstance(online, OnlineTuner):
            self.tuner = online
        elif online:
            self.tuner = OnlineTuner(max_batch)
        self.clock = clock
        self.concurrency = concurrency
        self.inline_single = inline_single
        if (then is None) != (route is None):
            raise ValueError(f"{name}: `then` and `route` go together")
        self.then = then
        self.route = route
        self._pending: list[_Pending[T, R]] = []
        self._active: list[list[_Pending[T, R]]] = []  # batches running now
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)  # items queued, or closed
        self._threads: list[threading.Thread] = []
        self._sizes: Counter[int] = Counter()
        self._items = self._errors = self._rejected = 0
        self._batch_seconds = 0.0
        self._closed = False

    async def submit(self, item: T, timeout: float | None = None) -> R:
        """Queue ``item`` and wait for its result.

        Args:
            item: the input.
            timeout: seconds to wait at most (queue + batch); then `TimeoutError` and the
                item is dropped from the queue, or its result ignored if its batch runs.
                One timer on the loop, cheaper than wrapping the call in
                ``asyncio.timeout`` or ``wait_for`` on every request.

        Raises:
            ServeError: ``overloaded`` when the queue is full, ``unavailable`` after `close`.
            TimeoutError: ``timeout`` passed.
            Exception: whatever ``fn`` raised for the batch holding ``item``.
        """
        return await self.submit_nowait(item, timeout)

    def submit_nowait(self, item: T, timeout: float | None = None) -> asyncio.Future[R]:
        """Queue ``item`` and return the future of its result (what `submit` awaits), so
        one coroutine can start several stages without a task per stage. Raises as
        `submit` does; must be called on the event loop that awaits the future."""
        if self._closed:
            raise ServeError("unavailable", f"the {self.name} batcher is closed")
        loop = asyncio.get_running_loop()
        key = self.size_key(item) if self.size_key is not None else 0
        future: asyncio.Future[R] = loop.create_future()
        with self._lock:
            # a chained batcher is as full as the queue it feeds: what it hands on is
            # queued there past that queue's own bound
            queued = len(self._pending) + (0 if self.then is None else len(self.then._pending))
            if queued >= self.max_queue:
                self._rejected += 1
                full = self if self.then is None else self.then
                raise ServeError(
                    "overloaded",
                    f"the {full.name} encoder queue is full ({self.max_queue} waiting)",
                    hint="retry after the delay, or add replicas",
                    retry_after=self._retry_after() if full is self else full.retry_after(),
                    details={"modality": full.name},
                )
            self._pending.append(_Pending(item, future, key, time.monotonic()))
            self._start_threads()
            if not self.inline_single:
                self._ready.notify()
        if self.inline_single:  # decide once every caller ready now has queued its item
            loop.call_soon(self._dispatch_on_loop)
        if timeout is not None:
            timer = loop.call_later(timeout, _expire, future)
            future.add_done_callback(lambda _: timer.cancel())
        return future

    def _forward(self, items: list[tuple[Any, _Pending[Any, Any], Any]]) -> None:
        """Queue ``(item, pending, carry)`` triples handed on by the batcher before this
        one (called on that batcher's thread)."""
        now, stamp = time.monotonic(), time.perf_counter()
        with self._lock:
            if self._closed:
                closed = [p for _, p, _ in items]
            else:
                closed = []
                for item, p, carry in items:
                    key = self.size_key(item) if self.size_key is not None else 0
                    self._pending.append(_Pending(item, p.future, key, now, carry, stamp))
                self._start_threads()
                self._ready.notify()
        if closed:
            error = ServeError("unavailable", f"the {self.name} batcher was closed")
            for p in closed:
                _deliver(p.future.get_loop(), [p], None, error)

    def retry_after(self) -> float:
        """Seconds until the queue has likely drained (at least 1)."""
        with self._lock:
            return self._retry_after()

    def _retry_after(self) -> float:
        batches = sum(self._sizes.values())
        per_item = self._batch_seconds / max(self._items, 1) if batches else 0.05
        return float(max(1, round(len(self._pending) * per_item + 0.5)))

    def _start_threads(self) -> None:
        """Start the batch threads on first use (call with the lock held)."""
        if self._threads:
            return
        for k in range(self.concurrency):
            thread = threading.Thread(
                target=self._serve, name=f"batch-{self.name}-{k}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    # ---- the batch threads ------------------------------------------------------
    def _serve(self) -> None:
        """One batch thread: take the next batch as soon as the last one is done.

        The event loop only queues items and receives results: the next batch starts
        here, without waiting for the loop to get round to it (under load the loop is
        busy parsing requests, and a hop through it before every batch left encoders
        idle between batches)."""
        while True:
            with self._lock:
                batch = self._next_batch()
                if batch is None:
                    return
                self._active.append(batch)
            self._execute(batch)

    def _next_batch(self) -> list[_Pending[T, R]] | None:
        """Wait for items and take a batch (lock held); None once closed."""
        while True:
            while not self._pending and not self._closed:
                self._ready.wait()
            if self._closed:
                return None
            self._fill()
            batch = self._take()
            if batch:
                return batch

    def _fill(self) -> None:
        """Wait until a batch's worth is queued or the oldest item has waited
        ``max_wait`` (lock held)."""
        if self.max_wait <= 0 or not self._pending:
            return
        size = self._limit()
        deadline = self._pending[0].arrived + self.max_wait
        while len(self._pending) < size and not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._ready.wait(remaining)

    def _limit(self) -> int:
        limit = self.max_batch
        if self.tuner is not None:
            limit = min(self.tuner.limit(len(self._pending)), limit)
        return limit

    def _take(self) -> list[_Pending[T, R]]:
        """The oldest item plus the queued items closest to it in size (least padding);
        items whose caller has gone (cancelled) are dropped. Lock held."""
        self._pending = [p for p in self._pending if not p.future.done()]
        if not self._pending:
            return []
        limit = self._limit()
        first, rest = self._pending[0], self._pending[1:]
        if self.size_key is not None:
            order = sorted(range(len(rest)), key=lambda i: (abs(rest[i].key - first.key), i))
        else:
            order = list(range(len(rest)))
        chosen = set(order[: limit - 1])
        batch = [first] + [rest[i] for i in sorted(chosen)]
        self._pending = [rest[i] for i in range(len(rest)) if i not in chosen]
        return batch

    def _execute(self, batch: list[_Pending[T, R]]) -> None:
        """Run ``fn`` over ``batch`` on this thread and hand the outcome to the callers'
        event loops (one hand-off per loop, not per item)."""
        start = self.clock()
        results: Sequence[Any] | None = None
        error: BaseException | None = None
        try:
            results = self._call([p.item for p in batch])
        except Exception as exc:  # forwarded to every caller of the batch
            error = exc
        seconds = self.clock() - start
        with self._lock:
            self._active.remove(batch)
            self._batch_seconds += seconds
            self._errors += error is not None
            if self.tuner is not None and error is None:  # a failed call says nothing
                self.tuner.observe(len(batch), seconds)
            self._sizes[len(batch)] += 1
            self._items += len(batch)
        if results is not None and self.then is not None and self.route is not None:
            results = self._hand_on(batch, results)
        elif results is not None and any(p.carry is not _NOTHING for p in batch):
            results = [
                r if p.carry is _NOTHING else Chained(r, p.carry, p.forwarded)
                for p, r in zip(batch, results, strict=True)
            ]
        by_loop: dict[asyncio.AbstractEventLoop, list[int]] = {}
        for i, p in enumerate(batch):
            if results is not None and results[i] is _NOTHING:
                continue  # handed on: the next batcher answers this caller
            by_loop.setdefault(p.future.get_loop(), []).append(i)
        for loop, indices in by_loop.items():
            values = None if results is None else [results[i] for i in indices]
            _deliver(loop, [batch[i] for i in indices], values, error)

    def _hand_on(self, batch: list[_Pending[T, R]], results: Sequence[R]) -> list[Any]:
        """Queue on ``then`` the results ``route`` maps to an item; those come back as
        ``_NOTHING`` (nothing to deliver now), the others as they are."""
        assert self.then is not None and self.route is not None
        out: list[Any] = []
        onward: list[tuple[Any, _Pending[Any, Any], Any]] = []
        for p, r in zip(batch, results, strict=True):
            item = None if p.future.done() else self.route(r)
            if item is None:
                out.append(r)
            else:
                onward.append((item, p, r))
                out.append(_NOTHING)
        if onward:
            self.then._forward(onward)
        return out

    def _dispatch_on_loop(self) -> None:
        """``inline_single``: a lone item with nothing running is run right here on the
        event loop (work of well under a millisecond: two thread hand-offs would cost
        more); anything else goes to the batch thread."""
        with self._lock:
            lone = len(self._pending) == 1 and not self._active and not self._closed
            if not lone:
                if self._pending:
                    self._ready.notify()
                return
            batch = self._take()
            if not batch:
                return
            self._active.append(batch)
        self._execute(batch)

    def _call(self, items: list[T]) -> Sequence[R]:
        results = self.fn(items)
        if len(results) != len(items):
            raise ServeError(
                "internal",
                f"the {self.name} batch function returned {len(results)} results "
                f"for {len(items)} items",
            )
        return results

    def stats(self) -> BatcherStats:
        """Counters and the batch size histogram."""
        with self._lock:
            batches = sum(self._sizes.values())
            return BatcherStats(
                name=self.name,
                max_batch=self.max_batch,
                max_wait_ms=self.max_wait * 1000,
                queue_depth=len(self._pending),
                in_flight=sum(len(batch) for batch in self._active),
                batches=batches,
                items=self._items,
                errors=self._errors,
                rejected=self._rejected,
                batch_sizes=dict(sorted(self._sizes.items())),
                mean_batch_ms=1000 * self._batch_seconds / batches if batches else 0.0,
                online_cap=None if self.tuner is None else self.tuner.cap,
                online_throughput={} if self.tuner is None else self.tuner.throughput(),
                online_explorations=0 if self.tuner is None else self.tuner.explorations,
            )

    async def close(self) -> None:
        """Refuse new items, fail waiting and running ones with ``unavailable`` and let
        the batch threads end (a running ``fn`` finishes; its results are dropped)."""
        with self._lock:
            self._closed = True
            waiting = self._pending + [p for batch in self._active for p in batch]
            self._pending = []
            self._ready.notify_all()
        error = ServeError("unavailable", f"the {self.name} batcher was closed")
        for p in waiting:
            _deliver(p.future.get_loop(), [p], None, error)


def _resolve(
    batch: list[_Pending[T, R]], results: list[Any] | None, error: BaseException | None
) -> None:
    """On the callers' loop: each caller's result, or ``error`` for all."""
    for i, p in enumerate(batch):
        if p.future.done():  # cancelled, or failed by close
            continue
        if results is not None:
            p.future.set_result(results[i])
        else:
            p.future.set_exception(error or RuntimeError(f"batch of {len(batch)} got nothing"))


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # a batch thread
        return None


def _deliver(
    loop: asyncio.AbstractEventLoop,
    batch: list[_Pending[T, R]],
    results: list[Any] | None,
    error: BaseException | None,
) -> None:
    """`_resolve` on ``loop``: right here when it is the running loop, else handed over
    (dropped when that loop has ended: nobody waits)."""
    with contextlib.suppress(RuntimeError):
        if loop is _running_loop():
            _resolve(batch, results, error)
        else:
            loop.call_soon_threadsafe(_resolve, batch, results, error)


@dataclass(frozen=True)
class TuneResult:
    """What `autotune` measured and chose.

    Attributes:
        max_batch: the chosen batch size (1: batching did not help).
        throughput: batch size -> items per second (median over repeats).
        batch_seconds: batch size -> median seconds of one call.
    """

    max_batch: int
    throughput: dict[int, float]
    batch_seconds: dict[int, float]

    @property
    def speedup(self) -> float:
        """Throughput of the chosen size over unbatched throughput."""
        return self.throughput[self.max_batch] / self.throughput[1]


def autotune(
    fn: BatchFn[T, Any],
    sample_items: Sequence[T],
    *,
    sizes: Sequence[int] = (1, 2, 4, 8, 16, 32),
    repeats: int = 3,
    min_gain: float = 1.15,
    budget_s: float = 10.0,
    clock: Callable[[], float] = time.perf_counter,
) -> TuneResult:
    """Measure ``fn`` at each batch size and pick the one with the best throughput.

    A size is chosen over unbatched (1) only when it is at least ``min_gain`` times
    faster per item, so batching never makes an encoder slower than unbatched. Sizes are
    tried in increasing order; measuring stops early once ``budget_s`` is spent or a
    size is slower than half the best so far.

    Args:
        fn: the batch function (warmed up once per size before timing).
        sample_items: representative items; cycled to fill bigger batches.
        sizes: candidate batch sizes; 1 is always measured.
        repeats: timed calls per size (the median counts).
        min_gain: throughput ratio over unbatched needed to batch at all.
        budget_s: wall-time budget for the whole measurement.
        clock: seconds counter (tests pass a fake one).
    """
    if not sample_items:
        raise ValueError("autotune needs at least one sample item")
    start = clock()
    throughput: dict[int, float] = {}
    seconds: dict[int, float] = {}
    for size in sorted({1, *sizes}):
        items = [sample_items[i % len(sample_items)] for i in range(size)]
        fn(items)  # warm-up (allocations, lazy init)
        times = []
        for _ in range(max(1, repeats)):
            t = clock()
            fn(items)
            times.append(clock() - t)
        seconds[size] = statistics.median(times)
        throughput[size] = size / max(seconds[size], 1e-9)
        best = max(throughput.values())
        if clock() - start > budget_s or throughput[size] < best / 2:
            break
    best_size = max(throughput, key=lambda s: (throughput[s], -s))
    if throughput[best_size] < throughput[1] * min_gain:
        best_size = 1
    return TuneResult(best_size, throughput, seconds)


def _bucket(size: int) -> int:
    """The power of two at or below ``size`` (a batch of 3 counts in bucket 2)."""
    return 1 << (max(size, 1).bit_length() - 1)


class OnlineTuner:
    """Chooses a batcher's batch size while it serves, from the batches it really ran.

    Every batch reports its size and wall seconds (`observe`). Per-item seconds are kept
    per size bucket, a power of two: a batch of ``n`` items counts in the largest power of
    two <= ``n`` (3 -> 2, 12 -> 8). That is honest about low load: a small batch is
    small because few requests were queued, and it only speaks for the sizes it reached;
    a bucket's number is an exponentially weighted mean (weight ``alpha`` per batch), so it
    follows drift. The cap is the bucket with the most items per second among buckets
    with ``min_samples`` batches, but a bucket other than 1 wins only when at least
    ``min_gain`` times faster than bucket 1: batching never makes an encoder slower.
    The cap is thus a power of two, at most ``max_batch``, at least 1.

    Every ``every`` batches one batch explores a neighbouring size, alternately up and
    down. Up: twice the largest measured bucket that is at least as fast as the cap (so
    a 1.1x gain at 2 still leads on to try 4), only when that many items are queued
    (otherwise the exploration waits for a fuller queue) and never above ``max_batch``.
    Down: half the cap, refreshing a smaller bucket whose number may be stale.

    Args:
        max_batch: largest batch size it may allow (the batcher's ``max_batch``).
        seed: start-up `TuneResult`; its sizes seed the buckets (as ``min_samples``
            batches each) and its choice is the first cap. None: start at 1.
        every: batches between explorations.
        min_samples: batches a bucket needs before it can be chosen.
        min_gain: throughput ratio over bucket 1 needed to batch at all.
        alpha: weight of the newest batch in a bucket's mean.
    """

    def __init__(
        self,
        max_batch: int,
        *,
        seed: TuneResult | None = None,
        every: int = 20,
        min_samples: int = 3,
        min_gain: float = 1.15,
        alpha: float = 0.3,
    ) -> None:
        if max_batch < 1 or every < 1 or min_samples < 1 or not 0 < alpha <= 1:
            raise ValueError("OnlineTuner needs max_batch, every, min_samples >= 1, 0 < alpha <= 1")
        self.max_batch, self.every, self.min_samples = max_batch, every, min_samples
        self.min_gain, self.alpha = min_gain, alpha
        self.per_item: dict[int, float] = {}  # bucket -> mean seconds per item
        self.samples: Counter[int] = Counter()  # bucket -> batches seen
        self.cap = 1
        self.explorations = 0
        self._since = 0  # batches since the last exploration
        self._up = True  # direction of the next exploration
        if seed is not None:
            for size, seconds in seed.batch_seconds.items():
                if size == _bucket(size) and size <= max_batch:
                    self.per_item[size] = seconds / size
                    self.samples[size] = min_samples
            self.cap = _bucket(min(seed.max_batch, max_batch))

    def throughput(self) -> dict[int, float]:
        """Bucket -> items per second, for buckets with enough batches."""
        return {
            b: 1 / max(self.per_item[b], 1e-12)
            for b in sorted(self.per_item)
            if self.samples[b] >= self.min_samples
        }

    def limit(self, queued: int) -> int:
        """Most items the next batch may take with ``queued`` waiting (call once a batch)."""
        self._since += 1
        if self._since < self.every:
            return self.cap
        rates = self.throughput()
        frontier = max([b for b in rates if rates[b] >= rates.get(self.cap, 0.0)] + [self.cap])
        up, down = 2 * frontier, self.cap // 2
        can_up, can_down = up <= self.max_batch and queued >= up, down >= 1
        if not (can_up or can_down):
            return self.cap  # still due: explore once the queue can fill a bigger batch
        go_up = can_up and (self._up or not can_down)
        self._since, self._up = 0, not go_up
        self.explorations += 1
        return up if go_up else down

    def observe(self, size: int, seconds: float) -> None:
        """Record a batch of ``size`` items that took ``seconds``; update the cap."""
        b = min(_bucket(size), _bucket(self.max_batch))
        per_item = max(seconds, 0.0) / max(size, 1)
        old = self.per_item.get(b)
        self.per_item[b] = per_item if old is None else old + self.alpha * (per_item - old)
        self.samples[b] += 1
        rates = self.throughput()
        if 1 in rates:  # without an unbatched baseline the cap stays as it is
            best = max(rates, key=lambda s: (rates[s], -s))
            self.cap = best if rates[best] >= self.min_gain * rates[1] else 1


__all__ = ["BatchFn", "BatcherStats", "MicroBatcher", "OnlineTuner", "TuneResult", "autotune"]
