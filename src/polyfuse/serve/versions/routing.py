"""Which version answers a request: the champion, or the canary for a sticky share of the
callers.

A caller is the request's route key: the ``X-Polyfuse-Route`` header when the client sends
one (a front end passing its end user's id), else the API key's id. The key is hashed with
the canary's name into a number in [0, 1); the canary answers callers below its weight, so
the same caller stays on one version for the canary's whole life, and raising the weight
only moves callers from the champion to the canary (never back). A request without a route
key (no header, no API keys) is routed at random.
"""

from __future__ import annotations

import hashlib
import random

from polyfuse.core.errors import ConfigError

#: Header a client may send to choose its routing identity (sticky per value).
ROUTE_HEADER = "x-polyfuse-route"


def bucket(key: str, salt: str) -> float:
    """``key`` hashed with ``salt`` to a number in [0, 1) (the first 8 bytes of SHA-256)."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def check_weight(weight: float, where: str = "--canary-weight") -> float:
    """``weight`` when it is in [0, 1]; else a `ConfigError` naming ``where``."""
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(where, f"must be in [0, 1], got {weight}", hint="e.g. 0.05 for 5 %")
    return float(weight)


class CanaryRouter:
    """Sticky canary routing (see the module docstring).

    Args:
        salt: mixes the hash, so each canary draws its own callers (its name).
        weight: share of callers the canary answers, in [0, 1].
        rng: random source for requests without a route key.
    """

    def __init__(self, salt: str, weight: float, rng: random.Random | None = None) -> None:
        self.salt = salt
        self.weight = check_weight(weight)
        self._rng = rng or random.Random()

    def canary(self, route_key: str | None) -> bool:
        """Whether the canary answers a request from ``route_key``."""
        if self.weight <= 0.0:
            return False
        if route_key is None:
            return self._rng.random() < self.weight
        return bucket(route_key, self.salt) < self.weight
