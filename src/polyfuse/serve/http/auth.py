"""API keys and per-key rate limits, as one ASGI middleware.

Keys are compared by SHA-256 hash in constant time; a key is named in logs and
metrics by the first 12 hex digits of its hash, never by the key. With no keys
configured the server answers loopback clients only (unless ``insecure``).
"""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from polyfuse.serve.config import KeyLimit, hash_key, is_loopback
from polyfuse.serve.types import ServeError


class KeyStore:
    """The accepted API keys, stored hashed.

    Args:
        hashes: SHA-256 hex digests of the keys.
    """

    def __init__(self, hashes: Iterable[str]) -> None:
        self._hashes = tuple(h.lower() for h in hashes)

    def __bool__(self) -> bool:
        return bool(self._hashes)

    def identify(self, key: str) -> str | None:
        """The key's id (hash prefix) when it is accepted, else None."""
        digest = hash_key(key)
        found = False
        for stored in self._hashes:  # no early exit: time does not depend on the match
            found |= hmac.compare_digest(stored, digest)
        return digest[:12] if found else None


def presented_key(headers: Headers) -> str | None:
    """The key from ``Authorization: Bearer KEY`` or ``X-API-Key``, if any."""
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = headers.get("x-api-key", "").strip()
    return key or None


@dataclass
class TokenBucket:
    """A token bucket: ``rate`` tokens a second up to ``burst``."""

    rate: float
    burst: int
    tokens: float
    stamp: float

    def take(self, now: float) -> float:
        """Take one token; returns 0 on success, else seconds until one is available."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """One `TokenBucket` per key id, with the key's own limit where it has one.

    Args:
        rate: requests per second per key (0 disables the limit).
        burst: requests a key may make at once.
        clock: monotonic clock (tests pass a fake one).
        limits: a key's own ``(rate, burst)`` by key hash (a 12-hex key id works too);
            None in either place takes ``rate`` / ``burst``, a rate of 0 is no limit.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        limits: Mapping[str, KeyLimit] | None = None,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._limits = {
            digest.lower()[:12]: (
                rate if own_rate is None else own_rate,
                burst if own_burst is None else own_burst,
            )
            for digest, (own_rate, own_burst) in (limits or {}).items()
        }
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def limit(self, key_id: str) -> tuple[float, int]:
        """``(rate, burst)`` of ``key_id``: its own limit, else the default."""
        return self._limits.get(key_id, (self.rate, self.burst))

    def check(self, key_id: str) -> None:
        """Spend one request of ``key_id``; raises ``rate_limited`` when none is left."""
        rate, burst = self.limit(key_id)
        if rate <= 0:
            return
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None:
                bucket = self._buckets[key_id] = TokenBucket(rate, burst, float(burst), now)
            wait = bucket.take(now)
        if wait > 0:
            raise ServeError(
                "rate_limited",
                f"more than {rate:g} requests a second (burst {burst}) for this key",
                hint="slow down and retry after the Retry-After header's seconds",
                retry_after=float(math.ceil(wait)),
            )


#: Paths anyone may call: liveness, readiness, metrics and the API docs.
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json"}
    | {"/v2/health/live", "/v2/health/ready"}
)


class AuthMiddleware:
    """Checks the API key (401 missing, 403 wrong) and the key's rate limit (429).

    Without keys, only loopback clients are served unless ``insecure``; their rate
    limit is per client address. Errors are raised as `ServeError` for the outer
    middleware to render.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: KeyStore,
        limiter: RateLimiter,
        insecure: bool = False,
        public: frozenset[str] = PUBLIC_PATHS,
    ) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter
        self.insecure = insecure
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.public:
            await self.app(scope, receive, send)
            return
        key_id = self.authenticate(scope)
        scope.setdefault("state", {})["key_id"] = key_id
        self.limiter.check(key_id)
        await self.app(scope, receive, send)

    def authenticate(self, scope: Scope) -> str:
        """The caller's key id (or ``client:HOST`` without keys); raises `ServeError`."""
        if not self.keys:
            host = (scope.get("client") or ("unknown", 0))[0]
            if not self.insecure and not is_loopback(str(host)):
                raise ServeError(
                    "forbidden",
                    "this server has no API keys and answers loopback clients only",
                    hint="configure API keys (--api-keys FILE or POLYFUSE_API_KEYS)",
                )
            return f"client:{host}"
        key = presented_key(Headers(scope=scope))
        if key is None:
            raise ServeError(
                "unauthorized",
                "no API key",
                hint="send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
            )
        key_id = self.keys.identify(key)
        if key_id is None:
            raise ServeError("forbidden", "API key not accepted", hint="check the key")
        return key_id
