"""Session reads: Core SELECTs served before any checkout, ORM objects attached and never stale."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from tests.sql.models import Category, ExecutionCounter, Product, seed

import stratacache as sc
from stratacache.sql import QueryCache
from stratacache.sql.fastpath import CachedResult

products = Product.__table__
PRICES = (
    sa.select(products.c.id, products.c.price)
    .order_by(products.c.id)
    .execution_options(stratacache=True)
)


class Checkouts:
    """Counts connections checked out of an engine's pool."""

    def __init__(self, engine: sa.Engine) -> None:
        self.count = 0
        sa.event.listen(engine.pool, "checkout", self._seen)

    def _seen(self, *args: Any) -> None:
        self.count += 1


@pytest.fixture
def checkouts(engine: sa.Engine) -> Checkouts:
    """Pool checkouts of the test engine."""
    return Checkouts(engine)


def test_a_repeated_core_select_in_a_session_needs_no_connection(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter, checkouts: Checkouts
) -> None:
    """The third execution is answered before the Session checks out a connection."""
    with Session(engine) as session:
        first = session.execute(PRICES).all()
    with Session(engine) as session:
        session.execute(PRICES).all()  # served from the cache; teaches the shortcut
    before = (counter.count, checkouts.count)
    with Session(engine) as session:
        result = session.execute(PRICES)
        assert isinstance(result, CachedResult)
        assert result.all() == first
        assert session.scalars(PRICES).all() == [row.id for row in first]
        assert session.scalar(PRICES) == first[0].id
        assert session.execute(PRICES).mappings().first() == {"id": 1, "price": 30}
    assert (counter.count, checkouts.count) == before
    assert qc.stats()["tables"]["products"]["hits"] >= 5


def test_a_session_reads_its_own_flushed_and_pending_writes(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter
) -> None:
    """Pending ORM changes (autoflush) and Core writes of the session's transaction are read back."""
    with Session(engine) as session:
        session.execute(PRICES).all()
        session.execute(PRICES).all()
    with Session(engine) as session:
        session.get_one(Product, 1).price = 99  # pending (SQLAlchemy 2.1 autoflushes it first)
        cached = session.execute(PRICES).all()
        assert cached == session.execute(PRICES.execution_options(stratacache=False)).all()
        session.flush()
        assert session.execute(PRICES).all()[0].price == 99
        session.execute(sa.update(Product).where(Product.id == 2).values(price=77))
        assert [row.price for row in session.execute(PRICES)][:2] == [99, 77]
        session.rollback()
        assert session.execute(PRICES).all()[0].price == 30  # the rollback kept the cached rows
    with Session(engine) as session:
        _, sent = counter.delta(lambda: session.execute(PRICES).all())
        assert sent == 0


def test_a_committed_session_write_refreshes_the_next_session_read(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter
) -> None:
    """After a commit the shortcut's entry is gone: the next read goes to the database once."""
    with Session(engine) as session:
        session.execute(PRICES).all()
        session.execute(PRICES).all()
    with Session(engine) as session:
        session.get_one(Product, 3).price = 5
        session.commit()
    with Session(engine) as session:
        rows, sent = counter.delta(lambda: session.execute(PRICES).all())
    assert sent == 1 and rows[2].price == 5


def test_a_savepoint_write_is_read_back_and_its_rollback_changes_nothing_cached(
    engine: sa.Engine, qc: QueryCache
) -> None:
    """Inside a savepoint the session reads its write; after rolling back, the cache is intact."""
    with Session(engine) as session:
        session.execute(PRICES).all()
        session.execute(PRICES).all()
        nested = session.begin_nested()
        session.execute(sa.update(Product).where(Product.id == 1).values(price=1))
        assert session.execute(PRICES).all()[0].price == 1
        nested.rollback()
        assert session.execute(PRICES).all()[0].price == 30
        session.rollback()
    with Session(engine) as session:
        assert session.execute(PRICES).all()[0].price == 30


def test_a_session_at_repeatable_read_is_not_served(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter
) -> None:
    """A session whose connection runs at REPEATABLE READ reads the database (its snapshot)."""
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite reads open no snapshot: every level may use the cache")
    with Session(engine) as session:
        session.execute(PRICES).all()
        session.execute(PRICES).all()
    with Session(engine) as session:
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        _, sent = counter.delta(lambda: session.execute(PRICES).all())
    assert sent == 1


def test_orm_objects_from_the_cache_are_attached_lazy_load_and_are_never_stale(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter
) -> None:
    """Cached ORM rows become objects of the caller's session: identity, lazy loads, fresh values."""
    stmt = sa.select(Product).order_by(Product.id).execution_options(stratacache=True)
    with Session(engine) as session:
        session.scalars(stmt).all()
    with Session(engine) as session:
        products_, sent = counter.delta(lambda: session.scalars(stmt).all())
        assert sent == 0
        assert products_[0] is session.get(Product, 1)  # the identity map holds them
        assert products_[0].category.name == "books"  # a lazy load through the session
        products_[0].price = 42
        session.commit()  # expires them: the next access reloads
        assert products_[0].price == 42
        again = session.scalars(stmt).all()
        assert again[0] is products_[0] and again[0].price == 42
    with Session(engine) as other:
        other.get_one(Category, 1).name = "reading"
        other.commit()
    with Session(engine) as session:
        fresh = session.scalars(stmt).all()
        assert fresh[0].price == 42 and fresh[0].category.name == "reading"


def test_detach_stops_serving_sessions(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter
) -> None:
    """After detach() every Session read reaches the database."""
    with Session(engine) as session:
        session.execute(PRICES).all()
        session.execute(PRICES).all()
    qc.detach()
    with Session(engine) as session:
        result, sent = counter.delta(lambda: session.execute(PRICES))
    assert sent == 1 and not isinstance(result, CachedResult)


@pytest.fixture
async def apg(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    """A seeded psycopg async engine on a private schema."""
    engine = create_async_engine(postgres_url)
    async with engine.begin() as conn:
        await conn.run_sync(seed)
    yield engine
    await engine.dispose()


@pytest.fixture
async def aqc_pg(apg: AsyncEngine) -> AsyncIterator[QueryCache]:
    """A query cache on the async engine, detached after the test."""
    cache = sc.Cache([sc.MemoryTier()], namespace="qcs")
    query_cache = QueryCache(cache, apg)
    yield query_cache
    query_cache.detach()
    await cache.close()


async def test_async_sessions_are_served_alike(apg: AsyncEngine, aqc_pg: QueryCache) -> None:
    """AsyncSession: hits need no connection, its own writes are read back, commits refresh."""
    counter = ExecutionCounter(apg.sync_engine)
    checkouts = Checkouts(apg.sync_engine)
    async with AsyncSession(apg) as session:
        first = (await session.execute(PRICES)).all()
        await session.execute(PRICES)
    before = (counter.count, checkouts.count)
    async with AsyncSession(apg) as session:
        result = await session.execute(PRICES)
        assert isinstance(result, CachedResult) and result.all() == first
        assert (counter.count, checkouts.count) == before
        await session.execute(sa.update(Product).where(Product.id == 1).values(price=11))
        assert (await session.execute(PRICES)).all()[0].price == 11
        await session.commit()
    async with AsyncSession(apg) as session:
        assert (await session.execute(PRICES)).all()[0].price == 11
        products_ = (
            await session.scalars(sa.select(Product).execution_options(stratacache=True))
        ).all()
        assert all(p in session for p in products_)


def test_a_later_do_orm_execute_listener_still_sees_every_statement(
    engine: sa.Engine, qc: QueryCache
) -> None:
    """A listener registered after the query cache's (here: one filtering rows) is never skipped."""
    with Session(engine) as session:
        session.execute(PRICES).all()
        session.execute(PRICES).all()

    def only_cheap(state: Any) -> None:
        if state.is_select and not state.is_orm_statement:
            state.statement = state.statement.where(products.c.price < 20)

    sa.event.listen(Session, "do_orm_execute", only_cheap)
    try:
        with Session(engine) as session:
            assert [row.id for row in session.execute(PRICES)] == [2, 3]
    finally:
        sa.event.remove(Session, "do_orm_execute", only_cheap)
    with Session(engine) as session:
        assert isinstance(session.execute(PRICES), CachedResult)


def test_a_session_connection_translating_schemas_is_not_served(
    engine: sa.Engine, qc: QueryCache
) -> None:
    """Options set on the session's connection (a schema_translate_map) are honoured."""
    with Session(engine) as session:
        session.execute(PRICES).all()
        session.execute(PRICES).all()
    with Session(engine) as session:
        session.connection(execution_options={"schema_translate_map": {None: "nowhere"}})
        with pytest.raises(sa.exc.DBAPIError):
            session.execute(PRICES).all()


def test_a_session_whose_connection_opts_out_is_not_answered_from_the_cache(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter
) -> None:
    """Connection options override the statement's, as SQLAlchemy merges them."""
    stmt = sa.select(Product.__table__.c.name).execution_options(stratacache=True)
    for _ in range(3):
        with Session(engine) as session:
            session.execute(stmt).all()
    with Session(engine) as session:
        session.connection(execution_options={"stratacache": False})
        assert counter.delta(lambda: session.execute(stmt).all())[1] == 1
