"""A fake `Runtime` (the test boundary of the HTTP layer: no model, no torch) and a
synchronous client over the ASGI app."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI

from polyfuse.serve.types import ServeError, ServeRequest, ServeResult


class FakeRuntime:
    """Answers ``cat`` when the text mentions a cat, else ``dog``; records requests.

    Args:
        modalities: accepted modality names.
        error: a `ServeError` every call raises, if set.
        delay: seconds each call sleeps (for deadline tests).
    """

    labels = ("cat", "dog")

    def __init__(
        self,
        modalities: tuple[str, ...] = ("text", "image"),
        *,
        error: ServeError | None = None,
        delay: float = 0.0,
    ) -> None:
        self._modalities = modalities
        self.error = error
        self.delay = delay
        self.is_ready = True
        self.requests: list[ServeRequest] = []
        self.closed = False

    @property
    def modalities(self) -> tuple[str, ...]:
        return self._modalities

    def info(self) -> dict[str, Any]:
        return {
            "name": "fake",
            "version": "3",
            "modalities": list(self._modalities),
            "contracts": dict.fromkeys(self._modalities, "1"),
            "labels": list(self.labels),
        }

    def ready(self) -> bool:
        return self.is_ready

    async def _enter(self, request: ServeRequest) -> None:
        self.requests.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error

    async def frame_effects(self, request: ServeRequest, modality: str) -> dict[str, Any]:
        """Frames at 0, 0.5, 1 and 1.5 s; the one at 0.5 s matters most."""
        effects = (0.0, 0.3, 0.05, -0.02)
        frames = [{"t": 0.5 * i, "effect": e} for i, e in enumerate(effects)]
        return {"label": "cat", "probability": 0.9, "frames": frames}

    async def predict(self, request: ServeRequest) -> ServeResult:
        await self._enter(request)
        text = request.inputs.get("text", "")
        text = text.decode() if isinstance(text, bytes) else text
        cat = "cat" in text
        used = [m for m in self._modalities if m in request.inputs]
        missing = [m for m in self._modalities if m not in request.inputs]
        return ServeResult(
            request_id=request.request_id,
            label="cat" if cat else "dog",
            probabilities={"cat": 0.9, "dog": 0.1} if cat else {"cat": 0.2, "dog": 0.8},
            contributions=dict.fromkeys(used, 1.0 / max(1, len(used))),
            modalities_used=used,
            degraded=bool(missing) and "image" in missing,
            degraded_reasons={"image": "breaker_open"} if "image" in missing else {},
            model={"name": "fake", "version": "3"},
            timings_ms={"fuse": 1.5},
        )

    async def embed(self, request: ServeRequest) -> dict[str, list[float]]:
        await self._enter(request)
        return {m: [3.0, 4.0] for m in request.inputs}

    def live_monitor(self) -> None:
        """No drift monitoring in the fake."""
        return None

    def stats(self) -> dict[str, Any]:
        return {
            "queue_depth": 2,
            "cache": {"hit_ratio": 0.25},
            "breakers": {"image": "closed"},
            "batch_sizes": [1, 2],
        }

    async def close(self) -> None:
        self.closed = True


class Client:
    """Sends one request at a time through `httpx.ASGITransport` (no sockets)."""

    def __init__(self, app: FastAPI, client: tuple[str, int] = ("127.0.0.1", 5000)) -> None:
        self.app = app
        self.transport = httpx.ASGITransport(app=app, client=client)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=self.transport, base_url="http://t") as c:
                return await c.request(method, url, **kwargs)

        return asyncio.run(go())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


class LiveServer:
    """A real uvicorn server on a free loopback port, in a background thread."""

    def __init__(self, app: FastAPI) -> None:
        import socket
        import threading

        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
