"""``SQLBus``: invalidations between processes that share only a SQL tier.

Two real OS processes on one SQLite file (and one PostgreSQL schema), each with the
embedded default (memory above SQL): what one writes or invalidates, the other's
memory tier drops within a poll. Run as a script, this file is the other process.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


# -- the other process -------------------------------------------------------------------------
def worker(url: str, namespace: str) -> None:
    """Answer ``get <key>`` lines with the cached value (JSON) until stdin closes."""
    import stratacache as sc

    cache = sc.Cache(tiers=[sc.MemoryTier(), sc.SQLTier(url)], namespace=namespace)
    print(json.dumps(type(cache.bus).__name__), flush=True)
    for line in sys.stdin:
        _, key = line.split()
        print(json.dumps(cache.sync.get(key)), flush=True)


class Other:
    """The other process: ``get`` asks it for a key (from its memory tier when it has it)."""

    def __init__(self, url: str, namespace: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, url, namespace],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.bus = self._answer()

    def get(self, key: str) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"get {key}\n")
        self.proc.stdin.flush()
        return self._answer()

    def _answer(self) -> Any:
        assert self.proc.stdout is not None
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request: pytest.FixtureRequest) -> str:
    return str(
        request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    )


@pytest.fixture
def pair(shared_url: str) -> Iterator[tuple[Any, Other]]:
    """This process's cache and the other process, on one database and namespace."""
    import stratacache as sc

    namespace = f"bus{uuid.uuid4().hex[:8]}"
    cache = sc.Cache(tiers=[sc.MemoryTier(), sc.SQLTier(shared_url)], namespace=namespace)
    cache.sync.set("warm", 1)  # creates the tables before the other process starts
    other = Other(shared_url, namespace)
    try:
        yield cache, other
    finally:
        other.close()
        cache.sync.close()


def test_the_embedded_default_runs_a_sql_bus(pair: tuple[Any, Other]) -> None:
    """Memory above a SQLite file or PostgreSQL gets a ``SQLBus`` without being asked."""
    cache, other = pair
    assert type(cache.bus).__name__ == "SQLBus"
    assert other.bus == "SQLBus"


def test_a_write_in_one_process_reaches_the_others_memory_tier(
    pair: tuple[Any, Other], wait_until: Any
) -> None:
    """An overwrite and a delete in one process replace the other's memory copy within a poll."""
    cache, other = pair
    cache.sync.set("price", 100)
    assert other.get("price") == 100  # now in the other's memory tier (no TTL)
    cache.sync.set("price", 200)
    wait_until(lambda: other.get("price") == 200, what="the overwrite")
    cache.sync.delete("price")
    wait_until(lambda: other.get("price") is None, what="the delete")


def test_tags_prefixes_and_clear_reach_the_other_process(
    pair: tuple[Any, Other], wait_until: Any
) -> None:
    """Tag, prefix and clear invalidations empty the other process's memory copies (and only those)."""
    cache, other = pair
    cache.sync.set("tagged", 1, tags=["t"])
    cache.sync.set("p:one", 1)
    cache.sync.set("plain", 1)
    assert [other.get(k) for k in ("tagged", "p:one", "plain")] == [1, 1, 1]
    cache.sync.invalidate(tags=["t"])
    wait_until(lambda: other.get("tagged") is None, what="the tag invalidation")
    cache.sync.invalidate(prefix="p:")
    wait_until(lambda: other.get("p:one") is None, what="the prefix invalidation")
    assert other.get("plain") == 1
    cache.sync.clear()
    wait_until(lambda: other.get("plain") is None, what="the clear")


async def test_async_writes_reach_the_other_process(
    pair: tuple[Any, Other], wait_until: Any
) -> None:
    """Async writes (appended inline on SQLite) reach the other process too."""
    cache, other = pair
    await cache.set("k", "old")
    assert await asyncio.to_thread(other.get, "k") == "old"
    await cache.set("k", "new")
    await asyncio.to_thread(wait_until, lambda: other.get("k") == "new")
    await cache.close()


# -- the bus on its own --------------------------------------------------------------------------
class Inbox:
    """``on_message`` / ``on_state`` of a bus under test."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.states: list[bool] = []
        self.gate = threading.Event()
        self.gate.set()

    def on_message(self, message: Any) -> None:
        self.gate.wait(30)
        self.messages.append(message)

    def on_state(self, connected: bool) -> None:
        self.states.append(connected)


def _message(origin: str, key: str) -> Any:
    from stratacache.core.fleet import Invalidation

    return Invalidation(keys=(key,), origin=origin, reason="test")


async def _started(url: str, namespace: str, origin: str, **options: Any) -> tuple[Any, Inbox]:
    from stratacache.tiers.sql import SQLBus

    bus, inbox = SQLBus(url, **options), Inbox()
    await bus.start(namespace, origin, inbox.on_message, inbox.on_state)
    return bus, inbox


async def test_a_started_bus_does_not_replay_old_rows(shared_url: str, wait_until: Any) -> None:
    """A bus starting now reads from the log's end: rows appended before it are never applied."""
    a, _ = await _started(shared_url, "ns", "a")
    for i in range(5):
        await a.publish(_message("a", f"ns:old{i}"))
    b, inbox = await _started(shared_url, "ns", "b")  # a process (re)starting now
    await a.publish(_message("a", "ns:new"))
    await asyncio.to_thread(wait_until, lambda: inbox.messages, what="the new message")
    assert [m.keys for m in inbox.messages] == [("ns:new",)]
    assert inbox.states == [] and b.connected
    await a.close()
    await b.close()


async def test_own_messages_and_other_namespaces_are_not_delivered(
    shared_url: str, wait_until: Any
) -> None:
    """A bus applies neither its own echoes nor another namespace's rows."""
    a, _ = await _started(shared_url, "ns", "a")
    b, inbox = await _started(shared_url, "ns", "b")
    c, _ = await _started(shared_url, "other", "c")
    await b.publish(_message("b", "ns:own"))
    await c.publish(_message("c", "other:x"))
    await a.publish(_message("a", "ns:k"))
    await asyncio.to_thread(wait_until, lambda: inbox.messages, what="a's message")
    await asyncio.to_thread(wait_until, lambda: b.echoes == 1, what="the echo skipped")
    assert [m.keys for m in inbox.messages] == [("ns:k",)]
    for bus in (a, b, c):
        await bus.close()


def _rows(url: str, table: str) -> int:
    if url.startswith("sqlite"):
        with sqlite3.connect(url.split("///", 1)[1]) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    import psycopg

    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


async def test_old_rows_are_pruned(shared_url: str, wait_until: Any) -> None:
    """Rows older than ``retention`` are deleted and the namespace's pruned id recorded."""
    a, _ = await _started(shared_url, "ns", "a", poll_interval=0.01, retention=0.1)
    for i in range(20):
        await a.publish(_message("a", f"ns:{i}"))
    await asyncio.to_thread(
        wait_until, lambda: _rows(shared_url, "stratacache_bus") == 0, what="the prune"
    )
    assert _rows(shared_url, "stratacache_bus_meta") == 1  # the namespace's pruned watermark
    await a.close()


async def test_a_reader_whose_rows_were_pruned_drops_its_local_tiers(
    shared_url: str, wait_until: Any
) -> None:
    """A reader that stalled past a prune of rows it never read delivers a catch-up clear."""
    a, _ = await _started(shared_url, "ns", "a")
    b, inbox = await _started(shared_url, "ns", "b")
    inbox.gate.clear()  # b stalls while delivering the first message
    await a.publish(_message("a", "ns:first"))
    await asyncio.to_thread(wait_until, lambda: b.received == 1, what="b's read")
    await a.publish(_message("a", "ns:missed"))
    conn = a.log.connect()
    await asyncio.to_thread(a.log.prune, conn, a.log.head(conn))  # another process prunes
    inbox.gate.set()
    await asyncio.to_thread(wait_until, lambda: b.catchups == 1, what="the catch-up")
    assert inbox.messages[-1].clear and inbox.messages[-1].origin == ""
    assert all(m.keys != ("ns:missed",) for m in inbox.messages)
    await a.close()
    await b.close()


async def test_an_unreachable_database_never_raises_into_the_cache(sqlite_url: str) -> None:
    """A bus that cannot reach its database distrusts L1 and never raises into cache calls."""
    import stratacache as sc
    from stratacache.tiers.sql import SQLBus

    bus = SQLBus("postgresql://nobody@127.0.0.1:1/none")
    cache = sc.Cache(tiers=[sc.MemoryTier(), sc.SQLTier(sqlite_url)], namespace="down", bus=bus)
    await cache.set("k", 1)  # the failed publish is kept for replay, not raised
    assert not bus.connected and not cache.tiers.local_trusted  # L1 bounded by staleness
    assert await cache.get("k") == 1
    await cache.invalidate(keys=["k"])
    assert await cache.get("k") is None
    cache.sync.set("k", 2)
    assert cache.sync.get("k") == 2
    assert cache.invalidator.publish_failures >= 3
    await cache.close()


async def test_a_database_that_appears_later_is_reported_down_then_up(
    tmp_path: Path, wait_until: Any
) -> None:
    """A failed first read is reported down by ``start``; the first good poll reports it up."""
    missing = tmp_path / "later"
    a, inbox = await _started(f"sqlite:///{missing / 'c.db'}", "ns", "a", poll_interval=0.01)
    assert inbox.states == [False] and not a.connected
    missing.mkdir()
    await asyncio.to_thread(wait_until, lambda: inbox.states == [False, True], what="up")
    await a.close()


async def test_a_lost_log_reports_the_bus_down_then_back(sqlite_url: str, wait_until: Any) -> None:
    """A log table dropped under the bus: reported down, recreated, up, and heard again."""
    a, inbox = await _started(sqlite_url, "ns", "a", poll_interval=0.01, retention=1.0)
    with sqlite3.connect(sqlite_url.split("///", 1)[1]) as conn:
        conn.execute("DROP TABLE stratacache_bus")
    await asyncio.to_thread(wait_until, lambda: inbox.states[:2] == [False, True], what="down, up")
    b, _ = await _started(sqlite_url, "ns", "b")
    await b.publish(_message("b", "ns:after"))
    await asyncio.to_thread(
        wait_until, lambda: any(m.keys == ("ns:after",) for m in inbox.messages), what="after"
    )
    await a.close()
    await b.close()


async def test_a_killed_postgres_connection_reports_the_bus_down_then_back(
    postgres_url: str, wait_until: Any
) -> None:
    """A terminated PostgreSQL poll connection is reported down, then up once reconnected."""
    import psycopg

    a, inbox = await _started(postgres_url, "ns", "a", poll_interval=0.01, retention=1.0)
    pid = a._poll_conn.info.backend_pid
    with psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    await asyncio.to_thread(wait_until, lambda: inbox.states[:2] == [False, True], what="down, up")
    await a.close()


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2])
