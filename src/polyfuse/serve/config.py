"""`ServeConfig`: everything the HTTP layer needs to know, checked at start-up.

A config is a dataclass built from CLI flags or a YAML file (`ServeConfig.from_file`);
`ServeConfig.check` refuses unsafe or inconsistent settings with a message that names
the flag and says how to fix it. API keys are kept only as SHA-256 hashes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from polyfuse.errors import ConfigError

#: Environment variable with a comma-separated list of API keys.
API_KEYS_ENV = "POLYFUSE_API_KEYS"
OTEL_EXPORTERS = ("none", "console", "otlp")


def hash_key(key: str) -> str:
    """The stored form of an API key: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def read_key_hashes(path: str | Path) -> tuple[str, ...]:
    """Key hashes from a keys file: one key per line, or ``sha256:HEX`` for a key that
    is stored hashed already; blank lines and ``#`` comments are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError("--api-keys", f"cannot read {path}: {exc}") from None
    hashes: list[str] = []
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("sha256:"):
            digest = line.removeprefix("sha256:").lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ConfigError("--api-keys", f"{path}, line {number}: not a SHA-256 hex digest")
            hashes.append(digest)
        else:
            hashes.append(hash_key(line))
    return tuple(hashes)


def env_key_hashes(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Key hashes from `API_KEYS_ENV` (comma-separated keys)."""
    value = (os.environ if environ is None else environ).get(API_KEYS_ENV, "")
    return tuple(hash_key(k.strip()) for k in value.split(",") if k.strip())


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ServeConfig:
    """Settings of the HTTP layer.

    Attributes:
        host: address to bind.
        port: port to bind.
        model_name: name of the model in the Open Inference Protocol routes (default:
            the runtime's ``info()["name"]``).
        api_key_hashes: SHA-256 hex digests of the accepted API keys (empty: no auth,
            loopback only).
        insecure: allow binding a non-loopback address without API keys.
        rate_limit: requests per second per key (0: no limit).
        rate_burst: bucket size of the per-key rate limit.
        max_request_bytes: largest request body.
        max_item_bytes: largest single input (after base64 decoding).
        max_items: most inputs in one request.
        cors_origins: origins allowed by CORS (empty: no CORS headers).
        policy: firewall policy YAML (None: no firewall).
        guard_threads: threads that run the firewall.
        request_log: JSONL file of per-request records (hashes, no raw content).
        otel: OpenTelemetry exporter: ``none``, ``console`` or ``otlp``.
        default_timeout: seconds a request may take when it sets no ``X-Request-Timeout``.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    model_name: str | None = None
    api_key_hashes: tuple[str, ...] = ()
    insecure: bool = False
    rate_limit: float = 0.0
    rate_burst: int = 20
    max_request_bytes: int = 64 * 1024 * 1024
    max_item_bytes: int = 32 * 1024 * 1024
    max_items: int = 16
    cors_origins: tuple[str, ...] = ()
    policy: str | None = None
    guard_threads: int = 2
    request_log: str | None = None
    otel: str = "none"
    default_timeout: float | None = None

    @property
    def auth_enabled(self) -> bool:
        """True when API keys are configured."""
        return bool(self.api_key_hashes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServeConfig:
        """A config from a mapping of field names (``api_keys`` holds raw keys or
        ``sha256:HEX`` entries); unknown keys are refused."""
        names = {f.name for f in dataclasses.fields(cls)} - {"api_key_hashes"}
        unknown = set(data) - names - {"api_keys"}
        if unknown:
            raise ConfigError(
                "serve", f"unknown keys {sorted(unknown)}", hint=f"known: {sorted(names)}"
            )
        values = {k: v for k, v in data.items() if k in names}
        for key in ("cors_origins",):
            if key in values:
                values[key] = tuple(values[key] or ())
        keys = [str(k) for k in data.get("api_keys") or ()]
        hashes = tuple(
            k.removeprefix("sha256:") if k.startswith("sha256:") else hash_key(k) for k in keys
        )
        return cls(**values, api_key_hashes=hashes)

    @classmethod
    def from_file(cls, path: str | Path) -> ServeConfig:
        """A config from a YAML mapping (see `from_dict`)."""
        return cls.from_dict(read_yaml_mapping(path, "--config"))

    def check(self) -> None:
        """Refuse unsafe or inconsistent settings (raises `ConfigError` with a hint)."""
        if not self.auth_enabled and not self.insecure and not is_loopback(self.host):
            raise ConfigError(
                "--host",
                f"refusing to serve on {self.host} without API keys",
                hint="pass --api-keys FILE or set POLYFUSE_API_KEYS, bind 127.0.0.1, "
                "or pass --insecure to serve without authentication",
            )
        if self.otel not in OTEL_EXPORTERS:
            raise ConfigError("--otel", f"must be one of {', '.join(OTEL_EXPORTERS)}")
        if not 0 < self.port < 65536:
            raise ConfigError("--port", f"must be in 1..65535, got {self.port}")
        for name in ("max_request_bytes", "max_item_bytes", "max_items", "guard_threads"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be at least 1")
        if self.rate_limit < 0 or self.rate_burst < 1:
            raise ConfigError("rate_limit", "rate must be >= 0 and burst >= 1")


def read_yaml_mapping(path: str | Path, option: str) -> Mapping[str, Any]:
    """The YAML mapping in ``path`` (empty file: ``{}``); `ConfigError` naming ``option``
    when it cannot be read or is not a mapping."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(option, f"cannot read {path}: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(option, f"{path} must hold a mapping of settings")
    return data
