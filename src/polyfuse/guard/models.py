"""`ModelCache`: the loaded models of one firewall (Whisper, the Presidio analyzer ...).

A `polyfuse.guard.engine.Guard` owns one and hands it to the readers and detectors it
builds, so models live as long as the engine that uses them and two engines never share
state by accident. Parts built on their own (``TextPII()``, ``transcribe(...)``) use
`SHARED_MODELS`, one cache per process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class ModelCache:
    """Models keyed by ``(kind, ...)``, each loaded once; safe to share between threads."""

    def __init__(self) -> None:
        self._items: dict[Hashable, Any] = {}
        self._lock = threading.RLock()

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        """The model under ``key``, loaded with ``load()`` on first use."""
        with self._lock:
            if key not in self._items:
                self._items[key] = load()
            item: T = self._items[key]
            return item

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        """Drop every model (they are loaded again on next use)."""
        with self._lock:
            self._items.clear()


#: The cache of parts built without one (outside a `Guard`).
SHARED_MODELS = ModelCache()
