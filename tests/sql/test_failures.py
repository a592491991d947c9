"""Failures never reach the caller as wrong rows: a dead tier, an unstorable value."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

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
