"""SQLTier specifics: sweeping, SQLite setup, one-statement reads, configuration errors."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from stratacache.core.clock import ManualClock
from stratacache.core.entry import Entry
from stratacache.core.errors import ConfigError
from stratacache.core.tier import TierContext
from stratacache.tiers.sql import SQLTier


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=time.time())


@pytest.fixture
async def tier(sqlite_url: str, clock: ManualClock) -> AsyncIterator[SQLTier]:
    t = SQLTier(sqlite_url, sweep_interval=0)
    await t.start(TierContext("shop", clock=clock))
    yield t
    await t.close()


def test_bad_config_raises_config_error(sqlite_url: str) -> None:
    """Invalid arguments raise ConfigError at construction."""
    with pytest.raises(ConfigError):
        SQLTier(sqlite_url, ttl=-1)
    with pytest.raises(ConfigError):
        SQLTier(sqlite_url, sweep_interval=-1)


async def test_sweep_deletes_expired_rows(tier: SQLTier, clock: ManualClock) -> None:
    """sweep() removes the rows past their end and counts them; live rows stay."""
    now = clock.time()
    await tier.set_many({f"shop:{i}": Entry(i, now, expires=now + 10) for i in range(5)})
    await tier.set("shop:keep", Entry(1, now, expires=now + 1000))
    clock.advance(20)
    assert await tier.sweep() == 5
    with tier.engine.connect() as conn:
        keys = conn.execute(sa.select(tier.entries.c.key)).scalars().all()
    assert keys == ["shop:keep"]


async def test_sqlite_uses_wal(tier: SQLTier) -> None:
    """SQLite databases run in WAL mode so readers do not block the writer."""
    with tier.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


async def test_hit_is_one_statement(tier: SQLTier, clock: ManualClock) -> None:
    """A tagged get_many is a single SELECT (tag check inside it)."""
    await tier.set("shop:a", Entry(1, clock.time(), tags=("t",)))
    await tier.set("shop:b", Entry(2, clock.time()))
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    sa.event.listen(tier.engine, "before_cursor_execute", record)
    try:
        found = await tier.get_many(["shop:a", "shop:b"])
    finally:
        sa.event.remove(tier.engine, "before_cursor_execute", record)
    assert set(found) == {"shop:a", "shop:b"}
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1


async def test_background_sweeper_is_cancelled_on_close(sqlite_url: str) -> None:
    """start() runs a sweeper task and close() stops it."""
    t = SQLTier(sqlite_url, sweep_interval=3600)
    await t.start(TierContext("shop"))
    task = t._sweeper
    assert task is not None and not task.done()
    await t.close()
    assert task.done()
