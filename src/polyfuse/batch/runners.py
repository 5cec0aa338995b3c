"""Where the stages run: in this process, or as Ray Data actor pools on a Ray cluster.

Both runners take the rows to do and a list of `Stage`s and yield output batches in no
particular order (rows carry their index and part). `RayRunner` builds one
``map_batches`` actor pool per stage (preprocessing, each encoder, fusion), so every
encoder is loaded once per actor and batches stream between pools.
"""

from __future__ import annotations

import logging
import math
import socket
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from polyfuse.batch import columns as col
from polyfuse.batch.columns import Columns
from polyfuse.core.errors import ConfigError, DependencyError

log = logging.getLogger("polyfuse.batch")

#: How to start a cluster the user can point --ray-address at.
START_HINT = (
    "start a head with `ray start --head --port=6379` and pass HOST:6379 "
    "(or `auto` on a cluster node), or leave --ray-address out to start a local Ray"
)


@dataclass(frozen=True)
class Stage:
    """One step of a job: a callable class built once per worker, and its workers.

    Attributes:
        name: shown in logs and Ray's operator names.
        cls: the class (`polyfuse.batch.stages`); ``cls(*args)`` loads, ``obj(batch)`` runs.
        args: its constructor arguments (picklable).
        actors: workers running it side by side (Ray).
        gpus: GPUs per worker (Ray; 0 on CPU).
    """

    name: str
    cls: type[Any]
    args: tuple[Any, ...]
    actors: int = 1
    gpus: float = 0.0


class Runner(ABC):
    """Runs stages over rows."""

    @abstractmethod
    def run(
        self, items: Sequence[dict[str, Any]], stages: Sequence[Stage], batch_size: int
    ) -> Iterator[Columns]:
        """Output batches of the last stage over ``items`` (one dict of columns per row)."""


class LocalRunner(Runner):
    """Every stage in this process, one batch after another (no Ray)."""

    def run(
        self, items: Sequence[dict[str, Any]], stages: Sequence[Stage], batch_size: int
    ) -> Iterator[Columns]:
        """Build each stage once, then push batches of ``batch_size`` rows through them."""
        workers = [s.cls(*s.args) for s in stages]
        keys = list(items[0]) if items else []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            batch = col.make({k: [it.get(k) for it in chunk] for k in keys})
            for worker in workers:
                batch = worker(batch)
            yield batch


class RayRunner(Runner):
    """Stages as Ray Data actor pools (``map_batches`` with an `ActorPoolStrategy` each).

    Args:
        address: a running cluster (``HOST:PORT``, ``ray://HOST:PORT`` or ``auto``);
            None starts a local Ray (or uses the one this process already started).
        cpus_per_actor: CPUs each actor asks for; lowered when the cluster has fewer
            CPUs than the pools together need, so a job never waits for CPUs forever.
        progress: Ray Data's progress bars.
    """

    def __init__(
        self, address: str | None = None, cpus_per_actor: float = 1.0, progress: bool = False
    ) -> None:
        self.address = address
        self.cpus_per_actor = cpus_per_actor
        self.progress = progress

    def run(
        self, items: Sequence[dict[str, Any]], stages: Sequence[Stage], batch_size: int
    ) -> Iterator[Columns]:
        """Stream the last pool's output batches to this process."""
        ray = connect(self.address)
        if not items:
            return
        from ray import data

        data.DataContext.get_current().enable_progress_bars = self.progress
        blocks = max(1, math.ceil(len(items) / batch_size))
        ds: Any = data.from_items(list(items), override_num_blocks=blocks)
        cpus = self._cpus(ray, stages)
        for s in stages:
            ds = ds.map_batches(
                s.cls,
                fn_constructor_args=s.args,
                compute=data.ActorPoolStrategy(size=s.actors),
                batch_size=batch_size,
                batch_format="numpy",
                num_cpus=cpus,
                num_gpus=s.gpus,
            )
        yield from ds.iter_batches(batch_size=None, batch_format="numpy")

    def _cpus(self, ray: Any, stages: Sequence[Stage]) -> float:
        total = float(ray.cluster_resources().get("CPU", 1.0))
        actors = sum(s.actors for s in stages)
        cpus = min(self.cpus_per_actor, total / actors)
        if cpus < self.cpus_per_actor:
            log.info("%d actors on %.0f CPUs: %.2f CPU each", actors, total, cpus)
        return cpus


def connect(address: str | None) -> Any:
    """The `ray` module, connected: to ``address``, to the Ray this process already
    started, or to a new local one.

    Raises:
        DependencyError: Ray Data is not installed.
        ConfigError: ``address`` is malformed or nothing answers there.
    """
    try:
        import ray
    except ImportError as exc:
        raise DependencyError("ray", "--ray", "batch") from exc
    if address:
        check_address(address)
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(
            "--ray-address", f"cannot join the Ray cluster at {address}: {exc}", hint=START_HINT
        ) from exc
    return ray


def check_address(address: str, timeout_s: float = 3.0) -> None:
    """`ConfigError` unless ``address`` is ``auto`` or a ``[ray://]HOST:PORT`` that accepts
    a connection (checked before Ray spends a minute retrying)."""
    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(
            "--ray-address",
            f"'{address}' is not HOST:PORT, ray://HOST:PORT or auto",
            hint=START_HINT,
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(
            "--ray-address",
            f"nothing answers at {address} ({exc.strerror or exc})",
            hint=START_HINT,
        ) from None
