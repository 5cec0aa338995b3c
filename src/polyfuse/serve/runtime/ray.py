"""Scale-out on Ray Serve: the serving pipeline with its encoders as Ray Serve deployments.

`RayRuntime` is a `ModelRuntime` whose per-modality stage runs remotely: one Ray Serve
deployment per modality loads the artifact, and does that modality's preprocessing and
encoder + adapter forward pass, batched by ``@serve.batch`` and autoscaled by Ray Serve.
Everything else is the in-process pipeline, unchanged and shared: request checks,
deadlines, the embedding cache, a circuit breaker and timeout per modality, degraded
answers, fusion (`MultimodalModel.fuse`, cheap) and the result. The FastAPI app
(`polyfuse.serve.http.app.create_app`) stays in the driver process in front of it, so auth,
the firewall, metrics and both protocols are the same code as without Ray::

    HTTP -> create_app (driver) -> RayRuntime -> handle.encode.remote(raw)  [per modality]
                                              -> model.fuse -> ServeResult

Ray is imported only when a `RayRuntime` starts (`polyfuse --help` stays fast, and
polyfuse imports without Ray installed); without Ray, start-up raises `DependencyError`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import torch
from pydantic import ConfigDict, Field, StrictInt, StrictStr
from pydantic.dataclasses import dataclass

from polyfuse.artifacts.classifier import Artifact
from polyfuse.core.config import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    YamlFloat,
    config_errors,
    validate,
)
from polyfuse.core.errors import ConfigError, DependencyError
from polyfuse.modalities.quality import LOW_QUALITY
from polyfuse.serve.runtime.cache import CachedValue, EmbeddingCache
from polyfuse.serve.runtime.forward import encode_items
from polyfuse.serve.runtime.model import ModelRuntime
from polyfuse.serve.runtime.preprocess import preprocess_value
from polyfuse.serve.runtime.requests import LowQualityError, Stage, ms_since
from polyfuse.serve.runtime.settings import RuntimeConfig
from polyfuse.serve.runtime.stages import eager_stage
from polyfuse.serve.types import ServeError

T = TypeVar("T")
log = logging.getLogger("polyfuse.serve.ray")


def import_ray() -> tuple[Any, Any]:
    """``(ray, ray.serve)``, or `DependencyError` with the install hint."""
    try:
        import ray
        from ray import serve
    except ImportError:
        raise DependencyError("ray[serve]", "polyfuse serve --ray", "ray") from None
    return ray, serve


_RAY_CONFIG = ConfigDict(extra="forbid")


@config_errors("ray.deployment")
@dataclass(frozen=True, config=_RAY_CONFIG)
class DeploymentSettings:
    """One encoder deployment: batching, autoscaling and the resources of a replica.

    Attributes:
        max_batch_size: most requests in one ``@serve.batch`` forward pass.
        batch_wait_timeout_s: how long a batch waits for company after its first item.
        min_replicas: fewest replicas the autoscaler keeps.
        max_replicas: most replicas the autoscaler starts (across the cluster).
        target_ongoing_requests: ongoing requests per replica the autoscaler aims at.
        max_ongoing_requests: most requests one replica takes at once (>= a batch).
        num_cpus: CPUs reserved per replica (also its torch threads).
        num_gpus: GPUs per replica (> 0: the replica encodes on CUDA).
        resources: custom Ray resources per replica, e.g. ``{"encoders": 1}`` to place
            replicas on nodes started with ``ray start --resources='{"encoders": 4}'``.
    """

    max_batch_size: PositiveInt = 8
    batch_wait_timeout_s: NonNegativeFloat = 0.005
    min_replicas: NonNegativeInt = 1
    max_replicas: PositiveInt = 2
    target_ongoing_requests: YamlFloat = 4.0
    max_ongoing_requests: PositiveInt = 32
    num_cpus: NonNegativeFloat = 1.0
    num_gpus: NonNegativeFloat = 0.0
    resources: Mapping[str, YamlFloat] = field(default_factory=dict)

    def check(self, where: str) -> None:
        """Raise `ConfigError` naming the bad setting."""
        for key in ("max_batch_size", "max_replicas", "max_ongoing_requests"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{where}.{key}", "must be at least 1")
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ConfigError(f"{where}.min_replicas", "must be in 0..max_replicas")
        for key in ("batch_wait_timeout_s", "num_cpus", "num_gpus"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{where}.{key}", "must be >= 0")
        if self.target_ongoing_requests <= 0:
            raise ConfigError(f"{where}.target_ongoing_requests", "must be > 0")

    def options(self) -> dict[str, Any]:
        """Keyword arguments of ``Deployment.options``."""
        return {
            "max_ongoing_requests": self.max_ongoing_requests,
            "autoscaling_config": {
                "min_replicas": self.min_replicas,
                "initial_replicas": max(1, self.min_replicas),
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
            },
            "ray_actor_options": {
                "num_cpus": self.num_cpus,
                "num_gpus": self.num_gpus,
                "resources": dict(self.resources),
            },
        }

    @property
    def device(self) -> str:
        """Where a replica encodes."""
        return "cuda" if self.num_gpus > 0 else "cpu"


@config_errors("ray")
@dataclass(frozen=True, config=_RAY_CONFIG)
class RayConfig:
    """Where Ray runs and how the encoder deployments scale.

    Attributes:
        address: ``None`` starts a local Ray instance; ``"auto"`` joins the cluster that
            ``ray start`` runs on this node; ``"ray://HOST:10001"`` a remote one.
        num_cpus: CPUs of a local Ray instance (None: all); ignored with ``address``.
        app_prefix: Ray Serve application names are ``{app_prefix}-{modality}``.
        deployment: settings of every encoder deployment.
        per_modality: modality -> settings that override ``deployment``.
    """

    address: StrictStr | None = None
    num_cpus: Annotated[StrictInt, Field(ge=1)] | None = None
    app_prefix: StrictStr = "polyfuse"
    deployment: DeploymentSettings = DeploymentSettings()
    per_modality: Mapping[str, DeploymentSettings] = field(default_factory=dict)

    def settings(self, modality: str) -> DeploymentSettings:
        """The deployment settings of one modality."""
        return self.per_modality.get(modality, self.deployment)

    def check(self) -> None:
        """Raise `ConfigError` naming the bad setting."""
        self.deployment.check("ray.deployment")
        for m, s in self.per_modality.items():
            s.check(f"ray.per_modality.{m}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RayConfig:
        """From a mapping: ``address``, ``num_cpus``, ``app_prefix``, ``deployment`` (a
        `DeploymentSettings` mapping) and ``per_modality`` (modality -> such a mapping)."""
        if not isinstance(data, Mapping):
            raise ConfigError("ray", "must be a mapping of settings", hint="see RayConfig")

        def settings(raw: Any, where: str, base: DeploymentSettings) -> DeploymentSettings:
            if not isinstance(raw, Mapping):
                raise ConfigError(
                    where,
                    "must be a mapping of deployment settings",
                    hint="e.g. {max_batch_size: 8, max_replicas: 2}",
                )
            return validate(DeploymentSettings, {**dataclasses.asdict(base), **raw}, where)

        values = dict(data)
        base = settings(values.pop("deployment", {}) or {}, "ray.deployment", DeploymentSettings())
        per = values.pop("per_modality", {}) or {}
        if not isinstance(per, Mapping):
            raise ConfigError(
                "ray.per_modality",
                "must map modality names to settings",
                hint="e.g. per_modality: {image: {num_gpus: 1}}",
            )
        config = validate(cls, values, "ray")
        config = dataclasses.replace(
            config,
            deployment=base,
            per_modality={m: settings(s, f"ray.per_modality.{m}", base) for m, s in per.items()},
        )
        config.check()
        return config

    @classmethod
    def from_file(cls, path: str | Path) -> RayConfig:
        """From a YAML mapping (see `from_dict`)."""
        from polyfuse.serve.config import read_yaml_mapping

        return cls.from_dict(read_yaml_mapping(path, "--ray-config"))


class EncoderReplica:
    """The work of one encoder replica: load the artifact, preprocess and encode a batch.

    Plain Python (no Ray): `encoder_deployment` wraps it in a Ray Serve deployment.
    Answers are ``{"value": embedding}`` or ``{"error", "hint"}`` for an input the
    modality cannot read (so one bad input never fails the rest of its batch).
    """

    def __init__(self, artifact_path: str, modality: str, device: str, threads: int) -> None:
        from polyfuse.artifacts.classifier import load_artifact
        from polyfuse.core.device import resolve_device

        torch.set_num_threads(max(1, threads))
        self.device = resolve_device(device)
        artifact = load_artifact(artifact_path, self.device)
        self.model = artifact.model.to(self.device).eval()
        self.contract = artifact.contracts[modality]
        self.gate = artifact.quality_gates().get(modality)
        self.stage = eager_stage(  # built once, not per batch
            self.model.encoder(modality),
            self.model.adapters[modality],
            tokens=self.model.fusion.uses_tokens,
        )

    def encode_many(self, raws: list[bytes | str]) -> list[dict[str, Any]]:
        done = [preprocess_value(self.contract, r, self.gate) for r in raws]
        good = [(i, d.array) for i, d in enumerate(done) if d.array is not None]
        items = [torch.from_numpy(array) for _, array in good]
        values = (
            encode_items(self.model, self.contract, items, self.device, stage=self.stage)
            if items
            else []
        )
        out: list[dict[str, Any]] = [
            {"low_quality": d.low_quality}
            if d.low_quality is not None
            else {"error": d.error, "hint": d.hint}
            for d in done
        ]
        for (i, _), value in zip(good, values, strict=True):
            out[i] = {"value": dict(value)}
        return out


def encoder_deployment(settings: DeploymentSettings) -> Any:
    """A Ray Serve deployment class over `EncoderReplica` batched with ``settings``."""
    _, serve = import_ray()

    class EncoderDeployment(EncoderReplica):
        @serve.batch(
            max_batch_size=settings.max_batch_size,
            batch_wait_timeout_s=settings.batch_wait_timeout_s,
        )
        async def encode(self, raws: list[bytes | str]) -> list[dict[str, Any]]:
            # a worker thread: the replica's event loop keeps filling the next batch
            return await asyncio.to_thread(self.encode_many, raws)

    return serve.deployment(EncoderDeployment)


class RayRuntime(ModelRuntime):
    """`ModelRuntime` with the per-modality preprocessing and encoders on Ray Serve
    (implements `polyfuse.serve.types.Runtime`; see the module docstring).

    The driver keeps the artifact for fusion and decoding; each deployment loads it
    again from ``artifact.path``, which must be readable at the same path on every node
    (a shared filesystem or the same copy everywhere).

    Args:
        artifact: the loaded artifact (saved: it needs ``artifact.path``).
        config: runtime options; ``encoder_timeout_s``, breakers, cache and ``degraded``
            apply as in-process; batching and preprocessing options do not (see
            ``ray_config``).
        ray_config: Ray address and the encoder deployments' settings.
        cache: an embedding cache to use instead of the one ``config.cache`` names.
    """

    chained = False  # each stage is one remote call (`_compute`), gathered per request

    def __init__(
        self,
        artifact: Artifact,
        config: RuntimeConfig | None = None,
        ray_config: RayConfig | None = None,
        *,
        cache: EmbeddingCache | None = None,
    ) -> None:
        super().__init__(artifact, config, cache=cache)
        self.ray_config = ray_config or RayConfig()
        self.ray_config.check()
        if artifact.path is None:
            raise ConfigError("artifact", "RayRuntime needs a saved artifact (its folder)")
        self._handles: dict[str, Any] = {}
        self._started_ray = False

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        encoder_wrappers: Mapping[str, Any] | None = None,
        ray_config: RayConfig | None = None,
        **options: Any,
    ) -> RayRuntime:
        """Load an artifact folder, deploy its encoders on Ray Serve and wait for them.

        ``options`` are `RuntimeConfig` fields; ``encoder_wrappers`` are not supported
        (encoders run in Ray replicas).
        """
        from polyfuse.artifacts.classifier import load_artifact
        from polyfuse.core.device import resolve_device

        if encoder_wrappers:
            raise ConfigError("encoder_wrappers", "not supported by RayRuntime")
        options.pop("max_batch", None)  # batching belongs to the deployments
        options.pop("max_wait_ms", None)
        config = RuntimeConfig.from_options(**options)
        artifact = load_artifact(path, resolve_device(config.device))
        runtime = cls(artifact, config, ray_config)
        runtime.setup()
        return runtime

    def setup(self) -> None:
        """Connect to (or start) Ray, deploy one encoder application per modality and wait
        until each is running (blocking)."""
        from polyfuse.core.device import resolve_device

        ray, serve = import_ray()
        rc = self.ray_config
        self.device = resolve_device(self.config.device)
        self.model.to(self.device).eval()
        if self._cache is None:
            self._cache = self._make_cache()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if rc.address is None and rc.num_cpus is not None:
                kwargs["num_cpus"] = rc.num_cpus
            ray.init(address=rc.address, **kwargs)
            self._started_ray = True
        serve.start(proxy_location="Disabled")  # HTTP is the driver's FastAPI app
        path = str(Path(str(self.artifact.path)).resolve())
        for m in self.model.modalities:
            self._register(m)
            s = rc.settings(m)
            app = (
                encoder_deployment(s)
                .options(name=f"encoder-{m}", **s.options())
                .bind(path, m, s.device, max(1, round(s.num_cpus)))
            )
            handle = serve.run(app, name=self._app_name(m), route_prefix=None)
            self._handles[m] = handle
            log.info("%s: deployed %s on Ray Serve", m, self._app_name(m))
        self._fuser = self._make_fuser()  # fusion stays in the driver, batched
        self._ready = True

    def _app_name(self, m: str) -> str:
        return f"{self.ray_config.app_prefix}-{m}"

    async def _compute(self, m: str, raw: bytes | str, stage: Stage) -> None:
        t = time.perf_counter()
        try:
            stage.value, stage.reason = await self._encode(
                m, lambda t: _within(t, self._remote(m, raw))
            )
        except LowQualityError as exc:
            stage.reason, stage.detail = LOW_QUALITY, exc.reason
        stage.timings[f"remote:{m}"] = ms_since(t)  # preprocess + queue + encode, in Ray

    async def _remote(self, m: str, raw: bytes | str) -> CachedValue:
        answer: dict[str, Any] = await self._handles[m].encode.remote(raw)
        if "low_quality" in answer:
            raise LowQualityError(answer["low_quality"])
        if "error" in answer:
            raise ServeError(
                "invalid_input", str(answer["error"]), hint=answer["hint"], details={"modality": m}
            )
        value: CachedValue = answer["value"]
        return value

    def stats(self) -> dict[str, Any]:
        """Counters, breakers, cache and each deployment's configured scaling."""
        return {
            "requests": dict(self._counts),
            "breakers": {m: b.snapshot() for m, b in self._breakers.items()},
            "cache": None if self._cache is None else self._cache.stats().to_dict(),
            "fusion": None if self._fuser is None else self._fuser.stats().to_dict(),
            "deployments": {
                m: {
                    "max_batch_size": self.ray_config.settings(m).max_batch_size,
                    "min_replicas": self.ray_config.settings(m).min_replicas,
                    "max_replicas": self.ray_config.settings(m).max_replicas,
                }
                for m in self._handles
            },
        }

    async def close(self) -> None:
        """Delete the encoder applications; shut Ray down when this runtime started it."""
        self._ready = False
        _, serve = import_ray()

        def stop() -> None:
            for m in list(self._handles):
                serve.delete(self._app_name(m))
            self._handles.clear()
            if self._started_ray:
                import ray

                serve.shutdown()
                ray.shutdown()

        await asyncio.to_thread(stop)
        if self._fuser is not None:
            await self._fuser.close()
        if self._cache is not None:
            self._cache.close()


async def _within(seconds: float, call: Awaitable[T]) -> T:
    """``await call``, or `TimeoutError` after ``seconds``."""
    async with asyncio.timeout(seconds):
        return await call


__all__ = [
    "DeploymentSettings",
    "EncoderReplica",
    "RayConfig",
    "RayRuntime",
    "encoder_deployment",
    "import_ray",
]
