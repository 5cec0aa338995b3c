"""The review queue's storage: `ReviewItem` records in SQLite (one server) or Redis
(several replicas sharing one queue).

An item holds only what the policy allows: the inputs' SHA-256 digests, sizes and formats,
the answer (label, probabilities, confidence), the reasons, the firewall's action and the
types of its findings (never their text), the time and the model version. The inputs
themselves, as the firewall left them (redacted), are kept only when the service was told
to (``--review-inputs``), and never for blocked requests; they sit apart from the items
(`ReviewStore.payload`), so listing the queue never reads them.

`open_store` picks the backend from a URI: ``sqlite://PATH`` (``sqlite:///abs/path.db``,
``sqlite://relative.db``) or ``redis://HOST:PORT/DB`` (also ``rediss://``, ``unix://``).
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from polyfuse.core.errors import ConfigError, DependencyError
from polyfuse.serve.review.routing import REASONS

Status = Literal["pending", "reviewed"]
STATUSES: tuple[Status, ...] = ("pending", "reviewed")
#: Where ``polyfuse serve --review`` and ``polyfuse feedback export`` look by default.
DEFAULT_STORE = "sqlite://polyfuse-review.db"
#: Most items one listing returns.
MAX_PAGE = 500


@dataclass(frozen=True)
class StoredInput:
    """What the queue knows of one input.

    Attributes:
        sha256: hex digest of the input as the firewall left it.
        size: its bytes.
        format: what it is (``png``, ``wav``, ``text``, ...; None: unknown).
        stored: the content itself is in the store (`ReviewStore.payload`).
    """

    sha256: str
    size: int
    format: str | None = None
    stored: bool = False


@dataclass(frozen=True)
class ReviewItem:
    """One answer waiting for (or given) a human label.

    Attributes:
        request_id: the served request's id (``POST /v1/feedback`` names it).
        created: when it was queued (Unix seconds).
        reasons: why it was routed (`polyfuse.serve.review.routing.REASONS` order).
        model: ``{"name", "version"}`` of the model that answered.
        prediction: the answered label (a list for a multi-label model; None: no answer,
            the firewall blocked the request).
        probabilities: label -> probability of the answer.
        confidence: the answer's confidence as the router read it.
        inputs: modality -> `StoredInput`.
        firewall: the firewall's action (``allow`` without a firewall).
        findings: types of the firewall's findings (never their text).
        contradicting: modalities whose leave-one-out output confidently answered otherwise.
        shadow: what a shadow version answered (``{"version", "prediction",
            "probabilities"}``), when it disagreed.
        status: ``pending`` or ``reviewed``.
        label: the reviewer's label (a list for a multi-label model).
        reviewer: who gave it.
        reviewed: when (Unix seconds).
    """

    request_id: str
    created: float
    reasons: tuple[str, ...]
    model: dict[str, str] = field(default_factory=dict)
    prediction: Any = None
    probabilities: dict[str, float] = field(default_factory=dict)
    confidence: float | None = None
    inputs: dict[str, StoredInput] = field(default_factory=dict)
    firewall: str = "allow"
    findings: tuple[str, ...] = ()
    contradicting: tuple[str, ...] = ()
    shadow: dict[str, Any] | None = None
    status: Status = "pending"
    label: Any = None
    reviewer: str | None = None
    reviewed: float | None = None

    def merged(self, other: ReviewItem) -> ReviewItem:
        """This item with ``other``'s reasons, contradictions, shadow answer and stored
        inputs added (the same request routed again, e.g. by the shadow path)."""
        reasons = {*self.reasons, *other.reasons}
        inputs = dict(self.inputs)
        for m, given in other.inputs.items():
            if m not in inputs or (given.stored and not inputs[m].stored):
                inputs[m] = given
        return replace(
            self,
            reasons=tuple(r for r in REASONS if r in reasons),
            contradicting=tuple(sorted({*self.contradicting, *other.contradicting})),
            shadow=other.shadow or self.shadow,
            inputs=inputs,
        )

    def resolved(self, label: Any, reviewer: str | None, when: float) -> ReviewItem:
        """This item with a reviewer's label."""
        return replace(self, status="reviewed", label=label, reviewer=reviewer, reviewed=when)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (what the store keeps and ``GET /v1/review`` lists)."""
        out = asdict(self)
        out["reasons"] = list(self.reasons)
        out["findings"] = list(self.findings)
        out["contradicting"] = list(self.contradicting)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReviewItem:
        """Read the JSON form back."""
        values = dict(data)
        values["inputs"] = {m: StoredInput(**v) for m, v in values.get("inputs", {}).items()}
        for key in ("reasons", "findings", "contradicting"):
            values[key] = tuple(values.get(key, ()))
        return cls(**values)


class ReviewStore(ABC):
    """Where review items wait. Every method is safe to call from several threads."""

    uri: str

    @abstractmethod
    def add(self, item: ReviewItem, payloads: Mapping[str, bytes] | None = None) -> ReviewItem:
        """Queue ``item`` (merged into an item of the same request already there) with the
        contents of its stored inputs; returns the item as stored."""

    @abstractmethod
    def get(self, request_id: str) -> ReviewItem | None:
        """The item of a request, or None."""

    @abstractmethod
    def payload(self, request_id: str, modality: str) -> bytes | None:
        """The stored content of one input, or None."""

    @abstractmethod
    def items(
        self,
        status: Status = "pending",
        reason: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> list[ReviewItem]:
        """Items of ``status`` (with ``reason`` when given), oldest first."""

    @abstractmethod
    def count(self, status: Status = "pending", reason: str | None = None) -> int:
        """How many items have ``status`` (and ``reason``)."""

    @abstractmethod
    def resolve(
        self, request_id: str, label: Any, reviewer: str | None, when: float | None = None
    ) -> ReviewItem | None:
        """Record a reviewer's label (a later label replaces an earlier one); None when
        the request was never queued."""

    def close(self) -> None:  # noqa: B027 (a store may hold nothing to release)
        """Release connections."""

    def all_items(self, status: Status, page: int = MAX_PAGE) -> Iterator[ReviewItem]:
        """Every item of ``status``, oldest first, read a page at a time."""
        offset = 0
        while batch := self.items(status, offset=offset, limit=page):
            yield from batch
            offset += len(batch)


def check_listing(status: str, reason: str | None, offset: int, limit: int) -> None:
    """`ConfigError` naming the bad argument of a listing."""
    if status not in STATUSES:
        raise ConfigError("status", f"unknown status '{status}'", hint="pending or reviewed")
    if reason is not None and reason not in REASONS:
        hint = f"one of {', '.join(REASONS)}"
        raise ConfigError("reason", f"unknown reason '{reason}'", hint=hint)
    if offset < 0 or not 1 <= limit <= MAX_PAGE:
        raise ConfigError("limit", f"offset must be >= 0 and limit in 1..{MAX_PAGE}")


# ---------------------------------------------------------------- SQLite
_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    request_id TEXT PRIMARY KEY, created REAL NOT NULL, status TEXT NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_by_status ON items (status, created, request_id);
CREATE TABLE IF NOT EXISTS reasons (
    request_id TEXT NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (request_id, reason)
);
CREATE TABLE IF NOT EXISTS inputs (
    request_id TEXT NOT NULL, modality TEXT NOT NULL, content BLOB NOT NULL,
    PRIMARY KEY (request_id, modality)
);
"""


class SQLiteStore(ReviewStore):
    """Review items in one SQLite file (WAL mode: ``polyfuse feedback export`` reads it while
    the server writes).

    Args:
        path: the database file (created with its folder).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.uri = f"sqlite://{self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=30, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                "review", f"cannot open the review store {self.path}: {exc}"
            ) from None
        self._lock = threading.Lock()

    def add(self, item: ReviewItem, payloads: Mapping[str, bytes] | None = None) -> ReviewItem:
        """See `ReviewStore.add`."""
        with self._lock, self._transaction() as db:
            row = db.execute(
                "SELECT body FROM items WHERE request_id = ?", (item.request_id,)
            ).fetchone()
            stored = item if row is None else ReviewItem.from_dict(json.loads(row[0])).merged(item)
            self._write(db, stored)
            db.executemany(
                "INSERT OR REPLACE INTO inputs VALUES (?, ?, ?)",
                [(item.request_id, m, data) for m, data in (payloads or {}).items()],
            )
        return stored

    def _write(self, db: sqlite3.Connection, item: ReviewItem) -> None:
        db.execute(
            "INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?)",
            (item.request_id, item.created, item.status, json.dumps(item.to_dict())),
        )
        db.executemany(
            "INSERT OR IGNORE INTO reasons VALUES (?, ?)",
            [(item.request_id, r) for r in item.reasons],
        )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def get(self, request_id: str) -> ReviewItem | None:
        """See `ReviewStore.get`."""
        with self._lock:
            row = self._db.execute(
                "SELECT body FROM items WHERE request_id = ?", (request_id,)
            ).fetchone()
        return None if row is None else ReviewItem.from_dict(json.loads(row[0]))

    def payload(self, request_id: str, modality: str) -> bytes | None:
        """See `ReviewStore.payload`."""
        with self._lock:
            row = self._db.execute(
                "SELECT content FROM inputs WHERE request_id = ? AND modality = ?",
                (request_id, modality),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def items(
        self,
        status: Status = "pending",
        reason: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> list[ReviewItem]:
        """See `ReviewStore.items`."""
        check_listing(status, reason, offset, limit)
        where, args = self._where(status, reason)
        with self._lock:
            rows = self._db.execute(
                f"SELECT body FROM items WHERE {where} "
                "ORDER BY created, request_id LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
        return [ReviewItem.from_dict(json.loads(r[0])) for r in rows]

    @staticmethod
    def _where(status: str, reason: str | None) -> tuple[str, tuple[str, ...]]:
        if reason is None:
            return "status = ?", (status,)
        return (
            "status = ? AND request_id IN (SELECT request_id FROM reasons WHERE reason = ?)",
            (status, reason),
        )

    def count(self, status: Status = "pending", reason: str | None = None) -> int:
        """See `ReviewStore.count`."""
        check_listing(status, reason, 0, 1)
        where, args = self._where(status, reason)
        with self._lock:
            row = self._db.execute(f"SELECT COUNT(*) FROM items WHERE {where}", args).fetchone()
        return int(row[0])

    def resolve(
        self, request_id: str, label: Any, reviewer: str | None, when: float | None = None
    ) -> ReviewItem | None:
        """See `ReviewStore.resolve`."""
        with self._lock, self._transaction() as db:
            row = db.execute(
                "SELECT body FROM items WHERE request_id = ?", (request_id,)
            ).fetchone()
            if row is None:
                return None
            item = ReviewItem.from_dict(json.loads(row[0]))
            item = item.resolved(label, reviewer, time.time() if when is None else when)
            self._write(db, item)
        return item

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on an exception) on a connection in
    autocommit mode: one writer at a time, across processes too."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: object, *rest: object) -> None:
        self.db.execute("ROLLBACK" if kind is not None else "COMMIT")


# ---------------------------------------------------------------- Redis
class RedisStore(ReviewStore):
    """Review items in Redis, one queue shared by every replica.

    Keys (``prefix`` first): ``item:ID`` (the JSON item), ``input:ID:MODALITY`` (stored
    content), and sorted sets by time ``status:STATUS`` and ``status:STATUS:REASON``.
    Updates run under ``WATCH`` on the item, so two replicas routing the same request (or
    a label arriving meanwhile) cannot lose each other's change.

    Args:
        url: ``redis://host:port/db`` (also ``rediss://``, ``unix://``).
        prefix: key prefix.
        client: an existing ``redis.Redis`` client instead of ``url``.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "polyfuse:review",
        client: Any = None,
    ) -> None:
        if client is None:
            try:
                import redis
            except ImportError as exc:
                raise DependencyError("redis", "the Redis review store", "redis") from exc
            client = redis.Redis.from_url(url)
        self.client = client
        self.prefix = prefix
        self.uri = re.sub(r"//[^@/]*@", "//***@", url)  # never a password in logs

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _update(
        self,
        request_id: str,
        change: Callable[[ReviewItem | None], ReviewItem | None],
        payloads: Mapping[str, bytes],
    ) -> ReviewItem | None:
        """Apply ``change(old item or None) -> new item or None`` under ``WATCH``."""
        from redis.exceptions import WatchError

        key = self._key("item", request_id)
        while True:
            with self.client.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    old = None if raw is None else ReviewItem.from_dict(json.loads(raw))
                    new = change(old)
                    if new is None:
                        pipe.unwatch()
                        return None
                    pipe.multi()
                    self._write(pipe, old, new)
                    for m, data in payloads.items():
                        pipe.set(self._key("input", request_id, m), data)
                    pipe.execute()
                    return new
                except WatchError:
                    continue

    def _write(self, pipe: Any, old: ReviewItem | None, new: ReviewItem) -> None:
        rid = new.request_id
        if old is not None and old.status != new.status:
            pipe.zrem(self._key("status", old.status), rid)
            for r in old.reasons:
                pipe.zrem(self._key("status", old.status, r), rid)
        pipe.set(self._key("item", rid), json.dumps(new.to_dict()))
        pipe.zadd(self._key("status", new.status), {rid: new.created})
        for r in new.reasons:
            pipe.zadd(self._key("status", new.status, r), {rid: new.created})

    def add(self, item: ReviewItem, payloads: Mapping[str, bytes] | None = None) -> ReviewItem:
        """See `ReviewStore.add`."""
        stored = self._update(
            item.request_id, lambda old: item if old is None else old.merged(item), payloads or {}
        )
        return stored or item

    def get(self, request_id: str) -> ReviewItem | None:
        """See `ReviewStore.get`."""
        raw = self.client.get(self._key("item", request_id))
        return None if raw is None else ReviewItem.from_dict(json.loads(raw))

    def payload(self, request_id: str, modality: str) -> bytes | None:
        """See `ReviewStore.payload`."""
        raw = self.client.get(self._key("input", request_id, modality))
        return None if raw is None else bytes(raw)

    def _index(self, status: str, reason: str | None) -> str:
        return self._key("status", status, *(() if reason is None else (reason,)))

    def items(
        self,
        status: Status = "pending",
        reason: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> list[ReviewItem]:
        """See `ReviewStore.items`."""
        check_listing(status, reason, offset, limit)
        ids = self.client.zrange(self._index(status, reason), offset, offset + limit - 1)
        if not ids:
            return []
        bodies = self.client.mget([self._key("item", i.decode()) for i in ids])
        return [ReviewItem.from_dict(json.loads(b)) for b in bodies if b is not None]

    def count(self, status: Status = "pending", reason: str | None = None) -> int:
        """See `ReviewStore.count`."""
        check_listing(status, reason, 0, 1)
        return int(self.client.zcard(self._index(status, reason)))

    def resolve(
        self, request_id: str, label: Any, reviewer: str | None, when: float | None = None
    ) -> ReviewItem | None:
        """See `ReviewStore.resolve`."""
        stamp = time.time() if when is None else when
        return self._update(
            request_id,
            lambda old: None if old is None else old.resolved(label, reviewer, stamp),
            {},
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


def open_store(uri: str) -> ReviewStore:
    """The store a URI names: ``sqlite://PATH`` or ``redis://...`` (see the module)."""
    if uri.startswith("sqlite://"):
        path = uri.removeprefix("sqlite://")
        if not path:
            raise ConfigError("review", "no database path", hint="e.g. sqlite:///var/lib/review.db")
        return SQLiteStore(path)
    if uri.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(uri)
    raise ConfigError(
        "review",
        f"unknown review store '{uri[:60]}'",
        hint="sqlite:///path/review.db (one server) or redis://host:6379/0 (several replicas)",
    )
