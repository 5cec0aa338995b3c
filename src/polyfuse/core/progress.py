"""Progress bars that stay out of logs and tests unless a terminal is watching."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def bar(iterable: Iterable[T] | None = None, *, enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar; ``enabled=False`` hides it, otherwise it shows only on a terminal."""
    return tqdm(iterable, disable=None if enabled else True, dynamic_ncols=True, **kwargs)
