"""Feature cache: round trip, keys, atomic writes."""

from __future__ import annotations

from pathlib import Path

import torch

from polyfuse.encoders import FeatureCache, content_hash


def test_round_trip_in_float16(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "enc123")
    tokens = torch.randn(5, 7)
    key = content_hash(b"file bytes")
    assert key not in cache and cache.get(key) is None
    cache.put(key, tokens)
    assert key in cache
    back = cache.get(key)
    assert back is not None and back.dtype == torch.float32
    assert torch.allclose(back, tokens.half().float())
    assert (cache.hits, cache.misses) == (1, 1)
    assert not list(tmp_path.rglob("*.tmp"))


def test_keys_separate_encoders_and_contents(tmp_path: Path) -> None:
    assert content_hash(b"a") != content_hash(b"b")
    assert content_hash("text") == content_hash(b"text")
    FeatureCache(tmp_path, "enc-a").put("k" * 64, torch.zeros(1, 2))
    assert "k" * 64 not in FeatureCache(tmp_path, "enc-b")
