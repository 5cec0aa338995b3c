"""Per-modality embedding caches keyed by content hash and encoder version.

A repeated input (the same image bytes, the same text) skips preprocessing and the
encoder. The key holds the modality, a version string that changes whenever the
encoder, its contract or the trained adapter change, and the sha256 of the raw content,
so a cache shared by several replicas (Redis) never mixes models.

Values are small mappings of tensors (``{"pooled": (D,), "tokens": (T, D), "mask": (T,)}``).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from polyfuse.core.errors import DependencyError

#: A cached embedding: named tensors.
CachedValue = Mapping[str, Tensor]


@dataclass(frozen=True)
class CacheKey:
    """Identity of one cached embedding.

    Attributes:
        modality: modality name.
        version: encoder + contract + weights version (changes invalidate).
        digest: sha256 hex of the raw content.
    """

    modality: str
    version: str
    digest: str

    def text(self, prefix: str = "polyfuse:emb") -> str:
        """Flat string form (Redis key)."""
        return f"{prefix}:{self.modality}:{self.version}:{self.digest}"


def content_digest(value: bytes | str) -> str:
    """sha256 hex of raw content (strings as UTF-8)."""
    data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    return hashlib.sha256(data).hexdigest()


#: Memory a cached entry takes besides its tensor data (key, dict, tensor objects and
#: their storage headers): 20,000 entries of one 64-float tensor took 1,328 bytes each of
#: process memory, 256 of them data.
ENTRY_OVERHEAD = 1024


def value_bytes(value: CachedValue) -> int:
    """Bytes a cached value takes in memory: its tensors' data plus `ENTRY_OVERHEAD`
    per tensor (the byte budget counts real memory, not only the numbers)."""
    return sum(t.numel() * t.element_size() + ENTRY_OVERHEAD for t in value.values())


@dataclass(frozen=True)
class CacheStats:
    """Cache counters (for metrics)."""

    backend: str
    hits: int
    misses: int
    entries: int
    bytes: int
    capacity_bytes: int | None
    evictions: int

    @property
    def hit_ratio(self) -> float:
        """hits / lookups (0 before any lookup)."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form with the hit ratio."""
        return {**self.__dict__, "hit_ratio": round(self.hit_ratio, 6)}


@runtime_checkable
class EmbeddingCache(Protocol):
    """What the runtime needs from an embedding cache."""

    #: True when `get`/`put` block on I/O (the runtime then calls them off the event loop).
    blocking: bool

    def get(self, key: CacheKey) -> CachedValue | None:
        """The cached value, or None (counted as a miss)."""
        ...

    def put(self, key: CacheKey, value: CachedValue) -> None:
        """Store ``value`` (may evict older entries)."""
        ...

    def stats(self) -> CacheStats:
        """Counters."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class MemoryCache:
    """In-process LRU cache bounded by the bytes of its tensors; thread-safe.

    Args:
        max_bytes: budget; the least recently used entries go first. A value larger
            than the whole budget is not stored.
    """

    blocking = False

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._data: OrderedDict[CacheKey, tuple[CachedValue, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._bytes = self._hits = self._misses = self._evictions = 0

    def get(self, key: CacheKey) -> CachedValue | None:
        """The value (now most recently used), or None."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                self._misses += 1
                return None
            self._data.move_to_end(key)
            self._hits += 1
            return entry[0]

    def put(self, key: CacheKey, value: CachedValue) -> None:
        """Store a detached copy of ``value``, evicting least recently used entries."""
        size = value_bytes(value)
        if size > self.max_bytes:
            return
        stored = {k: t.detach() for k, t in value.items()}
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            while self._data and self._bytes + size > self.max_bytes:
                _, (_, freed) = self._data.popitem(last=False)
                self._bytes -= freed
                self._evictions += 1
            self._data[key] = (stored, size)
            self._bytes += size

    def __len__(self) -> int:
        return len(self._data)

    def stats(self) -> CacheStats:
        """Counters."""
        with self._lock:
            return CacheStats(
                "memory",
                self._hits,
                self._misses,
                len(self._data),
                self._bytes,
                self.max_bytes,
                self._evictions,
            )

    def close(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._data.clear()
            self._bytes = 0


class RedisCache:
    """Embedding cache in Redis, shared by several replicas.

    Values are stored as safetensors bytes (no pickle: a shared cache must not run code).
    Hit and miss counters are this replica's own.

    Args:
        url: ``redis://host:port/db`` or ``unix:///path/redis.sock``.
        ttl_s: expiry of each entry in seconds (None: Redis' own eviction policy;
            set ``maxmemory`` and ``maxmemory-policy allkeys-lru`` on the server).
        prefix: key prefix.
        client: an existing ``redis.Redis`` client instead of ``url``.
    """

    blocking = True

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        ttl_s: float | None = 24 * 3600,
        prefix: str = "polyfuse:emb",
        client: Any = None,
    ) -> None:
        if client is None:
            try:
                import redis
            except ImportError as exc:
                raise DependencyError("redis", "the Redis embedding cache", "redis") from exc
            client = redis.Redis.from_url(url)
        self.client = client
        self.ttl_s = ttl_s
        self.prefix = prefix
        self._lock = threading.Lock()
        self._hits = self._misses = 0

    def get(self, key: CacheKey) -> CachedValue | None:
        """The value, or None."""
        from safetensors.torch import load

        blob = self.client.get(key.text(self.prefix))
        with self._lock:
            if blob is None:
                self._misses += 1
                return None
            self._hits += 1
        return load(bytes(blob))

    def put(self, key: CacheKey, value: CachedValue) -> None:
        """Store ``value`` with the configured expiry."""
        from safetensors.torch import save

        blob = save({k: t.detach().contiguous().cpu() for k, t in value.items()})
        ttl = None if self.ttl_s is None else max(1, int(self.ttl_s))
        self.client.set(key.text(self.prefix), blob, ex=ttl)

    def stats(self) -> CacheStats:
        """This replica's counters; entries and bytes are not tracked (-1)."""
        with self._lock:
            return CacheStats("redis", self._hits, self._misses, -1, -1, None, 0)

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


__all__ = [
    "CacheKey",
    "CacheStats",
    "CachedValue",
    "EmbeddingCache",
    "MemoryCache",
    "RedisCache",
    "content_digest",
    "value_bytes",
]
