"""A thin name -> builder registry (the timm ``register_model`` pattern).

Registries hold *builders* (classes or functions), never instances, so
configs can store names and rebuild components later.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from polyfuse.core.errors import ConfigError, RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps component names to builders.

    Args:
        kind: what the registry holds, used in error messages ("encoder").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers a builder under ``name``."""

        def decorate(builder: Callable[..., T]) -> Callable[..., T]:
            if name in self._builders:
                raise RegistryError(f"{self.kind}s", f"'{name}' is registered twice")
            self._builders[name] = builder
            return builder

        return decorate

    def get(self, name: str) -> Callable[..., T]:
        """Return the builder for ``name`` or raise a `RegistryError` listing valid names."""
        try:
            return self._builders[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._builders, n=1)
            hint = f"did you mean '{close[0]}'?" if close else None
            raise RegistryError(
                self.kind,
                f"unknown {self.kind} '{name}'; known: {', '.join(self.list())}",
                hint=hint,
            ) from None

    def build(self, name: str, /, *args: object, where: str, params: Mapping[str, Any]) -> T:
        """Build ``name`` from positional parts plus configured keyword ``params``.

        Unknown parameter names are a `ConfigError` at ``where.<key>`` listing the valid
        ones (the builder's keyword parameters after the positional parts).
        """
        builder = self.get(name)
        target = builder.__init__ if inspect.isclass(builder) else builder
        names = [p for p in inspect.signature(target).parameters if p != "self"]
        accepted = names[len(args) :]
        for key in params:
            if key not in accepted:
                raise ConfigError(
                    f"{where}.{key}",
                    f"unknown parameter of {self.kind} '{name}'; valid: {', '.join(accepted)}",
                )
        return builder(*args, **params)

    def list(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())
