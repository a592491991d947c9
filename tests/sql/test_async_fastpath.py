"""Hits served before the greenlet: ``AsyncConnection.execute`` and ``AsyncSession.execute``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
import sqlalchemy.ext.asyncio.session
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from tests.sql.models import ExecutionCounter, Product, seed

import stratacache as sc
from stratacache.sql import QueryCache
from stratacache.sql.fastpath import CachedResult

products = Product.__table__
PRICES = (
    sa.select(products.c.id, products.c.price)
    .order_by(products.c.id)
    .execution_options(stratacache=True)
)


@pytest.fixture(params=["postgresql+psycopg", "sqlite+aiosqlite"])
async def aengine(request: pytest.FixtureRequest) -> AsyncIterator[AsyncEngine]:
    """A seeded async engine on a private PostgreSQL schema or SQLite file."""
    if request.param.startswith("sqlite"):
        url = str(request.getfixturevalue("sqlite_url")).replace("sqlite:", "sqlite+aiosqlite:", 1)
    else:
        url = str(request.getfixturevalue("postgres_url"))
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(seed)
    yield engine
    await engine.dispose()


@pytest.fixture
async def aqc(aengine: AsyncEngine) -> AsyncIterator[QueryCache]:
    """A query cache on the async engine, detached after the test."""
    cache = sc.Cache([sc.MemoryTier()], namespace="qcaf")
    query_cache = QueryCache(cache, aengine)
    yield query_cache
    query_cache.detach()
    await cache.close()


class SyncCalls:
    """Counts the sync ``Session.execute`` and ``Connection.execute`` calls (the greenlet's work)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        for cls in (Session, Connection):
            monkeypatch.setattr(cls, "execute", self._counting(cls.execute))

    def _counting(self, original: Any) -> Any:
        def execute(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(*args, **kwargs)

        return execute


async def teach(engine: AsyncEngine) -> list[Any]:
    """Execute PRICES twice (stored, then served and learned by the fast path); its rows."""
    async with engine.connect() as conn:
        rows = (await conn.execute(PRICES)).all()
        await conn.execute(PRICES)
    return rows


async def test_a_known_select_on_an_async_connection_skips_the_greenlet(
    aengine: AsyncEngine, aqc: QueryCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hit is answered by ``AsyncConnection.execute`` itself and begins the transaction."""
    rows = await teach(aengine)
    calls = SyncCalls(monkeypatch)
    async with aengine.connect() as conn:
        result = await conn.execute(PRICES)
        assert isinstance(result, CachedResult) and result.all() == rows
        assert conn.in_transaction()  # as an executed statement would have begun it
        assert (await conn.scalars(PRICES)).all() == [row.id for row in rows]
    assert calls.count == 0


async def test_an_async_connection_reads_its_own_writes(
    aengine: AsyncEngine, aqc: QueryCache
) -> None:
    """After a write on the connection the read goes the careful way and sees it."""
    await teach(aengine)
    counter = ExecutionCounter(aengine.sync_engine)
    async with aengine.connect() as conn:
        await conn.execute(sa.update(products).where(products.c.id == 1).values(price=42))
        before = counter.count
        assert (await conn.execute(PRICES)).all()[0].price == 42
        assert counter.count == before + 1
        await conn.rollback()
        assert (await conn.execute(PRICES)).all()[0].price != 42


async def test_a_known_select_in_an_async_session_skips_the_greenlet(
    aengine: AsyncEngine, aqc: QueryCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh ``AsyncSession`` is answered before ``Session.execute``, begins nothing, closes alone."""
    rows = await teach(aengine)
    calls = SyncCalls(monkeypatch)
    spawned: list[Any] = []
    original_spawn = sqlalchemy.ext.asyncio.session.greenlet_spawn

    async def spawn(fn: Any, *args: Any, **kwargs: Any) -> Any:
        spawned.append(fn)
        return await original_spawn(fn, *args, **kwargs)

    monkeypatch.setattr(sqlalchemy.ext.asyncio.session, "greenlet_spawn", spawn)
    async with AsyncSession(aengine) as session:
        result = await session.execute(PRICES)
        assert isinstance(result, CachedResult) and result.all() == rows
        assert (await session.scalars(PRICES)).all() == [row.id for row in rows]
        assert not session.in_transaction()
    assert (calls.count, spawned) == (0, [])
    session = AsyncSession(aengine)
    await session.execute(PRICES)
    await session.close()
    assert spawned == []


async def test_a_served_session_holding_objects_closes_as_usual(
    aengine: AsyncEngine, aqc: QueryCache
) -> None:
    """Objects added after a served read are expunged by the ordinary close."""
    await teach(aengine)
    async with AsyncSession(aengine) as session:
        assert isinstance(await session.execute(PRICES), CachedResult)
        quill = Product(id=99, name="quill", price=3, category_id=1)
        session.add(quill)
    assert sa.inspect(quill).detached or sa.inspect(quill).transient
    assert quill not in session


@pytest.mark.parametrize("case", ["transaction", "pending", "orm", "params", "listener"])
async def test_an_async_session_defers_to_the_greenlet_when_unsure(
    aengine: AsyncEngine, aqc: QueryCache, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """A transaction, pending objects, ORM entities, parameters or a listener: Session.execute runs."""
    await teach(aengine)
    seen: list[Any] = []
    if case == "listener":
        listener = lambda state: seen.append(state.statement)  # noqa: E731
        sa.event.listen(Session, "do_orm_execute", listener)
    calls = SyncCalls(monkeypatch)
    try:
        async with AsyncSession(aengine) as session:
            stmt: Any = PRICES
            if case == "transaction":
                await session.execute(sa.select(sa.literal(1)))
            elif case == "pending":
                session.add(Product(id=99, name="quill", price=3, category_id=1))
            elif case == "orm":
                stmt = sa.select(Product).order_by(Product.id).execution_options(stratacache=True)
            elif case == "params":
                stmt = sa.select(products.c.id).where(products.c.id == sa.bindparam("wanted"))
            before = calls.count
            result = await session.execute(stmt, {"wanted": 1} if case == "params" else None)
            assert result.all()
            assert calls.count > before  # Session.execute ran (and what it executes)
            if case == "pending":
                assert 99 in [row.id for row in (await session.execute(PRICES)).all()]
    finally:
        if case == "listener":
            sa.event.remove(Session, "do_orm_execute", listener)
    assert seen == ([PRICES] if case == "listener" else [])


async def test_detach_stops_the_async_fast_paths(aengine: AsyncEngine, aqc: QueryCache) -> None:
    """Once detached, neither an AsyncConnection nor an AsyncSession is served from the cache."""
    await teach(aengine)
    aqc.detach()
    async with aengine.connect() as conn:
        assert not isinstance(await conn.execute(PRICES), CachedResult)
    async with AsyncSession(aengine) as session:
        assert not isinstance(await session.execute(PRICES), CachedResult)


BY_PK = (
    sa.select(products.c.name, products.c.price)
    .where(products.c.id == sa.bindparam("pk"))
    .execution_options(stratacache=True)
)


async def test_parameters_are_served_before_the_greenlet_by_exact_value(
    aengine: AsyncEngine, aqc: QueryCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``conn.execute``, ``session.execute`` and ``qc.aexecute`` with ``{"pk": n}`` hit per value."""
    async with aengine.connect() as conn:
        expected = {pk: (await conn.execute(BY_PK, {"pk": pk})).all() for pk in (1, 2)}
        for pk in (1, 2):
            await conn.execute(BY_PK, {"pk": pk})
    calls = SyncCalls(monkeypatch)
    async with aengine.connect() as conn:
        for pk in (2, 1):
            result = await conn.execute(BY_PK, {"pk": pk})
            assert isinstance(result, CachedResult) and result.all() == expected[pk]
    async with AsyncSession(aengine) as session:
        result = await session.execute(BY_PK, {"pk": 1})
        assert isinstance(result, CachedResult) and result.all() == expected[1]
    hit = await aqc.aexecute(BY_PK, {"pk": 2})
    assert isinstance(hit, CachedResult) and hit.all() == expected[2]
    assert calls.count == 0
    async with aengine.begin() as conn:
        await conn.execute(sa.update(products).where(products.c.id == 1).values(price=91))
    assert (await aqc.aexecute(BY_PK, {"pk": 1})).one().price == 91
    assert (await aqc.aexecute(BY_PK, {"pk": 2})).all() == expected[2]


async def test_a_begin_listener_that_runs_sql_works_on_a_fast_hit(
    aengine: AsyncEngine, aqc: QueryCache
) -> None:
    """A hit that must begin the transaction runs "begin" listeners inside the greenlet, as
    the sync engine does (they may run SQL)."""
    rows = await teach(aengine)
    began: list[object] = []

    @sa.event.listens_for(aengine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        began.append(conn.exec_driver_sql("SELECT 1").scalar())

    try:
        async with aengine.connect() as conn:
            assert (await conn.execute(PRICES)).all() == rows
        assert began == [1]
    finally:
        sa.event.remove(aengine.sync_engine, "begin", on_begin)
