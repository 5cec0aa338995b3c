"""`ServeConfig`: everything the HTTP layer needs to know, checked at start-up.

A config is a dataclass built from CLI flags or a YAML file (`ServeConfig.from_file`);
`ServeConfig.check` refuses unsafe or inconsistent settings with a message that names
the flag and says how to fix it. API keys are kept only as SHA-256 hashes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import ipaddress
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from pydantic.dataclasses import dataclass

from polyfuse.core.config import (
    MODEL_CONFIG,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    config_errors,
    unknown_key,
    validate,
)
from polyfuse.core.errors import ConfigError
from polyfuse.release.canary import CanarySettings

#: Environment variable with a comma-separated list of API keys.
API_KEYS_ENV = "POLYFUSE_API_KEYS"
OTEL_EXPORTERS = ("none", "console", "otlp")
#: Prefix of the environment variables that set a `ServeConfig` field (``POLYFUSE_PORT``).
ENV_PREFIX = "POLYFUSE_"
#: Fields whose environment variable is not ``POLYFUSE_<FIELD>`` (``POLYFUSE_CACHE`` is the
#: feature-cache folder of training); the API keys have their own, `API_KEYS_ENV`.
ENV_NAMES = {"cache": "POLYFUSE_SERVE_CACHE"}
#: `ServeConfig` fields holding keys, set from key files and entries (never from a variable).
KEY_FIELDS = ("api_key_hashes", "key_limits", "admin_key_hashes")
#: `ServeConfig` fields handed to the model runtime (`ServeConfig.runtime_options`).
RUNTIME_OPTIONS = (
    "cache",
    "redis_url",
    "cache_bytes",
    "encoder_timeout_s",
    "breaker_failures",
    "breaker_reset_s",
    "breaker_half_open",
    "degraded",
    "max_batch",
    "max_wait_ms",
    "queue_size",
    "workers",
    "preprocess",
    "preprocess_batch",
    "monitor",
    "monitor_window",
    "monitor_alpha",
    "monitor_rate",
    "monitor_process",
    "quarantine",
    "quarantine_windows",
)

Port = Annotated[StrictInt, Field(ge=1, le=65535)]
#: URI schemes of the review store (`polyfuse.serve.review.store.open_store`).
REVIEW_SCHEMES = ("sqlite://", "redis://", "rediss://", "unix://")


def env_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`ServeConfig` fields set by environment variables (``POLYFUSE_PORT=9000``,
    ``POLYFUSE_GC_FREEZE=false``, ``POLYFUSE_CORS_ORIGINS=[https://a.example]``); each
    value is read as a YAML scalar, then checked like the same key in ``--config``."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for f in dataclasses.fields(ServeConfig):
        if f.name in KEY_FIELDS:
            continue
        name = ENV_NAMES.get(f.name, ENV_PREFIX + f.name.upper())
        if name in env:
            try:
                out[f.name] = yaml.safe_load(env[name])
            except yaml.YAMLError:
                raise ConfigError(name, "not a YAML value", hint="e.g. 8000, true, text") from None
    return out


def hash_key(key: str) -> str:
    """The stored form of an API key: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


#: A key's own rate limit: (requests a second, burst); None takes ``rate_limit`` /
#: ``rate_burst`` of the config. A rate of 0 means no limit for that key.
KeyLimit = tuple[float | None, int | None]

#: The valid form of a keys-file line (said in every error about one).
KEYS_FILE_FORM = (
    "each line is KEY or sha256:HEX, optionally followed by rate=FLOAT (>= 0; 0: no limit) "
    "and/or burst=INT (>= 1), separated by spaces, e.g. 'sha256:ab12... rate=50 burst=100'"
)


def _check_digest(digest: str) -> bool:
    return len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)


def _parse_rate(text: str) -> float | None:
    """``text`` as a finite rate >= 0, else None."""
    try:
        rate = float(text)
    except ValueError:
        return None
    return rate if math.isfinite(rate) and rate >= 0 else None


def _parse_burst(text: str) -> int | None:
    """``text`` as an integer burst >= 1, else None."""
    try:
        burst = int(text)
    except ValueError:
        return None
    return burst if burst >= 1 else None


def _parse_options(tokens: list[str]) -> tuple[KeyLimit | None, str | None]:
    """``rate=FLOAT`` / ``burst=INT`` tokens as a limit (None: no tokens), or an error.

    An error quotes only ``rate=`` / ``burst=`` values: any other word may be part of a
    key written with a space in it.
    """
    values: dict[str, str] = {}
    for position, token in enumerate(tokens, 2):
        name, sep, value = token.partition("=")
        if not sep:
            return None, f"unexpected word {position} after the key (keys cannot hold spaces)"
        if name not in ("rate", "burst"):
            return None, f"word {position} is not rate=... or burst=..."
        if name in values:
            return None, f"{name}= given twice"
        values[name] = value
    if not values:
        return None, None
    rate = burst = None
    if "rate" in values and (rate := _parse_rate(values["rate"])) is None:
        return None, f"rate={values['rate'][:20]} is not a number >= 0"
    if "burst" in values and (burst := _parse_burst(values["burst"])) is None:
        return None, f"burst={values['burst'][:20]} is not an integer >= 1"
    return (rate, burst), None


def read_keys_file(path: str | Path) -> tuple[tuple[str, ...], dict[str, KeyLimit]]:
    """Key hashes and per-key limits from a keys file.

    Each line is a key, or ``sha256:HEX`` for a key that is stored hashed already,
    optionally followed by ``rate=FLOAT`` and/or ``burst=INT`` (that key's own rate
    limit; see `KeyLimit`). Blank lines and ``#`` comments are skipped. Returns the
    hashes in file order and ``{hash: (rate, burst)}`` for the keys that set a limit.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError("--api-keys", f"cannot read {path}: {exc}") from None
    hashes: list[str] = []
    limits: dict[str, KeyLimit] = {}
    for number, raw in enumerate(lines, 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        first = words[0]
        if first.startswith("sha256:"):
            digest = first.removeprefix("sha256:").lower()
            if not _check_digest(digest):
                raise ConfigError(
                    "--api-keys",
                    f"{path}, line {number}: not a SHA-256 hex digest",
                    hint=KEYS_FILE_FORM,
                )
        else:
            digest = hash_key(first)
        limit, error = _parse_options(words[1:])
        if error is not None:
            raise ConfigError("--api-keys", f"{path}, line {number}: {error}", hint=KEYS_FILE_FORM)
        hashes.append(digest)
        if limit is not None:
            limits[digest] = limit
    return tuple(hashes), limits


def read_key_hashes(path: str | Path) -> tuple[str, ...]:
    """Key hashes from a keys file (see `read_keys_file`; per-key limits are dropped)."""
    return read_keys_file(path)[0]


def env_key_hashes(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Key hashes from `API_KEYS_ENV` (comma-separated keys)."""
    value = (os.environ if environ is None else environ).get(API_KEYS_ENV, "")
    return tuple(hash_key(k.strip()) for k in value.split(",") if k.strip())


@functools.lru_cache(maxsize=1024)  # asked per request (no keys): clients are few
def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ShadowSettings(BaseModel):
    """The shadow version's budget (``shadow_budget`` of `ServeConfig`; used by
    `polyfuse.serve.versions.shadow`).

    Attributes:
        sample: share of the champion's requests copied to the shadow.
        queue: jobs waiting at most; more are dropped (and counted).
        concurrency: shadow requests in flight at most.
        busy_share: share of the time each shadow worker may spend running requests:
            after a request that took ``d`` seconds it rests ``d * (1 / busy_share - 1)``
            (jobs arriving meanwhile wait in the queue or are dropped), so the shadow
            keeps at most ``concurrency * busy_share`` cores busy, however heavy it is.
        timeout_s: longest a shadow request may take before it counts as failed.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    sample: float = Field(default=1.0, ge=0.0, le=1.0)
    queue: int = Field(default=64, ge=1)
    concurrency: int = Field(default=1, ge=1)
    busy_share: float = Field(default=0.05, gt=0.0, le=1.0)
    timeout_s: float = Field(default=10.0, gt=0.0)


@config_errors("serve")
@dataclass(config=MODEL_CONFIG)
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
        key_limits: a key's own ``(rate, burst)`` by key hash (see `KeyLimit`); keys not
            in it, and None values, take ``rate_limit`` / ``rate_burst``.
        max_request_bytes: largest request body.
        max_item_bytes: largest single input (after base64 decoding).
        max_items: most inputs in one request.
        cors_origins: origins allowed by CORS (empty: no CORS headers).
        policy: firewall policy YAML (None: no firewall).
        guard_threads: threads that run the firewall.
        request_log: JSONL file of per-request records (hashes, no raw content).
        audit: JSONL audit log of the firewall's decisions (as `polyfuse scan --audit`).
        otel: OpenTelemetry exporter: ``none``, ``console`` or ``otlp``.
        default_timeout: seconds a request may take when it sets no ``X-Request-Timeout``.
        gc_freeze: move everything alive once the app has started (the model, torch,
            the routes; again after the firewall's warm-up) out of the garbage
            collector's view with `gc.freeze` while the app runs. Full collections
            otherwise walk that whole heap and stopped every thread for 80-180 ms under
            load (the p99 of the AV-digits service at concurrency 16 went from 122-246
            to 70-87 ms; docs/serving.md). `gc.unfreeze` at shutdown.
        malloc_arenas: cap on glibc's malloc arenas in the serving process, set when the
            app starts (``mallopt(M_ARENA_MAX)``; ignored where the C library has no
            such option). glibc's default, 8 per core, let each of the server's threads
            keep its own fragmented heap: resident memory rose by 45 MB in the first 15
            minutes of a soak, against 10 MB with 2 arenas (one run each,
            docs/serving.md). The cap stays for the life of the process. None: the C
            library's default.
        review: human review store (``sqlite://PATH`` or ``redis://HOST:PORT/DB``;
            None: no review). Answers the routing rules pick (`polyfuse.serve.review`)
            wait there for ``GET /v1/review`` and ``POST /v1/feedback``; docs/review.md.
        sync: estimate the sound/picture offset of every video a predict request carries
            (``sync`` in the answer, metrics ``polyfuse_av_offset_ms`` and
            ``polyfuse_av_desync_total``); requests without a video cost nothing.
        sync_model: a learned sync model folder (`polyfuse.train.sync`) to estimate with,
            instead of the signal baseline.
        review_inputs: keep the inputs of queued answers, as the firewall left them, so a
            reviewer can see them and ``polyfuse feedback export`` can write training
            rows (default: only their SHA-256 digests).
        review_share: target share of answers routed for ``predicted_error`` (the most
            likely wrong of the last ``review_window`` answers, by the error model
            fitted on the reference profile; docs/review.md).
        review_window: recent answers the ``predicted_error`` threshold is taken over.
        review_threshold: route answers whose (calibrated) confidence is below this
            (reason ``low_confidence``, not in use by default).
        review_contradiction: route answers that the model, with one modality left out,
            would answer otherwise with at least this confidence (reason
            ``contradiction``, not in use by default).
        review_reasons: the routing reasons in use.
        admin_key_hashes: SHA-256 hex digests of the keys that may change versions
            (``POST /v1/versions/...``); each must also be an accepted API key. ``admin_keys``
            in a file (raw keys or ``sha256:HEX``), ``--admin-keys FILE`` on the command line.
        canary_weight: share of callers the canary (``--canary``) answers, in [0, 1].
        canary_judge: how the canary is compared with the champion and when it is rolled
            back (`polyfuse.release.canary.CanarySettings`).
        shadow_budget: how much of the traffic the shadow (``--shadow``) answers, and its
            queue and concurrency (`ShadowSettings`).
        cache, redis_url, cache_bytes, encoder_timeout_s, breaker_failures,
        breaker_reset_s, breaker_half_open, degraded, max_batch, max_wait_ms, queue_size,
        workers, preprocess, preprocess_batch, monitor, monitor_window, monitor_alpha,
        monitor_rate, monitor_process, quarantine, quarantine_windows: options of the model runtime
            (`polyfuse.serve.runtime.settings.RuntimeConfig`, which documents each); None
            leaves the runtime's default. `runtime_options` hands the set ones over.
    """

    host: StrictStr = "127.0.0.1"
    port: Port = 8000
    model_name: StrictStr | None = None
    api_key_hashes: tuple[str, ...] = ()
    insecure: StrictBool = False
    rate_limit: NonNegativeFloat = 0.0
    rate_burst: PositiveInt = 20
    key_limits: dict[str, KeyLimit] = dataclasses.field(default_factory=dict)
    max_request_bytes: PositiveInt = 64 * 1024 * 1024
    max_item_bytes: PositiveInt = 32 * 1024 * 1024
    max_items: PositiveInt = 16
    cors_origins: tuple[StrictStr, ...] = ()
    policy: StrictStr | None = None
    guard_threads: PositiveInt = 2
    request_log: StrictStr | None = None
    audit: StrictStr | None = None
    otel: Literal["none", "console", "otlp"] = "none"
    default_timeout: PositiveFloat | None = None
    gc_freeze: StrictBool = True
    malloc_arenas: PositiveInt | None = 2
    review: StrictStr | None = None
    review_inputs: StrictBool = False
    sync: StrictBool = True
    sync_model: StrictStr | None = None
    review_share: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    review_window: Annotated[int, Field(ge=10)] = 200
    review_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    review_contradiction: PositiveFloat = 0.9
    review_reasons: tuple[
        Literal[
            "predicted_error", "low_confidence", "contradiction", "firewall", "shadow_disagreement"
        ],
        ...,
    ] = ("predicted_error", "firewall", "shadow_disagreement")
    admin_key_hashes: tuple[str, ...] = ()
    canary_weight: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05
    canary_judge: CanarySettings = dataclasses.field(default_factory=CanarySettings)
    shadow_budget: ShadowSettings = dataclasses.field(default_factory=ShadowSettings)
    cache: Literal["memory", "redis", "none"] | None = None
    redis_url: StrictStr | None = None
    cache_bytes: PositiveInt | None = None
    encoder_timeout_s: PositiveFloat | None = None
    breaker_failures: PositiveInt | None = None
    breaker_reset_s: PositiveFloat | None = None
    breaker_half_open: PositiveInt | None = None
    degraded: Literal["allow", "refuse"] | None = None
    max_batch: PositiveInt | Literal["auto"] | None = None
    max_wait_ms: NonNegativeFloat | None = None
    queue_size: PositiveInt | None = None
    workers: PositiveInt | None = None
    preprocess: Literal["auto", "process", "thread"] | None = None
    preprocess_batch: PositiveInt | None = None
    monitor: StrictBool | None = None
    monitor_window: Annotated[StrictInt, Field(ge=10)] | None = None
    monitor_alpha: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    monitor_rate: NonNegativeFloat | None = None
    monitor_process: StrictBool | None = None
    quarantine: StrictBool | None = None
    quarantine_windows: PositiveInt | None = None

    @property
    def auth_enabled(self) -> bool:
        """True when API keys are configured."""
        return bool(self.api_key_hashes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServeConfig:
        """A config from a mapping of field names; unknown keys are refused.

        ``api_keys`` entries are a raw key, ``sha256:HEX``, or a mapping
        ``{key: KEY, rate: R, burst: B}`` / ``{sha256: HEX, rate: R, burst: B}`` that
        gives the key its own rate limit (``rate`` and ``burst`` optional).
        """
        names = {f.name for f in dataclasses.fields(cls)} - set(KEY_FIELDS)
        for key in data:
            if key not in names | {"api_keys", "admin_keys"}:
                raise unknown_key(f"serve.{key}", str(key), names | {"api_keys", "admin_keys"})
        values = {k: v for k, v in data.items() if k in names}
        if "canary_judge" in values:
            values["canary_judge"] = CanarySettings.parse(
                values["canary_judge"], "serve.canary_judge"
            )
        admins = data.get("admin_keys") or ()
        if not isinstance(admins, list | tuple):
            raise ConfigError("admin_keys", "must be a list", hint="raw keys or sha256:HEX")
        admin = tuple(_api_key_entry(e, f"admin_keys[{i}]")[0] for i, e in enumerate(admins))
        entries = data.get("api_keys") or ()
        if not isinstance(entries, list | tuple):
            raise ConfigError("api_keys", "must be a list", hint=API_KEY_ENTRY_FORM)
        hashes: list[str] = []
        limits: dict[str, KeyLimit] = {}
        for index, entry in enumerate(entries):
            digest, limit = _api_key_entry(entry, f"api_keys[{index}]")
            hashes.append(digest)
            if limit is not None:
                limits[digest] = limit
        keys = {"api_key_hashes": tuple(hashes), "key_limits": limits, "admin_key_hashes": admin}
        return validate(cls, {**values, **keys}, "serve")

    def replace(self, **changes: Any) -> ServeConfig:
        """A copy with ``changes`` applied and validated (`ConfigError` naming the key)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return validate(ServeConfig, {**data, **changes}, "serve")

    def with_env(self, environ: Mapping[str, str] | None = None) -> ServeConfig:
        """A copy with the settings given as ``POLYFUSE_<FIELD>`` environment variables
        (see `env_settings`)."""
        return self.replace(**env_settings(environ))

    def runtime_options(self) -> dict[str, Any]:
        """The runtime options set in this config, as `ModelRuntime.load` keywords."""
        return {k: v for k in RUNTIME_OPTIONS if (v := getattr(self, k)) is not None}

    @classmethod
    def from_file(cls, path: str | Path) -> ServeConfig:
        """A config from a YAML mapping (see `from_dict`)."""
        return cls.from_dict(read_yaml_mapping(path, "--config"))

    def _check_review(self) -> None:
        if self.review_inputs and self.review is None:
            raise ConfigError(
                "--review-inputs",
                "keeps the inputs of answers queued for review, but review is off",
                hint="add --review sqlite:///path/review.db (or redis://HOST:6379/0)",
            )
        if self.review is not None and not self.review.startswith(REVIEW_SCHEMES):
            raise ConfigError(
                "--review",
                f"unknown review store '{self.review[:40]}'",
                hint="sqlite:///path/review.db (one server) or redis://HOST:6379/0 (replicas)",
            )

    def _check_admins(self, known: set[str]) -> None:
        if any(h.lower() not in known for h in self.admin_key_hashes):
            raise ConfigError(
                "--admin-keys",
                "an admin key must also be an accepted API key",
                hint="add it to --api-keys (or api_keys) as well",
            )

    def check(self) -> None:
        """Refuse unsafe or inconsistent settings (raises `ConfigError` with a hint)."""
        if not self.auth_enabled and not self.insecure and not is_loopback(self.host):
            raise ConfigError(
                "--host",
                f"refusing to serve on {self.host} without API keys",
                hint="pass --api-keys FILE or set POLYFUSE_API_KEYS, bind 127.0.0.1, "
                "or pass --insecure to serve without authentication",
            )
        if self.audit is not None and self.policy is None:
            raise ConfigError("--audit", "an audit log needs a firewall", hint="add --policy FILE")
        self._check_review()
        if self.otel not in OTEL_EXPORTERS:
            raise ConfigError("--otel", f"must be one of {', '.join(OTEL_EXPORTERS)}")
        if not 0 < self.port < 65536:
            raise ConfigError("--port", f"must be in 1..65535, got {self.port}")
        if self.malloc_arenas is not None and self.malloc_arenas < 1:
            raise ConfigError("malloc_arenas", "must be at least 1, or None for the default")
        for name in ("max_request_bytes", "max_item_bytes", "max_items", "guard_threads"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be at least 1")
        if self.rate_limit < 0 or self.rate_burst < 1:
            raise ConfigError("rate_limit", "rate must be >= 0 and burst >= 1")
        known = {h.lower() for h in self.api_key_hashes}
        self._check_admins(known)
        for digest, (rate, burst) in self.key_limits.items():
            where = f"key_limits[{digest[:12]}]"  # the key id, as in logs; never the key
            if digest.lower() not in known:
                raise ConfigError(where, "a limit for a key that is not in api_key_hashes")
            if rate is not None and not (math.isfinite(rate) and rate >= 0):
                raise ConfigError(where, f"rate must be a finite number >= 0, got {rate}")
            if burst is not None and burst < 1:
                raise ConfigError(where, f"burst must be >= 1, got {burst}")


#: The valid forms of a YAML ``api_keys`` entry (said in every error about one).
API_KEY_ENTRY_FORM = (
    "an api_keys entry is KEY, 'sha256:HEX', or a mapping {key: KEY, rate: R, burst: B} "
    "or {sha256: HEX, rate: R, burst: B} (rate >= 0, 0: no limit; burst >= 1; both optional)"
)


def _api_key_entry(entry: object, where: str) -> tuple[str, KeyLimit | None]:
    """The hash and own limit (None: none) of one YAML ``api_keys`` entry."""
    if not isinstance(entry, Mapping):
        text = str(entry)
        if not text.startswith("sha256:"):
            return hash_key(text), None
        digest = text.removeprefix("sha256:").lower()
        if not _check_digest(digest):
            raise ConfigError(where, "not a SHA-256 hex digest", hint=API_KEY_ENTRY_FORM)
        return digest, None
    unknown = set(entry) - {"key", "sha256", "rate", "burst"}
    if unknown:
        raise ConfigError(  # not named: a misplaced key would end up in the message
            where, f"{len(unknown)} unknown field(s)", hint=API_KEY_ENTRY_FORM
        )
    if ("key" in entry) == ("sha256" in entry):
        raise ConfigError(where, "needs exactly one of key or sha256", hint=API_KEY_ENTRY_FORM)
    if "key" in entry:
        digest = hash_key(str(entry["key"]))
    else:
        digest = str(entry["sha256"]).removeprefix("sha256:").lower()
        if not _check_digest(digest):
            raise ConfigError(where, "sha256 is not a SHA-256 hex digest", hint=API_KEY_ENTRY_FORM)
    rate, burst = entry.get("rate"), entry.get("burst")
    if rate is not None and (
        isinstance(rate, bool)
        or not isinstance(rate, int | float)
        or not math.isfinite(rate)
        or rate < 0
    ):
        raise ConfigError(
            where, f"rate must be a number >= 0, got {rate!r:.40}", hint=API_KEY_ENTRY_FORM
        )
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
        raise ConfigError(
            where, f"burst must be an integer >= 1, got {burst!r:.40}", hint=API_KEY_ENTRY_FORM
        )
    if rate is None and burst is None:
        return digest, None
    return digest, (None if rate is None else float(rate), burst)


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
