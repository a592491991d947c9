"""The query cache on AsyncEngines (psycopg 3, asyncpg, aiosqlite): same decisions as sync."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import joinedload
from tests.sql.models import CACHED, Category, ExecutionCounter, Product, seed

import stratacache as sc
from stratacache.sql import QueryCache


@pytest.fixture(params=["postgresql+psycopg", "postgresql+asyncpg", "sqlite+aiosqlite"])
async def aengine(request: pytest.FixtureRequest) -> AsyncIterator[AsyncEngine]:
    """A seeded async engine on a private PostgreSQL schema or SQLite file."""
    driver = request.param
    if driver.startswith("sqlite"):
        url = str(request.getfixturevalue("sqlite_url")).replace("sqlite:", driver + ":", 1)
        engine = create_async_engine(url)
    else:
        url = str(request.getfixturevalue("postgres_url"))
        base, schema = url.split("?options=-csearch_path%3D")
        base = base.replace("postgresql+psycopg", driver, 1)
        if driver.endswith("asyncpg"):
            engine = create_async_engine(
                base, connect_args={"server_settings": {"search_path": schema}}
            )
        else:
            engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(seed)
    yield engine
    await engine.dispose()


@pytest.fixture
async def acache() -> AsyncIterator[sc.Cache]:
    """A memory-only cache, closed after the test."""
    cache = sc.Cache([sc.MemoryTier()], namespace="qca")
    yield cache
    await cache.close()


@pytest.fixture
def counted(aengine: AsyncEngine) -> ExecutionCounter:
    """Counts the statements that reach the driver."""
    return ExecutionCounter(aengine.sync_engine)


@pytest.fixture
def aqc(acache: sc.Cache, aengine: AsyncEngine, counted: ExecutionCounter) -> QueryCache:
    """A query cache on the async engine (identity given: asyncpg's search_path is not in the URL)."""
    return QueryCache(acache, aengine, database=str(aengine.url) + str(id(aengine)))


async def read(engine: AsyncEngine, stmt: Any = CACHED) -> list[Any]:
    """Run ``stmt`` on a fresh async connection; its first column."""
    async with engine.connect() as conn:
        return list((await conn.execute(stmt)).scalars().all())


async def test_second_identical_select_does_not_reach_the_database(
    aengine: AsyncEngine, aqc: QueryCache, counted: ExecutionCounter
) -> None:
    """The same SELECT twice costs one statement on an async engine too."""
    before = counted.count
    assert await read(aengine) == await read(aengine) == ["atlas", "novel", "kite"]
    assert counted.count - before == 1


async def test_async_orm_session_gets_attached_objects_and_fresh_rows_after_commit(
    aengine: AsyncEngine, aqc: QueryCache, counted: ExecutionCounter
) -> None:
    """AsyncSession hits yield session objects; a committed flush refreshes the joined result."""
    stmt = sa.select(Product).options(joinedload(Product.category)).order_by(Product.id)
    stmt = stmt.execution_options(stratacache=True)
    for _ in range(2):
        async with AsyncSession(aengine) as session:
            products = (await session.scalars(stmt)).unique().all()
            assert all(p in session for p in products)
    assert aqc.stats()["tables"]["products"]["hits"] == 1
    async with AsyncSession(aengine) as session:
        (await session.get_one(Category, 2)).name = "games"
        await session.commit()
    async with AsyncSession(aengine) as session:
        before = counted.count
        products = (await session.scalars(stmt)).unique().all()
        assert counted.count - before == 1
        assert products[2].category.name == "games"


async def test_async_read_your_writes_and_rollback(
    aengine: AsyncEngine, aqc: QueryCache, counted: ExecutionCounter
) -> None:
    """Inside a writing async transaction the table is read live; a rollback keeps the cache."""
    await read(aengine)
    async with aengine.connect() as conn:
        await conn.execute(sa.update(Product).where(Product.id == 1).values(name="globe"))
        mine = list((await conn.execute(CACHED)).scalars())
        assert mine == ["globe", "novel", "kite"]
        await conn.rollback()
    before = counted.count
    assert await read(aengine) == ["atlas", "novel", "kite"]
    assert counted.count == before


async def test_async_text_write_invalidates_after_commit(
    aengine: AsyncEngine, aqc: QueryCache
) -> None:
    """A committed text() write through an async connection makes the next read fresh."""
    await read(aengine)
    async with aengine.begin() as conn:
        await conn.execute(sa.text("UPDATE products SET name = 'yoyo' WHERE id = 3"))
    assert await read(aengine) == ["atlas", "novel", "yoyo"]


async def test_async_non_deterministic_sql_is_never_cached(
    aengine: AsyncEngine, aqc: QueryCache, counted: ExecutionCounter
) -> None:
    """random() runs every time on an async engine as well."""
    stmt = sa.select(Product.name).order_by(sa.func.random()).execution_options(stratacache=True)
    before = counted.count
    await read(aengine, stmt)
    await read(aengine, stmt)
    assert counted.count - before == 2


async def test_async_invalidate_tables(
    aengine: AsyncEngine, aqc: QueryCache, acache: sc.Cache
) -> None:
    """``ainvalidate_tables`` refreshes results after a write the query cache did not see."""
    await read(aengine)
    aqc.detach()
    async with aengine.begin() as conn:
        await conn.execute(sa.text("UPDATE products SET name = 'yoyo' WHERE id = 3"))
    again = QueryCache(acache, aengine, database=str(aengine.url) + str(id(aengine)))
    assert await read(aengine) == ["atlas", "novel", "kite"]  # unseen write: still cached
    await again.ainvalidate_tables(["products"])
    assert await read(aengine) == ["atlas", "novel", "yoyo"]


async def test_sync_and_async_engines_make_the_same_decisions(postgres_url: str) -> None:
    """One workload through a sync and an async engine gives equal results and equal counters."""
    stmts = [
        CACHED,
        CACHED,
        sa.select(Product.name).where(Product.id == 2).execution_options(stratacache=True),
        sa.select(sa.func.now()).execution_options(stratacache=True),
    ]
    write = sa.update(Product).where(Product.id == 2).values(name="poem")
    sync_engine = sa.create_engine(postgres_url)
    with sync_engine.begin() as conn:
        seed(conn)
    sync_cache, async_cache = sc.Cache([sc.MemoryTier()]), sc.Cache([sc.MemoryTier()])
    sync_qc = QueryCache(sync_cache, sync_engine, database="parity-sync")
    sync_results: list[Any] = []
    with sync_engine.connect() as conn:
        for stmt in stmts:
            rows = conn.execute(stmt).all()
            sync_results.append(rows[:1] if stmt is not stmts[3] else None)
        conn.execute(write)
        conn.commit()
        sync_results += [conn.execute(s).all() for s in stmts[:3]]
    sync_qc.detach()
    with sync_engine.begin() as conn:  # back to the seeded state for the async run
        conn.execute(sa.update(Product).where(Product.id == 2).values(name="novel"))
    sync_engine.dispose()
    sync_cache.sync.close()

    aengine = create_async_engine(postgres_url)
    async_qc = QueryCache(async_cache, aengine, database="parity-async")
    async_results: list[Any] = []
    async with aengine.connect() as conn:
        for stmt in stmts:
            rows = (await conn.execute(stmt)).all()
            async_results.append(rows[:1] if stmt is not stmts[3] else None)
        await conn.execute(write)
        await conn.commit()
        async_results += [(await conn.execute(s)).all() for s in stmts[:3]]
    await aengine.dispose()
    await async_cache.close()
    assert async_results == sync_results
    sync_stats, async_stats = sync_qc.stats(), async_qc.stats()
    assert sync_stats["tables"] == async_stats["tables"]
    assert sync_stats["uncached"] == async_stats["uncached"]


async def test_a_commit_sent_as_sql_invalidates_on_an_async_engine(
    aengine: AsyncEngine, aqc: QueryCache, counted: ExecutionCounter
) -> None:
    """A write committed by a textual COMMIT is seen by the next cached read; BEGIN stops caching."""

    async def names() -> list[str]:
        async with aengine.connect() as conn:
            return list((await conn.execute(CACHED)).scalars())

    assert await names() == ["atlas", "novel", "kite"]
    async with aengine.connect() as conn:
        await conn.execute(sa.update(Product).where(Product.id == 1).values(name="globe"))
        await conn.exec_driver_sql("COMMIT")
    assert await names() == ["globe", "novel", "kite"]
    async with aengine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await auto.exec_driver_sql("BEGIN")
        before = counted.count
        await auto.execute(CACHED)
        assert counted.count == before + 1  # inside a textual transaction: from the database
        await auto.exec_driver_sql("ROLLBACK")


async def test_an_async_text_delete_refreshes_the_tables_it_cascades_into(
    tmp_path: Any, acache: sc.Cache
) -> None:
    """A text() DELETE of a parent honours ON DELETE CASCADE declared in the MetaData the
    query cache has seen, on an async engine as on a sync one."""
    metadata = sa.MetaData()
    parent = sa.Table("parent", metadata, sa.Column("id", sa.Integer, primary_key=True))
    child = sa.Table(
        "child",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("parent_id", sa.ForeignKey("parent.id", ondelete="CASCADE")),
    )
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'fk.sqlite'}")
    sa.event.listen(
        engine.sync_engine, "connect", lambda dbapi, _: dbapi.execute("PRAGMA foreign_keys=ON")
    )
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(sa.insert(parent).values(id=1))
        await conn.execute(sa.insert(child).values(id=1, parent_id=1))
    qc = QueryCache(acache, engine, cache_all=True)
    stmt = sa.select(child.c.id).where(child.c.id == 1)
    assert await read(engine, stmt) == [1]
    async with engine.begin() as conn:
        await conn.execute(sa.text("DELETE FROM parent WHERE id = 1"))
    assert await read(engine, stmt) == []
    qc.detach()
    await engine.dispose()
