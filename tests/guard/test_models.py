"""`ModelCache`: each model loaded once per cache; a `Guard` owns its own."""

from __future__ import annotations

import threading

from polyfuse.guard.engine import Guard
from polyfuse.guard.models import SHARED_MODELS, ModelCache


def test_each_key_loads_once_even_across_threads() -> None:
    cache = ModelCache()
    calls: list[str] = []

    def load() -> object:
        calls.append("x")
        return object()

    threads = [threading.Thread(target=cache.get, args=(("k", 1), load)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first = cache.get(("k", 1), load)
    assert calls == ["x"] and ("k", 1) in cache and len(cache) == 1
    assert cache.get(("k", 2), load) is not first and len(calls) == 2
    cache.clear()
    assert len(cache) == 0 and cache.get(("k", 1), load) is not first


def test_guard_parts_use_the_guards_cache() -> None:
    a, b = Guard(), Guard()
    assert a.models is not b.models and a.models is not SHARED_MODELS
    pii = a.text_detectors[0]
    assert getattr(pii, "models", None) is a.models
    assert a.audio_scanner.models is a.models
    assert a.image_scanner.models is a.models
