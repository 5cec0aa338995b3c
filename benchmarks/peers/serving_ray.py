"""The Ray Serve peer: a polyfuse artifact in a Ray Serve deployment behind Ray Serve's HTTP
proxy (started by ``serving.py --peer ray-serve``).

Configuration for a CPU machine, following Ray Serve's documentation:

- **replicas**: ``num_replicas=workers`` (2 on this machine), each reserving one core
  (``ray_actor_options={"num_cpus": 1}``) with one torch thread: "Are you reserving one or more
  cores for your deployment replicas ... Are you setting OMP_NUM_THREADS" (Performance Tuning,
  https://docs.ray.io/en/latest/serve/advanced-guides/performance.html). Ray sets
  ``OMP_NUM_THREADS`` to an actor's ``num_cpus``; torch's threads are set to match.
- **batching**: ``@serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)`` (a power of 2 and
  a wait well under the latency budget, "Tips for fine-tuning batching parameters", Dynamic
  Request Batching, https://docs.ray.io/en/latest/serve/advanced-guides/dyn-req-batch.html).
- **max_ongoing_requests** ``2 x max_batch_size``: Serve's default (5) would cap every batch at 5
  (Serve warns when ``max_ongoing_requests < max_batch_size * max_concurrent_batches``), and
  ``async`` callables under load want it raised (Performance Tuning, "Using async methods"); twice
  the batch lets the next batch gather while one runs.
- **throughput-optimized flags** (Performance Tuning, "Enable throughput-optimized flags"):
  ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` (user code and the router on the replica's event loop,
  buffered request logs, gRPC between proxy and replicas, heap frozen at start-up) with
  ``RAY_SERVE_ENABLE_DIRECT_INGRESS=0``, which that flag would otherwise turn on: direct ingress
  serves HTTP from the replicas with no proxy, and the issue asks for Ray Serve behind its
  proxy. The model runs in a worker thread (``asyncio.to_thread``) so the replica's event loop
  never blocks, as those flags require.
- a local Ray instance of ``workers`` CPUs, no dashboard, usage stats off.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _environment() -> None:
    """Flags read when Ray and Serve import; the replicas inherit them with ``PYTHONPATH``
    (this folder, so they import `serving`; polyfuse as this process finds it)."""
    os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    os.environ.setdefault("RAY_SERVE_ENABLE_DIRECT_INGRESS", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    paths = [str(HERE), *sys.path[1:], os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)


def build_app(artifact: str, max_batch: int, wait_s: float, workers: int) -> Any:
    """The bound Serve application: one deployment, ``workers`` replicas."""
    from ray import serve
    from serving import Answer, BadRequestError, Inputs, PeerModel, request_inputs
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response

    @serve.deployment(
        num_replicas=workers,
        ray_actor_options={"num_cpus": 1},
        max_ongoing_requests=2 * max_batch,
    )
    class PolyfuseModel:
        """The artifact behind ``/v1/predict`` (``GET`` answers 200 once loaded)."""

        def __init__(self) -> None:
            self.model = PeerModel(artifact, max_batch, torch_threads=1).load()
            self.predict_batch.set_max_batch_size(max_batch)
            self.predict_batch.set_batch_wait_timeout_s(wait_s)

        @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
        async def predict_batch(self, batch: list[Inputs]) -> list[Answer]:
            return await asyncio.to_thread(self.model.predict, batch)

        async def __call__(self, request: Request) -> Response:
            if request.method == "GET":
                return PlainTextResponse("ok")
            try:
                inputs = await request_inputs(request)
            except BadRequestError as exc:
                return JSONResponse({"error": {"code": "invalid_input", "message": str(exc)}}, 400)
            answer = await self.predict_batch(inputs)
            return JSONResponse(answer.body, answer.status)

    return PolyfuseModel.bind()  # type: ignore[attr-defined]


def serve_forever(artifact: str, port: int, max_batch: int, wait_s: float, workers: int) -> None:
    """Start a local Ray instance and Serve's proxy on 127.0.0.1:``port``; serve until
    terminated."""
    _environment()
    import ray
    from ray import serve

    ray.init(
        address="local",
        num_cpus=workers,
        include_dashboard=False,
        logging_level="WARNING",
        log_to_driver=False,
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(
        build_app(str(Path(artifact).resolve()), max_batch, wait_s, workers),
        name="polyfuse",
        route_prefix="/v1/predict",
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run the cleanup below
    try:
        while True:
            time.sleep(3600)
    finally:
        serve.shutdown()
        ray.shutdown()
