"""SQLTier specifics: bounds and eviction, sweeping, the tag check's cost, many writer
processes on one SQLite file, fork and a second event loop, configuration errors."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator

import pytest
from tests.waiting import poll

import stratacache as sc
from stratacache.core.clock import ManualClock
from stratacache.core.entry import Entry
from stratacache.core.errors import ConfigError
from stratacache.core.tier import TierContext
from stratacache.tiers.sql import SQLTier


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=time.time())


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A private SQLite file or PostgreSQL schema."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
async def tier(sqlite_url: str, clock: ManualClock) -> AsyncIterator[SQLTier]:
    t = SQLTier(sqlite_url, sweep_interval=0)
    await t.start(TierContext("shop", clock=clock))
    yield t
    await t.close()


def _entry(clock: ManualClock, value: object = "v", ttl: float = 600, **kw: object) -> Entry:
    now = clock.time()
    return Entry(value, now, expires=now + ttl, **kw)  # type: ignore[arg-type]


# -- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"ttl": -1},
        {"ttl": 0},
        {"sweep_interval": -1},
        {"max_entries": 0},
        {"max_entries": 1.5},
        {"max_bytes": -10},
        {"table": "x; DROP TABLE y"},
        {"table": ""},
        {"pool_size": 0},
        {"url": "mysql://h/db"},
        {"url": "cache.db"},
        {"url": "postgresql+psycopg:///db"},
    ],
)
def test_bad_config_raises_config_error(sqlite_url: str, kwargs: dict[str, object]) -> None:
    """Invalid arguments raise ConfigError at construction."""
    kwargs = {"url": sqlite_url, **kwargs}
    with pytest.raises(ConfigError):
        SQLTier(**kwargs)  # type: ignore[arg-type]


def test_engine_argument_uses_its_url(sqlite_url: str) -> None:
    """A SQLAlchemy engine passed as engine= selects the same database as its URL."""
    sa = pytest.importorskip("sqlalchemy")
    tier = SQLTier(engine=sa.create_engine(sqlite_url))
    assert tier.dialect == "sqlite" and tier.store.path == sqlite_url.removeprefix("sqlite:///")


# -- SQLite specifics --------------------------------------------------------------------------
async def test_sqlite_uses_wal(tier: SQLTier) -> None:
    """SQLite databases run in WAL mode so readers do not block the writer."""
    assert tier.store.conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_hit_is_one_statement(tier: SQLTier, clock: ManualClock) -> None:
    """A tagged get_many is a single SELECT (the tag check inside it)."""
    await tier.set("shop:a", _entry(clock, 1, tags=("t",)))
    await tier.set("shop:b", _entry(clock, 2))
    statements: list[str] = []
    conn = tier.store.conn(True)
    conn.set_trace_callback(statements.append)
    try:
        found = await tier.get_many(["shop:a", "shop:b"])
        single = await tier.get("shop:a")
    finally:
        conn.set_trace_callback(None)
    assert set(found) == {"shop:a", "shop:b"} and single is not None
    assert len(statements) == 2 and all(s.lstrip().startswith("SELECT") for s in statements)


async def test_miss_and_its_load_are_two_statements(sqlite_url: str) -> None:
    """A read-through miss on SQLite is one read (the lease comes with it) and one write."""
    cache = sc.Cache([SQLTier(sqlite_url, sweep_interval=0)], namespace="shop")
    async with cache:
        tier = cache.tiers.slots[0].tier
        assert isinstance(tier, SQLTier)
        statements: list[str] = []
        conn = tier.store.conn(True)
        conn.set_trace_callback(statements.append)
        try:
            assert await cache.get_or_set("k", lambda: 1, ttl=60) == 1
        finally:
            conn.set_trace_callback(None)
        # the size triggers' programs are traced again under their statement's text
        ran = [s for i, s in enumerate(statements) if i == 0 or s != statements[i - 1]]
        assert [s.split()[0] for s in ran] == ["SELECT", "INSERT"]


@pytest.mark.parametrize("sync", [False, True])
async def test_lease_remembered_by_a_miss_is_voided_like_a_fresh_one(
    tier: SQLTier, clock: ManualClock, sync: bool
) -> None:
    """The lease a miss hands to its load is refused by an invalidation that came between."""
    other = SQLTier(f"sqlite:///{tier.store.path}", sweep_interval=0)
    await other.start(TierContext("shop", clock=clock))
    try:
        assert (tier.get_sync("shop:k") if sync else await tier.get("shop:k")) is None
        await other.invalidate_tags(["t"])  # another process: this one cannot forget the lease
        lease = tier.lease_sync("shop:k", ("t",)) if sync else await tier.lease("shop:k", ("t",))
        assert not await tier.set("shop:k", _entry(clock, tags=("t",)), lease)
        assert await tier.get("shop:k") is None
    finally:
        await other.close()


async def test_own_invalidation_forgets_remembered_leases(
    tier: SQLTier, clock: ManualClock
) -> None:
    """After this tier invalidates, a later load asks for a fresh lease (no false refusal)."""
    assert await tier.get("shop:k") is None
    await tier.invalidate_tags(["t"])
    lease = await tier.lease("shop:k", ("t",))
    assert await tier.set("shop:k", _entry(clock, tags=("t",)), lease)


async def test_old_layout_is_replaced(sqlite_url: str, clock: ManualClock) -> None:
    """A table left by the previous layout of the tier is recreated, and the tier works."""
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE stratacache_entries (key TEXT PRIMARY KEY, value BLOB,"
            " expires_at REAL, tags TEXT NOT NULL, seq INTEGER NOT NULL)"
        )
    t = SQLTier(sqlite_url, sweep_interval=0)
    await t.start(TierContext("shop", clock=clock))
    try:
        assert await t.set("shop:k", _entry(clock, 5))
        got = await t.get("shop:k")
        assert got is not None and got.value == 5
    finally:
        await t.close()


# -- the tag check's cost ----------------------------------------------------------------------
def _vm_steps(conn: sqlite3.Connection, run: object) -> int:
    """SQLite virtual-machine instructions executed by ``run()`` on ``conn``."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(count, 1)
    try:
        run()  # type: ignore[operator]
    finally:
        conn.set_progress_handler(None, 1)
    return steps


async def test_tag_check_work_does_not_grow_with_invalidated_tags(
    tier: SQLTier, clock: ManualClock
) -> None:
    """A tagged read executes the same number of SQLite instructions with 10 or 100,000
    tags ever invalidated (version rows are looked up by primary key, never scanned)."""
    await tier.set("shop:k", _entry(clock, 1, tags=("a", "b", "c")))
    conn = tier.store.conn()
    steps = []
    for total in (10, 100_000):
        have = int(
            conn.execute("SELECT count(*) FROM stratacache_entries_versions").fetchone()[0] or 0
        )
        tier.invalidate_tags_sync([f"old:{i}" for i in range(have, total)])
        steps.append(_vm_steps(conn, lambda: tier.get_sync("shop:k")))
        assert tier.get_sync("shop:k") is not None
    assert steps[0] == steps[1] > 0, steps


async def test_tag_check_uses_primary_key_on_postgres(
    postgres_url: str, clock: ManualClock
) -> None:
    """On PostgreSQL the read's plan reaches tag versions through their primary key, with
    100,000 tags invalidated (no scan of the versions table)."""
    t = SQLTier(postgres_url, sweep_interval=0)
    await t.start(TierContext("shop", clock=clock))
    try:
        await t.set("shop:k", _entry(clock, 1, tags=("a", "b")))
        await t.invalidate_tags([f"old:{i}" for i in range(100_000)])
        with t.store.connection() as conn:
            conn.execute("ANALYZE stratacache_entries_versions")
            plan = "\n".join(
                r[0]
                for r in conn.execute(
                    "EXPLAIN " + t.store._get, ("shop:k", clock.time(), "shop"), prepare=False
                )
            )
        assert "stratacache_entries_versions_pkey" in plan, plan
        assert "Seq Scan on stratacache_entries_versions" not in plan, plan
        assert (await t.get("shop:k")) is not None
    finally:
        await t.close()


@pytest.mark.parametrize(
    ("key", "prefix", "voids"),
    [
        ("shop:user:1", "shop:user:", True),
        ("shop:user:1", "shop:user:1", True),
        ("shop:user:1", "shop:", True),
        ("shop:user:1", "shop:users", False),
        ("shop:user:1", "shop:user:10", False),
        ("shop:u", "shop:user:", False),  # the key is shorter than the prefix
        ("shop:a%b", "shop:a%", True),  # LIKE wildcards are plain characters
        ("shop:axb", "shop:a_", False),
        ("shop:ünï:1", "shop:ünï", True),
        ("shop:ünï:1", "shop:üni", False),
    ],
)
async def test_prefix_invalidation_voids_exactly_the_leases_it_covers(
    db_url: str, clock: ManualClock, key: str, prefix: str, voids: bool
) -> None:
    """A leased set is refused iff a prefix deleted after the lease covers its key."""
    t = SQLTier(db_url, sweep_interval=0)
    await t.start(TierContext("shop", clock=clock))
    try:
        for tags in ((), ("a", "b")):
            lease = await t.lease(key, tags)
            await t.delete_prefix(prefix)
            stored = await t.set(key, _entry(clock, tags=tags), lease)
            assert stored is not voids
            assert (await t.get(key) is not None) is not voids
            await t.delete_many([key])
    finally:
        await t.close()


@pytest.mark.parametrize(
    ("entry_tags", "invalidated", "voids"),
    [
        (("a",), ["a"], True),
        (("a", "b"), ["b"], True),
        (("a",), ["ab"], False),
        (("ab",), ["a"], False),
        ((), ["a"], False),
        (("a",), [], False),
    ],
)
async def test_tag_invalidation_voids_exactly_the_leases_it_covers(
    db_url: str,
    clock: ManualClock,
    entry_tags: tuple[str, ...],
    invalidated: list[str],
    voids: bool,
) -> None:
    """A leased set is refused iff one of its own tags was invalidated after the lease."""
    t = SQLTier(db_url, sweep_interval=0)
    await t.start(TierContext("shop", clock=clock))
    try:
        lease = await t.lease("shop:k", entry_tags)
        await t.invalidate_tags(invalidated)
        await t.set("shop:other", _entry(clock))  # an unrelated write moves the counter on
        assert await t.set("shop:k", _entry(clock, tags=entry_tags), lease) is not voids
    finally:
        await t.close()


# -- bounds, eviction, sweeping ----------------------------------------------------------------
async def test_max_entries_evicts_least_recently_used(db_url: str, clock: ManualClock) -> None:
    """Over max_entries, the least recently read or written entries go; a read one stays."""
    t = SQLTier(db_url, max_entries=5, sweep_interval=0)
    await t.start(TierContext("shop", clock=clock))
    try:
        for i in range(5):
            await t.set(f"shop:{i}", _entry(clock, i))
            clock.advance(1)
        assert await t.get("shop:0") is not None  # recorded as used now
        clock.advance(1)
        for i in range(5, 8):
            await t.set(f"shop:{i}", _entry(clock, i))
            clock.advance(1)
        await t.sweep()
        assert len(t) == 5 and t.evictions == 3
        found = await t.get_many([f"shop:{i}" for i in range(8)])
        assert set(found) == {"shop:0", "shop:5", "shop:6", "shop:7", "shop:4"}
    finally:
        await t.close()


@pytest.mark.parametrize("gap", [4.0, 9.9])
async def test_reads_of_a_key_are_recorded_once_per_ten_seconds(
    db_url: str, clock: ManualClock, gap: float
) -> None:
    """Reads of a key within ten seconds of its recorded read are not written out again."""
    t = SQLTier(db_url, max_entries=100, sweep_interval=0)
    await t.start(TierContext("shop", clock=clock))
    seen: list[list[str]] = []
    real = t.store.touch
    t.store.touch = lambda keys, now: (seen.append(sorted(keys)), real(keys, now))[1]
    keys = [f"shop:{i}" for i in range(3)]
    try:
        for i, key in enumerate(keys):
            await t.set(key, _entry(clock, i))
        for advance in (gap, 10.0 - gap + 0.5, 0.0):
            for key in keys:
                assert await t.get(key) is not None
            await t.sweep()  # writes the recorded reads out
            clock.advance(advance)
        assert seen == [keys, keys]  # at 0 and past 10 s; not at ``gap`` nor just after
    finally:
        await t.close()


@pytest.mark.parametrize(("max_entries", "recorded"), [(1000, False), (20, True)])
async def test_reads_are_recorded_once_the_table_is_half_full(
    sqlite_url: str, clock: ManualClock, max_entries: int, recorded: bool
) -> None:
    """Reads are recorded for the eviction order only once eviction is in sight (half full)."""
    t = SQLTier(sqlite_url, max_entries=max_entries, sweep_interval=0)
    await t.start(TierContext("shop", clock=clock))
    try:
        for i in range(2 * t.store.check_every):  # the event-loop writes look at the size
            await t.set(f"shop:{i}", _entry(clock))
        assert await t.get("shop:0") is not None
        assert bool(t.bounds.reads.pending) is recorded
    finally:
        await t.close()


async def test_expired_entries_are_evicted_first(db_url: str, clock: ManualClock) -> None:
    """Over the bound, expired rows go before any live one."""
    t = SQLTier(db_url, max_entries=4, sweep_interval=0)
    await t.start(TierContext("shop", clock=clock))
    try:
        for i in range(3):
            await t.set(f"shop:old{i}", _entry(clock, i, ttl=10))
        clock.advance(1)
        for i in range(4):
            await t.set(f"shop:new{i}", _entry(clock, i))
        clock.advance(20)
        await t.sweep()
        assert len(t) == 4 and t.evictions == 0
        assert len(await t.get_many([f"shop:new{i}" for i in range(4)])) == 4
    finally:
        await t.close()


async def test_sqlite_sweep_and_eviction_hold_the_lock_one_batch_at_a_time(
    sqlite_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep of many expired rows and an eviction of many live ones delete ``BATCH_ROWS``
    rows per transaction, so other writers never wait for one long transaction."""
    from stratacache.tiers.sql import _sqlite

    monkeypatch.setattr(_sqlite, "BATCH_ROWS", 10)
    t = SQLTier(sqlite_url, max_entries=None, sweep_interval=0)
    await t.start(TierContext("shop", clock=clock))
    try:
        t.set_many_sync({f"shop:old{i}": _entry(clock, i, ttl=10) for i in range(25)})
        t.set_many_sync({f"shop:new{i}": _entry(clock, i) for i in range(30)})
        clock.advance(20)
        statements: list[str] = []
        t.store.conn().set_trace_callback(statements.append)
        assert t.store.sweep(clock.time()) == 25
        assert statements.count("BEGIN IMMEDIATE") == 3
        statements.clear()
        assert t.store.evict(5, None, clock.time()) == 25
        assert statements.count("BEGIN IMMEDIATE") == 1 + 3  # the sweep (none left), 10+10+5
        assert t.usage()[0] == 5
    finally:
        await t.close()


async def test_max_bytes_bounds_stored_bytes(db_url: str, clock: ManualClock) -> None:
    """Stored value bytes stay within max_bytes once the bound is enforced."""
    t = SQLTier(db_url, max_bytes=20_000, max_entries=None, sweep_interval=0)
    await t.start(TierContext("shop", clock=clock))
    try:
        for i in range(40):
            await t.set(f"shop:{i}", _entry(clock, "x" * 1000))
            clock.advance(1)
        t.sweep_sync()
        # an eviction the writes started may still be counting on the worker thread
        await poll(lambda: t.evictions + t.usage()[0] == 40, what="every eviction counted")
        count, size = t.usage()
        assert 0 < size <= 20_000 and count < 40 and t.evictions == 40 - count
        assert await t.get("shop:39") is not None
    finally:
        await t.close()


async def test_bound_holds_between_sweeps(sqlite_url: str, clock: ManualClock) -> None:
    """Writes alone bring the table back near its bound (checked every few writes, on the
    worker thread; no sweep)."""
    t = SQLTier(sqlite_url, max_entries=50, sweep_interval=0)
    await t.start(TierContext("shop", clock=clock))
    try:
        await t.set_many({f"shop:{i}": _entry(clock, i) for i in range(200)})
        for i in range(200, 400):
            await t.set(f"shop:{i}", _entry(clock, i))
        await poll(lambda: len(t) <= 50 + t.store.check_every, what="eviction by the writes")
    finally:
        await t.close()


@pytest.mark.parametrize("bound", [{"max_entries": 10_000}, {"max_bytes": 1 << 30}])
async def test_writes_within_bounds_hand_no_bound_check_to_the_worker(
    sqlite_url: str, clock: ManualClock, bound: dict[str, int]
) -> None:
    """Inline writes that keep the table within its bounds check them on the loop: no thread hop."""
    t = SQLTier(sqlite_url, sweep_interval=0, **bound)  # type: ignore[arg-type]
    await t.start(TierContext("shop", clock=clock))
    handed: list[object] = []
    t._runner.background = handed.append  # type: ignore[method-assign]
    try:
        for i in range(10 * t.store.check_every):
            assert await t.set(f"shop:{i}", _entry(clock, i))
        assert handed == []
    finally:
        await t.close()


async def test_size_shows_in_cache_stats(sqlite_url: str) -> None:
    """Cache.stats() reports the SQL tier's entries and evictions."""
    import stratacache as sc

    async with sc.Cache([SQLTier(sqlite_url, sweep_interval=0)], namespace="shop") as cache:
        for i in range(3):
            await cache.set(f"k{i}", i)
        stats = cache.stats()["tiers"]["sql"]
    assert stats["entries"] == 3 and stats["evictions"] == 0


async def test_sweep_deletes_expired_rows(db_url: str, clock: ManualClock) -> None:
    """sweep() removes the rows past their end and counts them; live rows stay."""
    t = SQLTier(db_url, sweep_interval=0)
    await t.start(TierContext("shop", clock=clock))
    try:
        await t.set_many({f"shop:{i}": _entry(clock, i, ttl=10) for i in range(5)})
        await t.set("shop:keep", _entry(clock, 1, ttl=1000))
        await t.delete_many(["shop:gone"])  # a tombstone is not an entry
        clock.advance(20)
        assert await t.sweep() == 5
        assert len(t) == 1 and await t.get("shop:keep") is not None
    finally:
        await t.close()


async def test_background_sweeper_is_cancelled_on_close(sqlite_url: str) -> None:
    """start() runs a sweeper task and close() stops it."""
    t = SQLTier(sqlite_url, sweep_interval=3600)
    await t.start(TierContext("shop"))
    task = t._runner.sweeper
    assert task is not None and not task.done()
    await t.close()
    assert task.done()


# -- several processes, fork, event loops ------------------------------------------------------
_WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    from stratacache.core.entry import Entry
    from stratacache.core.tier import TierContext
    from stratacache.tiers.sql import SQLTier

    url, me, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    tier = SQLTier(url, sweep_interval=0, max_entries=100_000)
    now = time.time()

    def value(i):
        return {"writer": me, "i": i, "pad": "p" * (i % 50)}

    async def main():  # even rows from the event loop (inline or on the worker), odd ones sync
        await tier.start(TierContext("shop"))
        for i in range(0, n, 2):
            assert await tier.set(f"shop:{me}:{i}", Entry(value(i), now, tags=(f"w{me}",)))
            lease = await tier.lease(f"shop:{me}:{i}:l", ["x"])
            assert await tier.set(f"shop:{me}:{i}:l", Entry(value(i), now, tags=("x",)), lease)
            await asyncio.to_thread(sync_rows, i + 1)
        await tier.close()

    def sync_rows(i):
        if i % 10 == 1:
            tier.set_many_sync({f"shop:{me}:{i}:{j}": Entry([me, i, j], now) for j in range(3)})
        assert tier.set_sync(f"shop:{me}:{i}", Entry(value(i), now, tags=(f"w{me}",)))
        if i % 25 == 1:
            tier.invalidate_tags_sync([f"other{me}"])

    asyncio.run(main())
    print("ok")
    """
)


def test_many_writer_processes_on_one_sqlite_file(sqlite_url: str) -> None:
    """Four OS processes writing one SQLite file at once lose nothing, garble nothing and
    never see a lock error."""
    writers, n = 4, 150
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, sqlite_url, str(me), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me in range(writers)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "ok", err
    tier = SQLTier(sqlite_url, sweep_interval=0)
    asyncio.run(tier.start(TierContext("shop")))
    for me in range(writers):
        found = tier.get_many_sync([f"shop:{me}:{i}" for i in range(n)])
        assert {k: e.value for k, e in found.items()} == {
            f"shop:{me}:{i}": {"writer": me, "i": i, "pad": "p" * (i % 50)} for i in range(n)
        }
        leased = tier.get_many_sync([f"shop:{me}:{i}:l" for i in range(0, n, 2)])
        assert len(leased) == len(range(0, n, 2))
        wanted = [f"shop:{me}:{i}:{j}" for i in range(1, n, 10) for j in range(3)]
        batches = tier.get_many_sync(wanted)
        assert {k: e.value for k, e in batches.items()} == {
            k: [me, int(k.split(":")[2]), int(k.split(":")[3])] for k in wanted
        }
    asyncio.run(tier.close())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
async def test_child_after_fork_uses_fresh_connections(db_url: str, clock: ManualClock) -> None:
    """A forked child reads and writes through the tier on its own connections, sync and
    async, and the parent's connections keep working afterwards."""
    t = SQLTier(db_url, sweep_interval=0)
    await t.start(TierContext("shop", clock=clock))
    try:
        await t.set("shop:parent", _entry(clock, "p"))
        assert await t.get("shop:parent") is not None and t.get_sync("shop:parent") is not None
        pid = os.fork()
        if pid == 0:  # the child: exit code says what failed
            code = 1
            try:
                got = t.get_sync("shop:parent")
                ok = got is not None and got.value == "p"
                ok = ok and t.set_sync("shop:child", _entry(clock, "c"))

                async def in_child() -> bool:
                    got = await t.get("shop:child")
                    return got is not None and await t.set("shop:child2", _entry(clock, "c2"))

                ok = ok and asyncio.new_event_loop().run_until_complete(in_child())
                code = 0 if ok else 2
            finally:
                os._exit(code)
        _, status = await asyncio.to_thread(os.waitpid, pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        found = await t.get_many(["shop:parent", "shop:child", "shop:child2"])
        assert {k: e.value for k, e in found.items()} == {
            "shop:parent": "p",
            "shop:child": "c",
            "shop:child2": "c2",
        }
        assert t.get_sync("shop:child") is not None
    finally:
        await t.close()


def test_second_event_loop_after_the_first_closed(db_url: str) -> None:
    """A tier started in one event loop keeps working in a new loop once the first closed."""
    t = SQLTier(db_url, sweep_interval=3600)
    clock = ManualClock(start=time.time())

    async def first() -> None:
        await t.start(TierContext("shop", clock=clock))
        await t.set("shop:a", _entry(clock, 1, tags=("t",)))
        assert await t.get("shop:a") is not None

    async def second() -> None:
        assert (await t.get("shop:a")) is not None
        assert await t.set("shop:b", _entry(clock, 2))
        assert set(await t.get_many(["shop:a", "shop:b"])) == {"shop:a", "shop:b"}
        await t.invalidate_tags(["t"])
        assert await t.get("shop:a") is None
        await t.close()

    asyncio.run(first())
    asyncio.run(second())


async def test_locked_database_read_waits_off_the_event_loop(
    clock: ManualClock, sqlite_url: str
) -> None:
    """An async read or write that finds the file locked by another process waits on the
    worker thread (the event loop keeps running) and completes once the lock is gone."""
    tier = SQLTier(sqlite_url, sweep_interval=0, lock_timeout=60)  # longer than the lock
    await tier.start(TierContext("shop", clock=clock))
    await tier.set("shop:k", _entry(clock, 7))
    await asyncio.to_thread(tier.store.close)  # an exclusive WAL lock needs no other connection
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE stratacache_entries SET atime = atime")
    read = asyncio.ensure_future(tier.get("shop:k"))
    write = asyncio.ensure_future(tier.set("shop:w", _entry(clock, 8)))
    ticks = 0
    while ticks < 5:  # the loop is free while both wait for the lock
        await asyncio.sleep(0.01)
        ticks += 1
    assert not read.done() and not write.done()
    holder.execute("COMMIT")
    holder.close()
    got = await asyncio.wait_for(read, 30)
    assert got is not None and got.value == 7
    assert await asyncio.wait_for(write, 30)
    got = await tier.get("shop:w")
    assert got is not None and got.value == 8
    await tier.close()


def test_two_event_loops_at_once_in_two_threads(db_url: str) -> None:
    """Two threads, each running its own event loop, read and write through one tier at once."""
    import threading

    t = SQLTier(db_url, sweep_interval=0)
    clock = ManualClock(start=time.time())
    asyncio.run(t.start(TierContext("shop", clock=clock)))
    errors: list[BaseException] = []

    async def work(me: int) -> None:
        for i in range(40):
            assert await t.set(f"shop:{me}:{i}", _entry(clock, [me, i]))
            got = await t.get(f"shop:{me}:{i}")
            assert got is not None and got.value == [me, i]

    def run(me: int) -> None:
        try:
            asyncio.run(work(me))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(me,)) for me in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    asyncio.run(t.close())
    assert not errors, errors


async def test_wal_stays_bounded_under_inline_writes(tier: SQLTier, sqlite_url: str) -> None:
    """Sets written on the event loop still get the WAL checkpointed and restarted: 3,000
    writes of ~17 KB of pages each leave a WAL far below their ~50 MB total.

    The checkpoints run on the worker thread; the test lets it catch up every 500 writes
    (an unshared machine does so by itself), so the bound does not depend on scheduling.
    """
    now = time.time()
    for i in range(3000):
        assert await tier.set(f"shop:{i % 300}", Entry("x" * 1000, now))
        if i % 500 == 499:  # the worker has run every checkpoint asked for so far
            await tier._runner.offload("flush", lambda: None)
    wal = sqlite_url.removeprefix("sqlite:///") + "-wal"
    assert await asyncio.to_thread(os.path.getsize, wal) < 24 * 2**20


def test_stats_survive_an_unreachable_database() -> None:
    """Counting entries for stats() on a database that cannot be reached logs and gives the
    last known count instead of raising."""
    t = SQLTier("postgresql://nobody@127.0.0.1:1/none", sweep_interval=0)
    assert len(t) == 0


async def test_postgres_read_survives_a_dropped_connection(
    postgres_url: str, clock: ManualClock
) -> None:
    """A pooled connection the server ended (restart, idle timeout) costs no failed read:
    the read is retried once on a new connection, sync and async."""
    import psycopg

    t = SQLTier(postgres_url, sweep_interval=0)
    await t.start(TierContext("shop", clock=clock))
    try:
        await t.set("shop:k", _entry(clock, 3))
        assert t.get_sync("shop:k") is not None and await t.get("shop:k") is not None
        pids = [c.info.backend_pid for c in t.store.pool._idle]
        for idle, _ in t.store.pool._apools.values():
            pids += [c.info.backend_pid for c in idle]
        with psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True) as admin:
            for pid in pids:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        got = t.get_sync("shop:k")
        assert got is not None and got.value == 3
        got = await t.get("shop:k")
        assert got is not None and got.value == 3
    finally:
        await t.close()


async def test_postgres_async_reads_keep_within_pool_size(
    postgres_url: str, clock: ManualClock
) -> None:
    """Many concurrent async reads on one event loop open at most ``pool_size`` connections."""
    t = SQLTier(postgres_url, sweep_interval=0, pool_size=2)
    await t.start(TierContext("shop", clock=clock))
    try:
        await t.set("shop:k", _entry(clock, 3))
        got = await asyncio.gather(*(t.get("shop:k") for _ in range(20)))
        assert all(e is not None and e.value == 3 for e in got)
        (idle, _), *_ = t.store.pool._apools.values()
        assert 1 <= len(idle) <= 2
    finally:
        await t.close()


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_incr_and_add_keep_the_size_bound(db: str, request: pytest.FixtureRequest) -> None:
    """The primitives' compare-and-set writes count toward max_entries like any write."""
    url = request.getfixturevalue("sqlite_url" if db == "sqlite" else "postgres_url")
    tier = sc.SQLTier(url=url, max_entries=10, sweep_interval=0)
    cache = sc.Cache(tiers=[tier], namespace="bound" + db)
    for i in range(600):
        cache.sync.incr(f"c{i}")
        cache.sync.add(f"a{i}", i)
    assert len(tier) <= 10 + 2 * tier.store.check_every
    cache.sync.close()
