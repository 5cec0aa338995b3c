"""What several `ModelRuntime`s of one process share: the preprocessing pool, the embedding
cache, and every encoder stage that is the same in each (issue 17: versions served side by
side run a shared encoder once).

A stage is named by its *stage key* (`ModelRuntime.stage_key`): the encoder's fingerprint
(class, version, parameters, contract, pretrained-weights digest), what preprocessing does
(contract, quality gate, drift statistics) and a digest of the encoder's and adapter's
weights. Two versions whose stage keys are equal get one micro-batcher, one circuit breaker
and one set of cache entries for it; trainable encoders differ by their weights, so a
retrained one is never shared by mistake. Preprocessing batchers are shared by the digest of
what a pool worker is sent (`worker_payload`), whatever the weights.

The runtimes register everything they build here, and `SharedStages.close` stops it once
after every runtime has closed its own fusion batcher.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from polyfuse.serve.runtime.batching import MicroBatcher, TuneResult
from polyfuse.serve.runtime.breaker import CircuitBreaker
from polyfuse.serve.runtime.cache import CachedValue, EmbeddingCache


@dataclass
class SharedStage:
    """One encoder stage as the first runtime that needed it built it.

    Attributes:
        batcher: its micro-batcher (encoder + adapter on batches).
        breaker: its circuit breaker.
        status: ``traced``, ``eager (why)``, ...
        tuning: the start-up batch-size measurement, if any.
        users: names of the runtimes that use it, first the one that built it.
    """

    batcher: MicroBatcher[Tensor, CachedValue]
    breaker: CircuitBreaker
    status: str
    tuning: TuneResult | None = None
    users: list[str] = field(default_factory=list)


class SharedStages:
    """The pool, cache and stages shared by the runtimes of one process (see the module
    docstring). Cheap to build; the first runtime's `setup` fills it."""

    def __init__(self) -> None:
        self.pool: Executor | None = None
        self.cache: EmbeddingCache | None = None
        self.cache_made = False
        self.stages: dict[str, SharedStage] = {}
        self.preprocessors: dict[str, MicroBatcher[Any, Any]] = {}

    def stage(self, key: str, user: str) -> SharedStage | None:
        """The stage ``key`` if a runtime built it already (``user`` is then counted among
        its users), else None."""
        found = self.stages.get(key)
        if found is not None and user not in found.users:
            found.users.append(user)
        return found

    def add(self, key: str, stage: SharedStage) -> None:
        """Register a stage a runtime built."""
        self.stages[key] = stage

    def shared(self) -> dict[str, list[str]]:
        """Stage key -> its users, for the stages more than one runtime uses."""
        return {k: list(s.users) for k, s in self.stages.items() if len(s.users) > 1}

    async def close(self) -> None:
        """Stop every batcher, the pool and the cache (after the runtimes closed)."""
        for s in self.stages.values():
            await s.batcher.close()
        for p in self.preprocessors.values():
            await p.close()
        if self.pool is not None:
            await asyncio.to_thread(self.pool.shutdown, wait=True, cancel_futures=True)
            self.pool = None
        if self.cache is not None:
            self.cache.close()
            self.cache = None
