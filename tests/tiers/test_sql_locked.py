"""A SQLite file whose write lock another connection holds: cache calls return after the
tier's short ``lock_timeout`` (then at once), as tier failures the engine replays, and the
other processes see every write and invalidation once the lock is gone."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from tests.tiers.test_sql_bus import Other
from tests.waiting import poll

import stratacache as sc
from stratacache.core.errors import ConfigError, FileLockedError
from stratacache.tiers.sql._lockwait import LockWait, StillLocked, WaitingConnection

#: the tier's wait in these tests: short, so a test never waits long for a lock it holds
WAIT = 0.05


def _path(url: str) -> str:
    return url.removeprefix("sqlite:///")


@pytest.fixture
def holder(sqlite_url: str) -> Iterator[sqlite3.Connection]:
    """Another connection on the file, not holding anything yet (``hold`` takes the lock)."""
    conn = sqlite3.connect(_path(sqlite_url), isolation_level=None)
    yield conn
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.close()


def _hold(holder: sqlite3.Connection) -> None:
    holder.execute("BEGIN IMMEDIATE")  # the write lock, as a long transaction holds it


def _release(holder: sqlite3.Connection) -> None:
    holder.execute("COMMIT")


def _cache(url: str, namespace: str) -> sc.Cache:
    tier = sc.SQLTier(url, lock_timeout=WAIT, sweep_interval=0)
    tier.lock.recheck = 3600  # one wait per test: the counts below do not depend on speed
    return sc.Cache(tiers=[sc.MemoryTier(), tier], namespace=namespace)


def _sql(cache: sc.Cache) -> Any:
    return cache.tiers.slots[-1].tier


@pytest.fixture
def two(sqlite_url: str) -> Iterator[tuple[sc.Cache, sc.Cache]]:
    """Two caches of one namespace on one SQLite file (two processes' worth: own memory,
    own bus origin), tables created."""
    namespace = f"locked{uuid.uuid4().hex[:8]}"
    a, b = _cache(sqlite_url, namespace), _cache(sqlite_url, namespace)
    a.sync.set("warm", 1)
    b.sync.get("warm")
    yield a, b
    a.sync.close()
    b.sync.close()


def test_lock_wait_stops_waiting_once_a_wait_ran_out(
    sqlite_url: str, holder: sqlite3.Connection
) -> None:
    """After one wait for the lock runs out, writes try it without waiting (and say so),
    one write per ``recheck`` waits again, and the first write that gets through ends it."""
    now = [0.0]
    lock = LockWait(WAIT, recheck=1.0, clock=lambda: now[0])
    conn = sqlite3.connect(
        _path(sqlite_url), isolation_level=None, factory=WaitingConnection, timeout=0
    )
    conn.execute("CREATE TABLE t (x)")
    _hold(holder)
    with pytest.raises(sqlite3.OperationalError) as first, lock.writing(conn):
        conn.execute("INSERT INTO t VALUES (1)")
    assert not isinstance(first.value, StillLocked)
    assert lock.timeouts == 1 and lock.held_long
    assert conn.busy_ms == int(WAIT * 1000)
    with pytest.raises(StillLocked), lock.writing(conn):
        conn.execute("INSERT INTO t VALUES (2)")
    assert conn.busy_ms == 0 and lock.timeouts == 1
    now[0] = 1.0
    assert lock.wait() == WAIT  # one caller waits again after ``recheck`` ...
    assert lock.wait() == 0.0  # ... the others still do not
    _release(holder)
    with lock.writing(conn):
        conn.execute("INSERT INTO t VALUES (3)")
    assert not lock.held_long and lock.wait() == WAIT
    conn.close()


def test_inline_writes_never_wait_nor_decide(sqlite_url: str, holder: sqlite3.Connection) -> None:
    """A write on a connection that never waits (the event loop's) finding the lock held
    is no sign of a long lock: the next write still waits."""
    lock = LockWait(WAIT)
    conn = sqlite3.connect(
        _path(sqlite_url), isolation_level=None, factory=WaitingConnection, timeout=0
    )
    conn.busy_ms = 0
    conn.execute("CREATE TABLE t (x)")
    _hold(holder)
    with pytest.raises(sqlite3.OperationalError) as failed, lock.writing(conn, inline=True):
        conn.execute("INSERT INTO t VALUES (1)")
    assert not isinstance(failed.value, StillLocked)
    assert not lock.held_long and lock.timeouts == 0 and lock.wait() == WAIT
    conn.close()


@pytest.mark.parametrize("value", [-1, "1", float("nan")])
def test_bad_lock_timeout_is_a_config_error(sqlite_url: str, value: object) -> None:
    """A negative or non-numeric ``lock_timeout`` is refused where the tier or bus is built."""
    with pytest.raises(ConfigError):
        sc.SQLTier(sqlite_url, lock_timeout=value)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        sc.SQLBus(sqlite_url, lock_timeout=value)  # type: ignore[arg-type]


def test_the_tier_and_its_bus_share_one_wait(sqlite_url: str) -> None:
    """The bus ``SQLTier`` builds waits for the file's lock as the tier does (one decision)."""
    tier = sc.SQLTier(sqlite_url, lock_timeout=0.1)
    bus = tier.fleet_bus()
    assert bus is not None and bus.log.lock is tier.lock is tier.store.lock


def test_sync_calls_return_while_the_file_is_locked(
    two: tuple[sc.Cache, sc.Cache], holder: sqlite3.Connection, wait_until: Any
) -> None:
    """``set``, ``get_or_set`` and ``invalidate`` through ``cache.sync`` return while another
    connection holds the lock (only the first waited); this process serves its own writes
    and none of what it invalidated; the other cache sees all of it once the lock is gone."""
    a, b = two
    a.sync.set("k", 1)
    a.sync.set("j", 1)
    assert (b.sync.get("k"), b.sync.get("j")) == (1, 1)  # now in b's memory tier
    _hold(holder)
    a.sync.set("k", 2)
    assert a.sync.get_or_set("m", lambda: 3) == 3
    a.sync.invalidate(keys=["j"])
    a.sync.delete("warm")
    assert holder.in_transaction  # every call returned while the lock was held
    sql = _sql(a)
    assert sql.lock.timeouts == 1  # the first write waited; the others did not
    stats = a.sync.stats()
    assert stats["tiers"]["sql"]["errors"] >= 4
    assert stats["tiers"]["sql"]["circuit_opened"] == 0
    assert stats["tiers"]["sql"]["lock_timeouts"] == 1
    assert stats["engine"]["invalidations_pending"] > 0
    assert (a.sync.get("k"), a.sync.get("j"), a.sync.get("m")) == (2, None, 3)
    _release(holder)
    wait_until(lambda: a.sync.stats()["engine"]["invalidations_pending"] == 0, what="replay")
    wait_until(lambda: b.sync.get("k") != 1, what="the overwrite's replay")
    wait_until(lambda: b.sync.get("j") is None, what="the invalidation's replay")
    wait_until(lambda: b.sync.get("warm") is None, what="the delete's replay")
    assert a.sync.get("k") == 2
    assert not sql.lock.held_long


async def test_async_calls_return_while_the_file_is_locked(
    sqlite_url: str, holder: sqlite3.Connection
) -> None:
    """The async client makes the same decisions: its calls return while the lock is held,
    only the first waited, and its invalidations are replayed once the lock is gone."""
    namespace = f"locked{uuid.uuid4().hex[:8]}"
    a, b = _cache(sqlite_url, namespace), _cache(sqlite_url, namespace)
    async with a, b:
        await a.set("k", 1)
        await a.set("j", 1)
        assert (await b.get("k"), await b.get("j")) == (1, 1)
        _hold(holder)
        await a.set("k", 2)
        assert await a.get_or_set("m", lambda: 3) == 3
        await a.invalidate(keys=["j"])
        assert holder.in_transaction
        assert _sql(a).lock.timeouts == 1
        assert a.stats()["tiers"]["sql"]["circuit_opened"] == 0
        assert a.stats()["engine"]["invalidations_pending"] > 0
        assert (await a.get("k"), await a.get("j"), await a.get("m")) == (2, None, 3)
        _release(holder)
        await poll(lambda: a.stats()["engine"]["invalidations_pending"] == 0, what="replay")

        async def reached_b() -> bool:  # b's bus: within a poll
            return (await b.get("k"), await b.get("j")) == (None, None)

        await poll(reached_b, what="the replays reaching the other cache")
        assert await a.get("k") == 2


def test_writes_refused_without_waiting_never_trip_the_breaker(
    two: tuple[sc.Cache, sc.Cache], holder: sqlite3.Connection
) -> None:
    """Writes to a file locked for long fail at once as ``FileLockedError``: counted as
    errors, logged once, but the tier's breaker stays closed (its reads keep answering)."""
    a, _ = two
    seen: list[BaseException] = []

    def record(_sender: object, **kw: Any) -> None:
        seen.append(kw["error"])

    sc.signals.tier_error.connect(record)
    _hold(holder)
    try:
        for i in range(20):
            a.sync.set(f"k{i}", i)
    finally:
        sc.signals.tier_error.disconnect(record)
    assert holder.in_transaction
    stats = a.sync.stats()["tiers"]["sql"]
    assert stats["errors"] >= 20 and stats["circuit_opened"] == 0
    assert _sql(a).lock.timeouts == 1
    assert len(seen) == 1 and not isinstance(seen[0], FileLockedError)  # the wait, once
    assert a.sync.get("warm") == 1  # reads of the locked file still answer


async def test_a_prune_that_finds_the_file_locked_is_no_lost_bus(
    sqlite_url: str, holder: sqlite3.Connection
) -> None:
    """The poller's pruning of old log rows is housekeeping: when the lock's wait runs out
    there, the bus stays connected (no emptying of memory tiers) and polls go on."""
    bus = sc.SQLBus(sqlite_url, poll_interval=0.01, retention=0.1, lock_timeout=WAIT)
    states: list[bool] = []
    await bus.start("ns", "me", lambda _m: None, states.append)
    try:
        await bus.publish(sc.Invalidation(keys=("k",), origin="me"))
        _hold(holder)
        await poll(lambda: bus.log.lock.timeouts >= 1, what="a prune that found the lock")
        polled = bus.echoes
        _release(holder)
        await bus.publish(sc.Invalidation(keys=("j",), origin="me"))
        await poll(lambda: bus.echoes > polled, what="the poller reading on")
        assert states == [] and bus.connected
    finally:
        await bus.close()


@pytest.mark.slow
def test_another_process_sees_a_write_made_while_a_third_held_the_lock(
    sqlite_url: str, wait_until: Any
) -> None:
    """Three processes: one holds the write lock, this one writes and returns meanwhile, and
    the other process's memory copy is replaced once the lock is gone (the replay)."""
    namespace = f"locked{uuid.uuid4().hex[:8]}"
    cache = _cache(sqlite_url, namespace)
    cache.sync.set("price", 100)
    other = Other(sqlite_url, namespace)
    script = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE')\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
        "c.execute('COMMIT')\n"
    )
    locker = subprocess.Popen(
        [sys.executable, "-c", script, _path(sqlite_url)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.get("price") == 100
        assert locker.stdout is not None and locker.stdout.readline() == "held\n"
        cache.sync.set("price", 200)
        cache.sync.invalidate(keys=["other"])
        assert locker.poll() is None  # returned while the lock was still held
        assert cache.sync.get("price") == 200
        assert locker.stdin is not None
        locker.stdin.close()
        assert locker.wait(timeout=30) == 0
        wait_until(lambda: other.get("price") != 100, what="the replayed overwrite")
    finally:
        if locker.poll() is None:
            locker.kill()
            locker.wait()
        other.close()
        cache.sync.close()
