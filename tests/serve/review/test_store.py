"""The review stores (SQLite, and a real Redis server): queue, merge, list, resolve."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from polyfuse.core.errors import ConfigError
from polyfuse.serve.review.store import (
    RedisStore,
    ReviewItem,
    ReviewStore,
    SQLiteStore,
    StoredInput,
    open_store,
)


def item(rid: str, created: float, *reasons: str, **extra: object) -> ReviewItem:
    return ReviewItem(
        request_id=rid,
        created=created,
        reasons=reasons,
        model={"name": "m", "version": "abc"},
        prediction="cat",
        probabilities={"cat": 0.45, "dog": 0.55},
        confidence=0.45,
        inputs={"text": StoredInput("a" * 64, 5, "text", True)},
        **extra,  # type: ignore[arg-type]
    )


def test_items_round_trip_and_list_oldest_first(store: ReviewStore) -> None:
    store.add(item("r2", 2.0, "contradiction"))
    store.add(item("r1", 1.0, "low_confidence"), {"text": b"hello"})
    store.add(item("r3", 3.0, "low_confidence", "firewall"))
    assert [i.request_id for i in store.items()] == ["r1", "r2", "r3"]
    assert [i.request_id for i in store.items(reason="low_confidence")] == ["r1", "r3"]
    assert [i.request_id for i in store.items(offset=1, limit=1)] == ["r2"]
    assert store.count() == 3 and store.count(reason="firewall") == 1
    assert store.get("r1") == item("r1", 1.0, "low_confidence")
    assert store.payload("r1", "text") == b"hello" and store.payload("r2", "text") is None
    assert store.get("nope") is None


def test_the_same_request_merges_its_reasons(store: ReviewStore) -> None:
    store.add(item("r1", 1.0, "low_confidence"))
    shadow = {"version": "v2", "prediction": "dog", "probabilities": {"cat": 0.1, "dog": 0.9}}
    merged = store.add(item("r1", 5.0, "shadow_disagreement", shadow=shadow))
    assert merged.reasons == ("low_confidence", "shadow_disagreement")
    assert merged.created == 1.0 and merged.shadow == shadow
    assert store.count() == 1 and store.count(reason="shadow_disagreement") == 1


def test_resolving_moves_an_item_to_reviewed(store: ReviewStore) -> None:
    store.add(item("r1", 1.0, "low_confidence"))
    store.add(item("r2", 2.0, "firewall"))
    done = store.resolve("r1", "dog", "ana", when=10.0)
    assert done is not None and (done.status, done.label, done.reviewer) == (
        "reviewed",
        "dog",
        "ana",
    )
    assert [i.request_id for i in store.items()] == ["r2"]
    assert [i.request_id for i in store.items("reviewed", "low_confidence")] == ["r1"]
    assert store.count("reviewed") == 1 and store.count(reason="low_confidence") == 0
    again = store.resolve("r1", "cat", "bo")  # a later label replaces the first
    assert again is not None and again.label == "cat" and store.count("reviewed") == 1
    assert store.resolve("unknown", "cat", None) is None
    assert [i.request_id for i in store.all_items("reviewed", page=1)] == ["r1"]


def test_bad_listings_name_their_argument(store: ReviewStore) -> None:
    with pytest.raises(ConfigError, match="reason"):
        store.items(reason="bogus")
    with pytest.raises(ConfigError, match="status"):
        store.count("done")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="limit"):
        store.items(limit=0)


def test_concurrent_writers_lose_nothing(store: ReviewStore) -> None:
    """Threads routing the same requests for different reasons (as replicas would)."""
    reasons = ("low_confidence", "contradiction", "firewall", "shadow_disagreement")

    def work(reason: str) -> None:
        for k in range(20):
            store.add(item(f"r{k}", float(k), reason))

    threads = [threading.Thread(target=work, args=(r,)) for r in reasons]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count() == 20
    assert all(set(i.reasons) == set(reasons) for i in store.all_items("pending"))


def test_a_second_sqlite_connection_sees_the_queue(tmp_path: Path) -> None:
    """The export reads the file the server writes."""
    writer = SQLiteStore(tmp_path / "q.db")
    writer.add(item("r1", 1.0, "low_confidence"))
    reader = open_store(f"sqlite://{tmp_path / 'q.db'}")
    assert isinstance(reader, SQLiteStore) and reader.count() == 1
    writer.close()
    reader.close()


def test_open_store_picks_the_backend_and_refuses_others(tmp_path: Path) -> None:
    redis = open_store("redis://user:secret@localhost:6390/0")
    assert isinstance(redis, RedisStore) and "secret" not in redis.uri
    with pytest.raises(ConfigError, match="unknown review store"):
        open_store("mysql://db")
    with pytest.raises(ConfigError, match="cannot open"):
        open_store(f"sqlite://{tmp_path}")  # a folder, not a file
