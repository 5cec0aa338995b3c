"""Settings of the serving runtime: batching per modality, cache, breakers, timeouts, the
degraded policy, pools (`RuntimeConfig`), and how many torch threads each encoder gets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from polyfuse.core.config import check_keys
from polyfuse.core.errors import ConfigError


@dataclass(frozen=True)
class BatchSettings:
    """Micro-batching of one encoder.

    Attributes:
        max_batch: items per forward pass, or ``"auto"`` to measure at start-up
            (`polyfuse.serve.runtime.batching.autotune`; 1 when batching does not help).
        max_wait_ms: how long a batch waits for company after its first item (0: a lone
            request never waits; under load batches still fill from the queue).
        max_auto: largest batch size ``"auto"`` tries.
        online: with ``"auto"``, keep tuning while serving
            (`polyfuse.serve.runtime.batching.OnlineTuner`, seeded with the start-up choice and
            free to move up to ``max_auto``); False keeps the start-up choice.
    """

    max_batch: int | Literal["auto"] = "auto"
    max_wait_ms: float = 0.0
    max_auto: int = 32
    online: bool = True


@dataclass(frozen=True)
class RuntimeConfig:
    """Options of `ModelRuntime` (all have serving defaults).

    Attributes:
        batching: batching of every encoder.
        per_modality: modality -> batching that overrides ``batching``.
        queue_size: most items waiting per encoder before ``overloaded``.
        cache: ``memory`` (in-process LRU), ``redis`` (shared) or ``none``.
        cache_bytes: byte budget of the memory cache.
        redis_url: Redis address for ``cache="redis"``.
        encoder_timeout_s: longest wait for one modality's embedding (preprocessing,
            queue and forward).
        breaker_failures: consecutive encoder failures that open its breaker.
        breaker_reset_s: seconds an open breaker waits before a trial call.
        breaker_half_open: trial calls allowed while half-open.
        degraded: ``allow`` answers from the remaining modalities, ``refuse`` answers
            ``unavailable`` when any given modality could not be used.
        preprocess: where a batch of inputs is loaded, gated and preprocessed before it
            goes on to its encoder: ``thread`` (on the preprocessing batcher's thread; no
            pickling, no pool), ``process`` (a process pool: off the event loop and the
            GIL, batches in parallel) or ``auto`` (a lone input on the thread, saving the
            pool's round trip at low load; batches of several, under load, in the pool).
        workers: preprocessing workers.
        preprocess_batch: most inputs of one modality sent to the process pool in one
            call (split across the workers): one round trip per batch instead of per
            input, as requests pile up under load; a lone request goes alone at once.
        device: ``cpu``, ``cuda`` or ``auto``.
        torch_threads: torch intra-op threads of the whole process, set at `setup`:
            ``"auto"`` (`serving_threads`: the cores shared among the encoders, whose
            batchers run at once on their own threads; what ``polyfuse serve`` uses), a
            number, or None to leave torch's setting alone (the library default: a
            runtime inside another program does not change its threads).
        autotune_budget_s: seconds of measurement per encoder for ``"auto"``.
        trace: compile each encoder + adapter with TorchScript tracing at `setup`
            (`polyfuse.serve.runtime.stages`): the traced graph runs without the GIL, so the
            encoders stop competing with the HTTP event loop. Checked against eager
            PyTorch on batches of other sizes; any difference or failure keeps eager
            (``stats()["encoders"]`` says which). False: always eager.
        monitor: watch served requests for drift when the artifact holds a reference
            profile (`polyfuse.monitor.live`): input statistics, embedding sketches and
            outputs per request, assessed per window of ``monitor_window`` requests at
            false-alarm rate ``monitor_alpha``; above ``monitor_rate`` requests per second
            only that many are monitored (a token bucket; 0: every request).
            ``monitor_process``: assess each window in a process of its own (started at the
            first full window), so the assessment's Python never holds the server's GIL
            (False: a thread of the server).
        quarantine: stop feeding a modality to the fusion after ``quarantine_windows``
            consecutive drifted windows when the estimated accuracy without it is higher
            (answers ``degraded`` with reason ``quarantined: drift``); off by default.
        channels_last: run convolutional encoders with their weights in the
            channels-last memory format (`polyfuse.serve.runtime.stages.channels_last`; a copy,
            the model keeps its layout): oneDNN's CPU convolutions are much faster on it.
    """

    batching: BatchSettings = BatchSettings()
    per_modality: Mapping[str, BatchSettings] = field(default_factory=dict)
    queue_size: int = 256
    cache: Literal["memory", "redis", "none"] = "memory"
    cache_bytes: int = 64 * 2**20
    redis_url: str = "redis://localhost:6379/0"
    encoder_timeout_s: float = 10.0
    breaker_failures: int = 5
    breaker_reset_s: float = 30.0
    breaker_half_open: int = 1
    degraded: Literal["allow", "refuse"] = "allow"
    preprocess: Literal["auto", "process", "thread"] = "auto"
    workers: int = 2
    preprocess_batch: int = 16
    device: str = "cpu"
    torch_threads: int | Literal["auto"] | None = None
    autotune_budget_s: float = 8.0
    trace: bool = True
    channels_last: bool = True
    monitor: bool = True
    monitor_window: int = 200
    monitor_alpha: float = 0.05
    monitor_rate: float = 50.0
    monitor_process: bool = True
    quarantine: bool = False
    quarantine_windows: int = 3

    @classmethod
    def from_options(cls, **options: Any) -> RuntimeConfig:
        """Build from keyword options, naming any unknown or bad one."""
        check_keys(options, [f.name for f in fields(cls)], where="serve")
        config = cls(**options)
        config.check()
        return config

    def check(self) -> None:
        """Raise `ConfigError` naming the bad option and its valid values."""
        choices = {
            "cache": ("memory", "redis", "none"),
            "degraded": ("allow", "refuse"),
            "preprocess": ("auto", "process", "thread"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"serve.{key}", f"must be one of {', '.join(allowed)}")
        positive = (
            "queue_size",
            "workers",
            "preprocess_batch",
            "breaker_failures",
            "breaker_half_open",
        )
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"serve.{key}", "must be at least 1")
        self._check_monitor()
        t = self.torch_threads
        if t is not None and t != "auto" and (not isinstance(t, int) or t < 1):
            raise ConfigError("serve.torch_threads", "must be 'auto', an integer >= 1 or null")
        if self.encoder_timeout_s <= 0:
            raise ConfigError("serve.encoder_timeout_s", "must be > 0 seconds")
        for name, b in {"batching": self.batching, **self.per_modality}.items():
            if b.max_batch != "auto" and (not isinstance(b.max_batch, int) or b.max_batch < 1):
                raise ConfigError(f"serve.{name}.max_batch", "must be 'auto' or an integer >= 1")
            if b.max_wait_ms < 0:
                raise ConfigError(f"serve.{name}.max_wait_ms", "must be >= 0")

    def _check_monitor(self) -> None:
        """The drift-monitoring options (`check`)."""
        if self.monitor_window < 10:
            raise ConfigError("serve.monitor_window", "must be at least 10 requests")
        if not 0.0 < self.monitor_alpha < 1.0:
            raise ConfigError("serve.monitor_alpha", "must be between 0 and 1, e.g. 0.05")
        if self.monitor_rate < 0:
            raise ConfigError("serve.monitor_rate", "must be >= 0 requests per second (0: all)")
        if self.quarantine_windows < 1:
            raise ConfigError("serve.quarantine_windows", "must be at least 1")

    def batch_for(self, modality: str) -> BatchSettings:
        """Batching settings of one modality."""
        return self.per_modality.get(modality, self.batching)


def serving_threads(encoders: int, cpus: int | None = None) -> int:
    """Torch intra-op threads for a serving process: the usable cores divided among the
    encoders (each encoder's batcher runs on its own thread, at the same time as the
    others), at least 1: more threads oversubscribe the cores, which the batchers, the
    fusion thread, the event loop and the preprocessing workers already share
    (measured in docs/benchmarks.md, "Serving over HTTP")."""
    if cpus is None:
        cpus = usable_cpus()
    return max(1, cpus // max(1, encoders))


def usable_cpus(cgroup: str = "/sys/fs/cgroup/cpu.max") -> int:
    """The cores this process may use: its CPU affinity, capped by a container's CPU
    quota (cgroup v2 ``cpu.max``, e.g. ``docker --cpus 2`` or a Kubernetes CPU limit, on
    a node with many more cores), rounded up, at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path(cgroup).read_text(encoding="ascii").split()[:2]
        if quota != "max" and int(period) > 0:
            cpus = min(cpus, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota: the affinity is the limit
    return max(1, cpus)
