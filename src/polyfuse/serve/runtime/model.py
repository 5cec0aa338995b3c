"""The serving runtime: a trained artifact behind preprocessing pools, micro-batched
encoders, an embedding cache and circuit breakers. No HTTP here (see `polyfuse.serve.http.app`).

One request flows, per modality and concurrently::

    raw content -> cache lookup (content sha256 + encoder version)
                -> preprocessing batcher (contract.load + gate + preprocess, on its own
                   thread, or in a process pool when the modality's preprocessing is
                   costly: ``RuntimeConfig.preprocess``)
                -> chained straight on to MicroBatcher(encoder + adapter), behind a
                   circuit breaker and a timeout
                -> cache store

A request is one coroutine: it queues each modality's input, awaits one future per
modality (preprocessing hands its tensor to the encoder's queue from its own thread,
not through the event loop) and one for fusion.

then the pooled embeddings of the modalities that succeeded are fused for the request
(`MultimodalModel.fuse`) and decoded into a `ServeResult`. A modality whose encoder
failed, timed out or has an open breaker, or whose input failed the modality's quality gate
(`polyfuse.modalities.quality`, run between ``load`` and ``preprocess``), is left out and
the answer is marked ``degraded`` with the reason (or refused under ``degraded="refuse"``).
When every given modality is left out the request is refused: ``low_quality`` (422) when
every one failed its gate, else ``unavailable``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polyfuse.artifacts.classifier import Artifact
from polyfuse.artifacts.onnx import OnnxEncoder, OnnxFusion
from polyfuse.core.errors import ConfigError
from polyfuse.inference.batches import collate_all
from polyfuse.modalities.quality import LOW_QUALITY, QualityGate
from polyfuse.models.multimodal import Encoded
from polyfuse.monitor.live import QUARANTINE_REASON, LiveMonitor
from polyfuse.serve.runtime.batching import (
    Chained,
    MicroBatcher,
    OnlineTuner,
    TuneResult,
    autotune,
)
from polyfuse.serve.runtime.breaker import BreakerOpenError, CircuitBreaker
from polyfuse.serve.runtime.cache import (
    CachedValue,
    CacheKey,
    EmbeddingCache,
    MemoryCache,
    RedisCache,
    content_digest,
)
from polyfuse.serve.runtime.forward import Fused, batch_embeddings, encode_items, fuse_requests
from polyfuse.serve.runtime.preprocess import (
    Monitored,
    Preprocessed,
    preprocess_many_in_worker,
    preprocess_value,
    worker_init,
    worker_payload,
)
from polyfuse.serve.runtime.requests import (
    LowQualityError,
    Stage,
    check_degraded,
    check_request,
    deadline_error,
    ms_since,
)
from polyfuse.serve.runtime.settings import (
    BatchSettings,
    RuntimeConfig,
    serving_threads,
)
from polyfuse.serve.runtime.shared import SharedStage, SharedStages
from polyfuse.serve.runtime.stages import (
    EncodeStage,
    FuseFn,
    StageFn,
    channels_last,
    stage_digest,
    trace_fuse,
    trace_stage,
)
from polyfuse.serve.runtime.watch import Watch
from polyfuse.serve.types import ServeError, ServeRequest, ServeResult

log = logging.getLogger("polyfuse.serve.runtime.model")

#: An encoder stage: preprocessed tensors of present items -> one embedding mapping each.
EncodeFn = Callable[[list[Tensor]], list[CachedValue]]
#: Wraps an encoder stage (tests inject failures, deployments add tracing).
EncoderWrapper = Callable[[EncodeFn], EncodeFn]


@dataclass
class _Waiting:
    """A modality's input on its way through the chained batchers (see `_start`)."""

    modality: str
    future: asyncio.Future[Any]
    key: CacheKey | None  # where to cache the embedding
    started: float  # time.perf_counter() when it was queued


#: Key of the marker a sampled request carries to the fusion batcher (see `predict`).
SAMPLED = "__monitor__"
_MARK: CachedValue = {}


class ModelRuntime:
    """Serves one trained artifact (implements `polyfuse.serve.types.Runtime`).

    The constructor is cheap; `setup` starts the pools, measures batch sizes and warms
    the encoders up. `ModelRuntime.load` does both from an artifact folder.

    Args:
        artifact: the loaded artifact.
        config: runtime options.
        encoder_wrappers: modality -> wrapper of its encoder stage ``fn(list[Tensor]) ->
            list[embedding]`` (fault injection in tests, tracing).
        cache: an embedding cache to use instead of the one ``config.cache`` names.
        shared: the pool, cache and encoder stages shared with other runtimes of the
            process (versions of a model served side by side): identical stages run once
            (`polyfuse.serve.runtime.shared`). None: this runtime owns everything.
        name: this runtime's name among those sharing stages (default: the artifact
            folder's name).
    """

    def __init__(
        self,
        artifact: Artifact,
        config: RuntimeConfig | None = None,
        *,
        encoder_wrappers: Mapping[str, EncoderWrapper] | None = None,
        cache: EmbeddingCache | None = None,
        shared: SharedStages | None = None,
        name: str | None = None,
    ) -> None:
        self.artifact = artifact
        self.config = config or RuntimeConfig()
        self.config.check()
        self.model = artifact.model
        self.contracts = dict(artifact.contracts)
        self._wrappers = dict(encoder_wrappers or {})
        self._cache = cache
        self._shared = shared
        self.name = name or (artifact.path.name if artifact.path is not None else "model")
        self._pool: Executor | None = None
        self._batchers: dict[str, MicroBatcher[Tensor, CachedValue]] = {}
        self._fuser: MicroBatcher[Mapping[str, CachedValue], Fused] | None = None
        self._pre: dict[str, MicroBatcher[bytes | str | Monitored, Preprocessed]] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._versions: dict[str, str] = {}
        self._tuning: dict[str, TuneResult] = {}
        self._stages: dict[str, StageFn] = {}
        self._stage_status: dict[str, str] = {}
        self._fuse_fn: FuseFn | None = None
        self._counts = {"requests": 0, "degraded": 0, "errors": 0}
        self.gates: dict[str, QualityGate] = artifact.quality_gates()
        self._quality = {m: {"checked": 0, "failed": 0} for m in self.gates}
        self._payloads: dict[str, str] = {}  # modality -> contract + gate JSON for pool workers
        self._info: dict[str, Any] | None = None
        self._ready = False
        self.watch: Watch | None = None

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        encoder_wrappers: Mapping[str, EncoderWrapper] | None = None,
        shared: SharedStages | None = None,
        name: str | None = None,
        **options: Any,
    ) -> ModelRuntime:
        """Load an artifact folder, start the runtime and warm it up.

        ``options`` are `RuntimeConfig` fields (``max_batch=`` and ``max_wait_ms=`` set
        ``batching`` for every encoder); ``shared`` and ``name`` as in the constructor.
        """
        from polyfuse.artifacts.classifier import load_artifact
        from polyfuse.core.device import resolve_device

        batching = {k: options.pop(k) for k in ("max_batch", "max_wait_ms") if k in options}
        if batching:
            options["batching"] = BatchSettings(**batching)
        config = RuntimeConfig.from_options(**options)
        artifact = load_artifact(path, resolve_device(config.device))
        runtime = cls(artifact, config, encoder_wrappers=encoder_wrappers, shared=shared, name=name)
        runtime.setup()
        return runtime

    # ---- lifecycle -----------------------------------------------------------
    def setup(self) -> None:
        """Start pools, build the per-modality stages and warm them up (blocking)."""
        from polyfuse.core.device import resolve_device

        self.device = resolve_device(self.config.device)
        self.model.to(self.device).eval()
        self._set_threads()
        for m, gate in self.gates.items():  # loads the VAD now: a missing package fails here
            gate(self._raw_sample(m))
        pooled = self.config.preprocess != "thread"
        self._pool, self._cache = self._pool_and_cache(needs_pool=pooled)
        self.watch = Watch.load(self.artifact, self.config)
        for m in self.model.modalities:
            self._register(m)
            if self._shared is None or not self._share(m, self._shared):
                self._batchers[m] = self._make_batcher(m)
                self._pre[m] = self._make_preprocessor(m)
                if self._shared is not None:
                    self._offer(m, self._shared)
        self._fuser = self._make_fuser()
        self._ready = True

    def _pool_and_cache(self, needs_pool: bool) -> tuple[Executor | None, EmbeddingCache | None]:
        """The preprocessing pool (when ``needs_pool``) and the cache: the shared ones when
        another runtime of the process made them, else new ones (registered as shared when
        sharing)."""
        shared = self._shared
        pool = shared.pool if shared is not None and shared.pool is not None else None
        if pool is None and needs_pool:
            pool = self._make_pool()
        cache = self._cache
        if cache is None:
            made = shared is not None and shared.cache_made
            cache = shared.cache if shared is not None and made else self._make_cache()
        if shared is not None:
            shared.pool = shared.pool or pool
            shared.cache, shared.cache_made = cache, True
        return pool, cache

    def _share(self, m: str, shared: SharedStages) -> bool:
        """Take ``m``'s stage (batcher, breaker) and preprocessing batcher from another
        runtime of the process when it built the same ones; False when it did not."""
        found = shared.stage(self._versions[m], self.name)
        if found is None:
            return False
        self._batchers[m], self._breakers[m] = found.batcher, found.breaker
        self._stage_status[m] = f"{found.status}, shared with {found.users[0]}"
        if found.tuning is not None:
            self._tuning[m] = found.tuning
        pre = shared.preprocessors.get(self._versions[m])  # chained into that stage
        if pre is None:
            pre = shared.preprocessors[self._versions[m]] = self._make_preprocessor(m)
        self._pre[m] = pre
        return True

    def _offer(self, m: str, shared: SharedStages) -> None:
        """Register the stage and preprocessing batcher this runtime built for ``m``."""
        stage = SharedStage(
            self._batchers[m],
            self._breakers[m],
            self._stage_status.get(m, ""),
            self._tuning.get(m),
            [self.name],
        )
        shared.add(self._versions[m], stage)
        if m in self._pre:
            shared.preprocessors.setdefault(self._versions[m], self._pre[m])

    def stage_key(self, m: str) -> str:
        """What ``m``'s encoder stage computes, as a digest (the cache version and the
        name under which runtimes share the stage): the encoder's fingerprint, what
        preprocessing sends it (contract, quality gate, drift statistics), whether the
        fusion reads tokens, and the encoder's and adapter's weights."""
        import hashlib
        import json

        encoder = self.model.encoder(m)
        identity = json.dumps(
            [encoder.fingerprint(), self._payload(m), self.model.fusion.uses_tokens],
            sort_keys=True,
        )
        weights = stage_digest(encoder, self.model.adapters[m])
        return hashlib.sha256(f"{identity}|{weights}".encode()).hexdigest()[:24]

    def _set_threads(self) -> None:
        """Apply ``config.torch_threads`` (before autotune measures anything)."""
        threads = self.config.torch_threads
        if threads == "auto":
            threads = serving_threads(len(self.model.modalities))
        if threads is not None:
            torch.set_num_threads(threads)
            log.info("torch intra-op threads: %d", threads)

    def _register(self, m: str) -> None:
        """The cache version (`stage_key`) and the circuit breaker of one modality's
        encoder."""
        self._versions[m] = self.stage_key(m)
        self._breakers[m] = CircuitBreaker(
            m,
            failure_threshold=self.config.breaker_failures,
            reset_timeout=self.config.breaker_reset_s,
            half_open_max=self.config.breaker_half_open,
        )

    def _make_pool(self) -> Executor:
        workers = self.config.workers
        if self.config.preprocess == "thread":
            return ThreadPoolExecutor(workers, thread_name_prefix="preprocess")
        # spawn: forking a process that runs torch threads can deadlock
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=worker_init)
        warm = [pool.submit(worker_init) for _ in range(workers)]  # start every worker now
        for f in warm:
            f.result()
        return pool

    def _make_cache(self) -> EmbeddingCache | None:
        if self.config.cache == "memory":
            return MemoryCache(self.config.cache_bytes)
        if self.config.cache == "redis":
            return RedisCache(self.config.redis_url)
        return None

    def _make_batcher(self, m: str) -> MicroBatcher[Tensor, CachedValue]:
        fn: EncodeFn = functools.partial(self._encode_batch, m)
        if m in self._wrappers:
            fn = self._wrappers[m](fn)
        settings = self.config.batch_for(m)
        sample = self._sample(m)
        self._stages[m] = self._make_stage(m, [sample, self._sample(m, short=True)])
        online: OnlineTuner | None = None
        if settings.max_batch == "auto":
            sizes = [s for s in (1, 2, 4, 8, 16, 32, 64) if s <= settings.max_auto]
            tuned = autotune(fn, [sample], sizes=sizes, budget_s=self.config.autotune_budget_s)
            self._tuning[m] = tuned
            max_batch = tuned.max_batch
            log.info("%s: batch size %d (%.2fx unbatched)", m, max_batch, tuned.speedup)
            if settings.online:  # starts at the start-up choice, may grow to max_auto
                max_batch = max(settings.max_auto, 1)
                online = OnlineTuner(max_batch, seed=tuned)
        else:
            max_batch = settings.max_batch
            fn([sample])  # warm-up
        contract = self.contracts[m]
        return MicroBatcher(
            fn,
            max_batch=max_batch,
            max_wait=settings.max_wait_ms / 1000,
            max_queue=self.config.queue_size,
            size_key=contract.padded_length,
            name=m,
            online=online or False,
        )

    def _make_preprocessor(self, m: str) -> MicroBatcher[bytes | str | Monitored, Preprocessed]:
        """Inputs of ``m`` loaded, gated and preprocessed in batches of up to
        ``preprocess_batch``, each tensor handed straight on to ``m``'s encoder batcher
        from the preprocessing thread (the caller awaits one future for both), up to
        ``workers`` batches at once. Where a batch runs is ``config.preprocess``: on the
        batcher's thread (``thread``), in the process pool (``process``: one round trip
        per batch, off the GIL, the batches in parallel), or ``auto``: a lone input on the
        thread (no round trip: the lower latency at low load), a batch of several (load)
        in the pool (measured in docs/benchmarks.md, "Serving over HTTP")."""
        contract, gate = self.contracts[m], self.gates.get(m)
        context = self._statistics_context(m)
        payload = self._payload(m)
        pool = self._pool if isinstance(self._pool, ProcessPoolExecutor) else None
        mode = self.config.preprocess

        def here(values: list[bytes | str | Monitored]) -> list[Preprocessed]:
            return [
                preprocess_value(contract, v.value, gate, context)
                if isinstance(v, Monitored)
                else preprocess_value(contract, v, gate)
                for v in values
            ]

        def run(values: list[bytes | str | Monitored]) -> list[Preprocessed]:
            if pool is None or mode == "thread" or (mode == "auto" and len(values) == 1):
                return here(values)
            return pool.submit(preprocess_many_in_worker, payload, values).result()

        return MicroBatcher(
            run,
            max_batch=self.config.preprocess_batch,
            max_wait=0.0,
            max_queue=self.config.queue_size,
            name=f"preprocess-{m}",
            concurrency=self.config.workers,
            then=self._batchers[m],
            route=_tensor,
        )

    def _payload(self, m: str) -> str:
        """The contract and quality gate of ``m`` and what its input statistics need (for
        `Monitored` inputs), as JSON for pool workers (built once)."""
        payload = self._payloads.get(m)
        if payload is None:
            payload = self._payloads[m] = worker_payload(
                self.contracts[m], self.gates.get(m), self._statistics_context(m)
            )
        return payload

    def _statistics_context(self, m: str) -> dict[str, Any] | None:
        """What the preprocessing stage needs to compute ``m``'s input statistics, or None
        when nothing is monitored."""
        return None if self.watch is None else self.watch.contexts.get(m)

    def live_monitor(self) -> LiveMonitor | None:
        """The live drift monitor, or None when monitoring is off."""
        return None if self.watch is None else self.watch.live

    def _make_fuser(self) -> MicroBatcher[Mapping[str, CachedValue], Fused]:
        """Fusion + head batched across requests on their own thread (off the event
        loop): many small forwards cost far more than one forward over their rows.
        Batches of up to ``max_auto`` rows with ``"auto"`` batching (fusion is a small
        network that batching always helps), else the configured ``max_batch``."""
        b = self.config.batching
        max_batch = b.max_auto if b.max_batch == "auto" else b.max_batch
        fuser: MicroBatcher[Mapping[str, CachedValue], Fused] = MicroBatcher(
            self._fuse_batch,
            max_batch=max(1, max_batch),
            max_wait=0.0,
            # no bound of its own: what reaches fusion was admitted by the preprocessing
            # and encoder queues (or hit the cache), and refusing it after its encoders
            # ran would waste that work; fusion is a short step
            max_queue=sys.maxsize,
            name="fusion",
            inline_single=True,  # a lone request skips two thread hand-offs
        )
        self._fuse_fn = self._make_fuse_fn()
        fuser.fn([{}])  # warm-up: every modality missing
        return fuser

    def _make_fuse_fn(self) -> FuseFn | None:
        """Fusion + heads traced when ``config.trace`` and the traced graph matches the
        eager model on batches of 1, 3 and 5 requests with modalities missing, hidden
        and (token fusions) sequences of several lengths; None: eager."""
        if isinstance(self.model.fusion, OnnxFusion):  # an ONNX export runs its own graphs
            self._stage_status["fusion"] = "onnx"
            return None
        if not self.config.trace:
            self._stage_status["fusion"] = "eager (trace off)"
            return None
        model, names = self.model, self.model.modalities
        gen = torch.Generator().manual_seed(0)

        def value(length: int) -> CachedValue:
            dim = model.fusion.dim
            v: dict[str, Tensor] = {"pooled": torch.randn(dim, generator=gen)}
            if model.fusion.uses_tokens:
                v["tokens"] = torch.randn(length, dim, generator=gen)
                v["mask"] = torch.ones(length, dtype=torch.bool)
            return v

        def batch(rows: list[list[str]]) -> Encoded:
            requests: list[Mapping[str, CachedValue]] = [
                {m: value(2 + (i + j) % 4) for j, m in enumerate(r)} for i, r in enumerate(rows)
            ]
            return batch_embeddings(model, requests)

        every = list(names)
        rows = [every, every[:1], every[1:] or every, [], every]
        examples = []
        for size in (3, 1, 5):
            enc = batch(rows[:size] if size != 1 else [every])
            examples.append((enc, dict(enc.present)))
            hide = {m: enc.present[m] & (m != names[0]) for m in names}  # leave-one-out
            examples.append((enc, hide))
        with torch.inference_mode(False):
            fuse, status = trace_fuse(model, examples)
        self._stage_status["fusion"] = status if fuse is not None else f"eager ({status})"
        log.info("fusion: %s", self._stage_status["fusion"])
        return fuse

    def _make_stage(self, m: str, samples: list[Tensor]) -> StageFn:
        """The encoder + adapter stage of ``m``: in channels-last when
        ``config.channels_last`` and it has 2-D convolutions, traced when ``config.trace``
        and the traced graph matches the eager model on a batch of 1 and a batch of 3
        mixed sizes."""
        encoder = self.model.encoder(m)
        if isinstance(encoder, OnnxEncoder):  # an ONNX export: the graph's session is the stage
            self._stage_status[m] = "onnx"
            return encoder.run
        contract = self.contracts[m]
        first = collate_all(contract, samples[:1])
        stage = EncodeStage(
            self.model.encoder(m),
            self.model.adapters[m],
            tokens=self.model.fusion.uses_tokens,
            lengths=first.lengths is not None,
        ).eval()
        fast = channels_last(stage) if self.config.channels_last else None
        layout = ", channels_last" if fast is not None else ""
        runner = fast or stage
        if not self.config.trace:
            self._stage_status[m] = f"eager (trace off){layout}"
            return runner.run
        mixed = [samples[-1], samples[0], samples[-1]]
        batches = [
            first.to(self.device),
            collate_all(contract, mixed).to(self.device),
        ]
        traced, status = trace_stage(runner, batches, reference=stage)
        status = status if traced is not None else f"eager ({status})"
        self._stage_status[m] = status + layout
        log.info("%s encoder: %s", m, self._stage_status[m])
        return traced or runner.run

    def _sample(self, m: str, short: bool = False) -> Tensor:
        """A preprocessed input of typical size for warm-up and batch-size measurement
        (``short``: a shorter one, for checking traced encoders on other lengths)."""
        return self.contracts[m].preprocess(self._raw_sample(m, short))

    def _raw_sample(self, m: str, short: bool = False) -> Any:
        """A loaded input of typical size (see `_sample`)."""
        return self.contracts[m].load(self._sample_data(m, short), field=m)

    def _sample_data(self, m: str, short: bool = False) -> Any:
        """The data of `_raw_sample` before ``contract.load``: a string, an array."""
        contract = self.contracts[m]
        rng = np.random.default_rng(0)
        seconds = 0.5 if short else 1.0
        samples: dict[str, Any] = {
            "text": "a short sentence"
            if short
            else "a short sentence of about fifteen words to warm up the text encoder now",
            "image": rng.integers(0, 255, (*getattr(contract, "size", (64, 64)), 3), np.uint8),
            "audio": (
                0.1 * rng.standard_normal(int(seconds * getattr(contract, "sample_rate", 16000)))
            ).astype(np.float32),
            "timeseries": rng.standard_normal(
                (60 if short else 100, getattr(contract, "channels", None) or 1)
            ).astype(np.float32),
        }
        if contract.kind not in samples:
            raise ConfigError(f"modalities.{m}", f"no warm-up sample for kind '{contract.kind}'")
        if contract.kind == "image" and getattr(contract, "channels", 3) == 1:
            samples["image"] = samples["image"][..., 0]
        return samples[contract.kind]

    def ready(self) -> bool:
        """True once `setup` has finished."""
        return self._ready

    async def close(self) -> None:
        """Stop batchers and pools and close the cache (what is shared with other
        runtimes is left to `SharedStages.close`)."""
        self._ready = False
        if self.watch is not None:  # ends the monitor's assessment process, if started
            await asyncio.to_thread(self.watch.live.close)
        if self._shared is not None:
            if self._fuser is not None:
                await self._fuser.close()
            return
        for b in self._batchers.values():
            await b.close()
        for p in self._pre.values():
            await p.close()
        if self._fuser is not None:
            await self._fuser.close()
        if self._pool is not None:
            # Wait for the workers to exit: without the join, a stopped server left its
            # spawn workers running (and holding its pipes).
            await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
            self._pool = None
        if self._cache is not None:
            self._cache.close()

    # ---- description -----------------------------------------------------------
    @property
    def modalities(self) -> tuple[str, ...]:
        """Modality names the model accepts."""
        return tuple(self.model.modalities)

    def info(self) -> dict[str, Any]:
        """``{"name", "version", "modalities", "contracts", "labels", "task", "encoders"}``
        (built once after `setup`; callers get a copy)."""
        if self._info is None or not self._ready:
            self._info = self._describe()
        return dict(self._info)

    def _describe(self) -> dict[str, Any]:
        path = self.artifact.path
        files = self.artifact.info.get("files", {})
        return {
            "name": path.name if path is not None else "model",
            "version": str(files.get("model.safetensors", "unsaved"))[:12],
            "modalities": list(self.modalities),
            "contracts": {m: c.version for m, c in self.contracts.items()},
            "labels": list(self.artifact.task.labels),
            "task": self.artifact.task.name,
            "encoders": dict(self._versions),
            **(
                {"threshold": float(t)}
                if (t := getattr(self.artifact.task, "threshold", None)) is not None
                else {}
            ),
        }

    def stats(self) -> dict[str, Any]:
        """Batchers (queue depth, batch sizes), cache (hit ratio), breakers, counters."""
        return {
            "requests": dict(self._counts),
            "batchers": {m: b.stats().to_dict() for m, b in self._batchers.items()},
            "fusion": None if self._fuser is None else self._fuser.stats().to_dict(),
            "preprocess": {m: b.stats().to_dict() for m, b in self._pre.items()},
            "breakers": {m: b.snapshot() for m, b in self._breakers.items()},
            "cache": None if self._cache is None else self._cache.stats().to_dict(),
            "autotune": {
                m: {"max_batch": t.max_batch, "throughput": t.throughput}
                for m, t in self._tuning.items()
            },
            "encoders": dict(self._stage_status),
            "quality": {m: dict(c) for m, c in self._quality.items()},
        }

    def breaker(self, modality: str) -> CircuitBreaker:
        """The circuit breaker of one encoder."""
        return self._breakers[modality]

    # ---- requests -----------------------------------------------------------
    async def predict(self, request: ServeRequest) -> ServeResult:
        """Answer one request (see the module docstring); raises `ServeError`."""
        start = time.perf_counter()
        self._counts["requests"] += 1
        sampled = self.watch is not None and self.watch.sample()
        try:
            stages = await self._run_stages(request, sampled)
        except ServeError:
            self._counts["errors"] += 1
            raise
        used = {m: s.value for m, s in stages.items() if s.value is not None}
        t = time.perf_counter()
        if self._fuser is None:
            raise ServeError("unavailable", "the model is not loaded yet", retry_after=1.0)
        # a sampled request (or one for human review) asks the fusion thread for the
        # leave-one-out outputs too (the marker is not a modality: fusion reads only the
        # model's modality names)
        explain = sampled or request.leave_one_out
        out = await self._fuser.submit({**used, SAMPLED: _MARK} if explain else used)
        result = self._result(request, out, stages)
        result.timings_ms["fuse"] = ms_since(t)
        result.without = out.without
        result.unimodal = out.unimodal
        result.exact = out.exact
        if self.watch is not None and sampled:
            labels = list(self.artifact.task.labels)
            result.monitor = self.watch.record(
                request.request_id,
                [out.probabilities[lab] for lab in labels],
                {m: s.statistics for m, s in stages.items()},
                {m: v["pooled"] for m, v in used.items()},
                out.unimodal,
                out.without,
            )
        result.timings_ms["total"] = ms_since(start)
        self._counts["degraded"] += int(result.degraded)
        return result

    async def frame_effects(self, request: ServeRequest, modality: str) -> dict[str, Any]:
        """Which frames of the request's video ``modality`` mattered to its answer
        (`polyfuse.inference.frames`: each frame left out in turn), in a thread, outside
        the batchers (an explanation asked for by hand, not the hot path)."""
        from polyfuse.core.errors import PolyfuseError
        from polyfuse.inference.frames import frame_effects

        inputs = {m: v for m, v in request.inputs.items() if m in self.contracts}
        try:
            fx = await asyncio.to_thread(
                frame_effects,
                self.artifact.model,
                self.contracts,
                self.artifact.task,
                inputs,
                modality,
            )
        except PolyfuseError as err:
            raise ServeError("invalid_input", err.message, hint=err.hint) from None
        return fx.to_dict()

    async def embed(self, request: ServeRequest) -> dict[str, list[float]]:
        """Pooled embeddings in the shared space of the modalities that could be encoded."""
        stages = await self._run_stages(request)
        return {
            m: [round(float(v), 6) for v in s.value["pooled"].tolist()]
            for m, s in stages.items()
            if s.value is not None
        }

    #: Whether a request's stages run as one coroutine over chained batchers (`_start`,
    #: `_finish`); a runtime whose stages are remote calls (Ray) gathers `_stage`s.
    chained: bool = True

    async def _run_stages(self, request: ServeRequest, sampled: bool = False) -> dict[str, Stage]:
        if not self._ready:
            raise ServeError("unavailable", "the model is not loaded yet", retry_after=1.0)
        chosen = check_request(request, self.contracts)
        remaining = None if request.deadline is None else request.deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise deadline_error(request)
        if self.chained:
            stages = await self._chained_stages(chosen, sampled, remaining, request)
        else:
            stages = await self._gathered_stages(chosen, sampled, remaining, request)
        check_degraded(stages, self.config.degraded, self.config.breaker_reset_s)
        return stages

    async def _chained_stages(
        self,
        chosen: Mapping[str, bytes | str],
        sampled: bool,
        remaining: float | None,
        request: ServeRequest,
    ) -> dict[str, Stage]:
        """Every modality's input queued at once, then their futures awaited in this one
        coroutine (no task per modality)."""
        stages: dict[str, Stage] = {}
        waiting: list[_Waiting] = []
        try:
            for m, raw in chosen.items():
                stages[m] = stage = Stage(sampled=sampled)
                started = await self._start(m, raw, stage)
                if started is not None:
                    waiting.append(started)
            if remaining is None:
                while waiting:
                    await self._finish(waiting[0], stages[waiting[0].modality])
                    waiting.pop(0)
            else:
                async with asyncio.timeout(remaining):
                    while waiting:
                        await self._finish(waiting[0], stages[waiting[0].modality])
                        waiting.pop(0)
        except TimeoutError:
            raise deadline_error(request) from None
        finally:
            for w in waiting:  # left behind by a deadline or an unreadable input
                if not w.future.done():
                    w.future.cancel()
                    self._breakers[w.modality].release()
        return stages

    async def _start(
        self, m: str, raw: bytes | str, stage: Stage, lookup: bool = True
    ) -> _Waiting | None:
        """Look ``m``'s input up in the cache (``lookup``; a hit: ``stage`` is done, None)
        and queue it on its preprocessing batcher, behind the breaker (an open one:
        ``stage`` is done with reason ``breaker_open``); the timeout covers
        preprocessing, queue and forward."""
        key = await self._lookup(m, raw, stage) if lookup else None
        if stage.cached:
            return None
        breaker = self._breakers[m]
        try:
            breaker.acquire()
        except BreakerOpenError:
            stage.reason = "breaker_open"
            return None
        value: bytes | str | Monitored = Monitored(raw) if stage.sampled else raw
        try:
            future = self._pre[m].submit_nowait(value, self.config.encoder_timeout_s)
        except BaseException:
            breaker.release()
            raise
        return _Waiting(m, future, key, time.perf_counter())

    async def _finish(self, w: _Waiting, stage: Stage) -> None:
        """Await ``w``'s answer into ``stage``: the embedding (cached, with the input
        statistics a sampled request carries), or why there is none (the gate refused
        the input: ``low_quality``; the encoder failed or timed out: the breaker counts
        it); an unreadable input raises `ServeError` ``invalid_input``."""
        m, breaker = w.modality, self._breakers[w.modality]
        try:
            out = await w.future
        except TimeoutError:
            breaker.record_failure()
            log.warning("%s encoder timed out after %.1f s", m, self.config.encoder_timeout_s)
            stage.reason = "timeout"
            return
        except (ServeError, asyncio.CancelledError):
            breaker.release()  # overloaded / closed / deadline: not the encoder's fault
            raise
        except Exception:
            breaker.record_failure()
            log.exception("%s encoder failed", m)
            stage.reason = "error"
            return
        if isinstance(out, Chained):
            breaker.record_success()
            done: Preprocessed = out.carry
            stage.timings[f"preprocess:{m}"] = 1000 * (out.forwarded - w.started)
            stage.timings[f"encode:{m}"] = ms_since(out.forwarded)
            value: CachedValue = out.value
            if done.statistics is not None:
                # cached with the embedding, so a cache hit still feeds the drift monitor
                value = {**value, "statistics": torch.tensor(done.statistics)}
            stage.value, stage.statistics = value, done.statistics
            if w.key is not None and self._cache is not None:
                await self._cache_call(self._cache.put, w.key, value)
        else:  # not handed on to the encoder: unreadable, or refused by the gate
            breaker.release()
            stage.timings[f"preprocess:{m}"] = ms_since(w.started)
            stage.statistics = out.statistics
            refused = self._preprocessed(m, out)  # raises for an unreadable input
            if isinstance(refused, str):
                stage.reason, stage.detail = LOW_QUALITY, refused
        self._count_quality(m, stage)

    async def _lookup(self, m: str, raw: bytes | str, stage: Stage) -> CacheKey | None:
        """``raw``'s cache key (None without a cache); on a hit ``stage`` holds the cached
        embedding and its input statistics."""
        if self._cache is None:
            return None
        key = CacheKey(m, self._versions[m], content_digest(raw))
        hit = await self._cache_call(self._cache.get, key)
        if hit is not None:
            stats = hit.get("statistics")
            stage.value, stage.cached = hit, True
            stage.statistics = None if stats is None else [float(x) for x in stats.tolist()]
        return key

    def _count_quality(self, m: str, stage: Stage) -> None:
        """Count a computed stage's quality-gate verdict (``stats()["quality"]``)."""
        if m in self._quality:
            self._quality[m]["checked"] += 1
            self._quality[m]["failed"] += int(stage.reason == LOW_QUALITY)

    async def _gathered_stages(
        self,
        chosen: Mapping[str, bytes | str],
        sampled: bool,
        remaining: float | None,
        request: ServeRequest,
    ) -> dict[str, Stage]:
        """One `_stage` per modality, gathered (stages that are remote calls)."""
        names = list(chosen)
        work = asyncio.gather(
            *(self._stage(m, chosen[m], sampled) for m in names), return_exceptions=True
        )
        try:
            async with asyncio.timeout(remaining):  # no extra task, unlike wait_for
                outcomes = await work
        except TimeoutError:
            raise deadline_error(request) from None
        stages: dict[str, Stage] = {}
        for m, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if isinstance(outcome, ServeError):
                    raise outcome
                raise ServeError("internal", f"the {m} stage failed: {outcome!r}") from outcome
            stages[m] = outcome
        return stages

    async def _stage(self, m: str, raw: bytes | str, sampled: bool = False) -> Stage:
        """One modality's stage as its own coroutine (`_gathered_stages`): the cache,
        then `_compute`, then the cache again."""
        stage = Stage(sampled=sampled)
        key = await self._lookup(m, raw, stage)
        if stage.cached:
            return stage
        await self._compute(m, raw, stage)
        self._count_quality(m, stage)
        if stage.value is not None and key is not None and self._cache is not None:
            await self._cache_call(self._cache.put, key, stage.value)
        return stage

    async def _compute(self, m: str, raw: bytes | str, stage: Stage) -> None:
        """Preprocess and encode one input into ``stage`` (a remote runtime overrides
        it); an input its quality gate refuses leaves ``stage`` with reason
        ``low_quality``."""
        started = await self._start(m, raw, stage, lookup=False)  # `_stage` caches
        if started is not None:
            await self._finish(started, stage)

    async def _cache_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._cache is not None and self._cache.blocking:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    async def preprocess_value(self, m: str, raw: bytes | str) -> Tensor | str:
        """The preprocessed input, or why its quality gate refused it; unreadable input
        raises `ServeError` (``invalid_input``). Runs on a thread, outside the batchers."""
        done = await asyncio.to_thread(preprocess_value, self.contracts[m], raw, self.gates.get(m))
        return self._preprocessed(m, done)

    def _preprocessed(self, m: str, done: Preprocessed) -> Tensor | str:
        """The tensor of a preprocessing answer, or why the gate refused the input."""
        if done.low_quality is not None:
            return done.low_quality
        if done.array is None:
            raise ServeError(
                "invalid_input", str(done.error), hint=done.hint, details={"modality": m}
            )
        return torch.from_numpy(done.array)

    async def _encode(
        self, m: str, call: Callable[[float], Awaitable[CachedValue]]
    ) -> tuple[CachedValue | None, str | None]:
        """``call(timeout)``'s embedding behind the breaker and the timeout (``call``
        raises `TimeoutError` past it), or None and a reason code; a `ServeError` (full
        queue: ``overloaded``, bad input) and `LowQualityError` pass through."""
        breaker = self._breakers[m]
        try:
            breaker.acquire()
        except BreakerOpenError:
            return None, "breaker_open"
        try:
            value = await call(self.config.encoder_timeout_s)
        except TimeoutError:
            breaker.record_failure()
            log.warning("%s encoder timed out after %.1f s", m, self.config.encoder_timeout_s)
            return None, "timeout"
        except (ServeError, LowQualityError, asyncio.CancelledError):
            breaker.release()  # overloaded / deadline / refused input: not the encoder's fault
            raise
        except Exception:
            breaker.record_failure()
            log.exception("%s encoder failed", m)
            return None, "error"
        breaker.record_success()
        return value, None

    # ---- model work (batcher threads / event loop) ------------------------------
    def _encode_batch(self, m: str, items: list[Tensor]) -> list[CachedValue]:
        """Encoder + adapter over present items (see `encode_items`)."""
        return encode_items(
            self.model, self.contracts[m], items, self.device, stage=self._stages.get(m)
        )

    def _fuse_batch(self, requests: list[Mapping[str, CachedValue]]) -> list[Fused]:
        """Fusion and heads over several requests' embeddings (see `fuse_requests`);
        quarantined modalities are hidden from the fusion."""
        watch = self.watch
        hidden = frozenset() if watch is None else watch.hidden()
        monitor = any(SAMPLED in r for r in requests)
        return fuse_requests(
            self.model,
            self.artifact.task,
            requests,
            monitor=monitor,
            hidden=hidden,
            fuse=self._fuse_fn,
        )

    def _result(
        self, request: ServeRequest, out: Fused, stages: Mapping[str, Stage]
    ) -> ServeResult:
        timings: dict[str, float] = {}
        for s in stages.values():
            timings.update(s.timings)
        info = self.info()
        reasons = {m: s.reason for m, s in stages.items() if s.reason is not None}
        hidden = frozenset() if self.watch is None else self.watch.hidden()
        for m in hidden:
            if m in stages and stages[m].value is not None:
                reasons[m] = QUARANTINE_REASON
        return ServeResult(
            request_id=request.request_id,
            label=out.label,
            probabilities=out.probabilities,
            contributions=out.contributions,
            modalities_used=[
                m for m in self.modalities if m in stages and stages[m].value and m not in reasons
            ],
            degraded=bool(reasons),
            degraded_reasons=reasons,
            model={k: info[k] for k in ("name", "version", "contracts")},
            timings_ms=timings,
            cache_hits=[m for m, s in stages.items() if s.cached],
        )


def _tensor(done: Preprocessed) -> Tensor | None:
    """The preprocessing answer's tensor for the encoder, or None when the input was
    unreadable or failed its quality gate (the caller gets the answer as it is)."""
    return None if done.array is None else torch.from_numpy(done.array)


__all__ = [
    "EncodeFn",
    "EncoderWrapper",
    "ModelRuntime",
]
