"""Failures never reach the caller as wrong rows: a dead tier, an unstorable value."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from tests.conftest import free_port
from tests.sql.models import CACHED, ExecutionCounter

import stratacache as sc
from stratacache.sql import QueryCache


@pytest.fixture
def dead_redis_cache() -> Iterator[sc.Cache]:
    """A cache whose Redis tier points at a port nothing listens on."""
    tier = sc.RedisTier(
        url=f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.2, socket_connect_timeout=0.2
    )
    cache = sc.Cache([sc.MemoryTier(), tier], namespace="qcdead")
    yield cache
    cache.sync.close()


def test_a_failing_tier_never_fails_a_query(
    engine: sa.Engine, dead_redis_cache: sc.Cache, counter: ExecutionCounter
) -> None:
    """With the Redis tier down, reads still return the database's rows and writes still commit."""
    qc = QueryCache(dead_redis_cache, engine)
    with engine.connect() as conn:
        assert list(conn.execute(CACHED).scalars()) == ["atlas", "novel", "kite"]
        assert list(conn.execute(CACHED).scalars()) == ["atlas", "novel", "kite"]
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE products SET name = 'yoyo' WHERE id = 3"))
    with engine.connect() as conn:
        assert list(conn.execute(CACHED).scalars()) == ["atlas", "novel", "yoyo"]
    qc.detach()


def test_an_unstorable_result_is_returned_and_not_cached(
    postgres_url: str, cache: sc.Cache
) -> None:
    """A value the serializer refuses (an inet address) is served from the database every time."""
    engine = sa.create_engine(postgres_url)
    counter = ExecutionCounter(engine)
    qc = QueryCache(cache, engine, cache_all=True)
    stmt = sa.text("SELECT CAST('10.0.0.1' AS inet) AS address")
    with engine.connect() as conn:
        for _ in range(2):
            value, sent = counter.delta(lambda: conn.execute(stmt).scalar_one())
            assert (value, sent) == (ipaddress.ip_address("10.0.0.1"), 1)
    assert qc.stats()["uncached"]["unstorable result"] == 2
    qc.detach()
    engine.dispose()


def test_a_query_that_fails_in_the_database_raises_its_own_error(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter
) -> None:
    """A cacheable SELECT the database rejects raises that error once (not a second attempt's)."""
    stmt = sa.select(sa.cast(sa.bindparam("p", type_=sa.String), sa.Integer) / 0)
    stmt = stmt.execution_options(stratacache=True)
    outcomes: list[Any] = []  # PostgreSQL: division by zero; SQLite: NULL
    for options in ({"stratacache": False}, {}):
        with engine.connect() as conn:
            before = counter.count
            try:
                outcomes.append(conn.execute(stmt.execution_options(**options), {"p": "7"}).all())
            except sa.exc.DBAPIError as exc:
                outcomes.append((type(exc.orig), counter.count - before))
    assert outcomes[0] == outcomes[1]


async def test_a_failing_async_query_raises_its_own_error(postgres_url: str) -> None:
    """The same on an AsyncEngine (asyncpg): the database's error, not an aborted transaction."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(postgres_url.split("?")[0].replace("+psycopg", "+asyncpg", 1))
    cache = sc.Cache([sc.MemoryTier()], namespace="qcfail")
    qc = QueryCache(cache, engine)
    stmt = sa.select(sa.cast(sa.bindparam("p", type_=sa.String), sa.Integer))
    try:
        messages = []
        for cached in (False, True):
            async with engine.connect() as conn:
                with pytest.raises(sa.exc.DBAPIError) as caught:
                    await conn.execute(stmt.execution_options(stratacache=cached), {"p": "abc"})
                messages.append(str(caught.value.orig).splitlines()[0])
        assert messages[0] == messages[1]
    finally:
        qc.detach()
        await engine.dispose()
        await cache.close()
