"""Isolation levels that forbid caching, per-table stats and the Prometheus collector."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from tests.sql.models import CACHED, ExecutionCounter, seed

import stratacache as sc
from stratacache.sql import QueryCache, QueryCacheCollector


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[sa.Engine]:
    """A seeded sync engine on a private PostgreSQL schema."""
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        seed(conn)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("level", ["REPEATABLE READ", "SERIALIZABLE"])
def test_snapshot_isolation_levels_bypass_the_cache(
    pg_engine: sa.Engine, cache: sc.Cache, level: str
) -> None:
    """At REPEATABLE READ or SERIALIZABLE a read is neither served from nor stored in the cache."""
    counter = ExecutionCounter(pg_engine)
    qc = QueryCache(cache, pg_engine)
    with pg_engine.connect() as conn:
        conn.execute(CACHED).all()  # READ COMMITTED: cached
    with pg_engine.connect().execution_options(isolation_level=level) as conn:
        before = counter.count
        conn.execute(CACHED).all()
        conn.execute(CACHED).all()
        assert counter.count - before == 2
    assert qc.stats()["uncached"] == {"isolation level": 2}
    qc.detach()


def test_an_engine_wide_snapshot_level_bypasses_too(postgres_url: str, cache: sc.Cache) -> None:
    """An engine created at REPEATABLE READ never caches (unless the level is allowed)."""
    engine = sa.create_engine(postgres_url, isolation_level="REPEATABLE READ")
    with engine.begin() as conn:
        seed(conn)
    counter = ExecutionCounter(engine)
    qc = QueryCache(cache, engine)
    with engine.connect() as conn:
        assert (
            counter.delta(lambda: (conn.execute(CACHED).all(), conn.execute(CACHED).all()))[1] == 2
        )
    qc = QueryCache(cache, engine, isolation_levels=["REPEATABLE READ"])
    with engine.connect() as conn:
        assert (
            counter.delta(lambda: (conn.execute(CACHED).all(), conn.execute(CACHED).all()))[1] == 1
        )
    qc.detach()
    engine.dispose()


def test_stats_count_hits_misses_rows_and_invalidations_per_table(
    engine: sa.Engine, qc: QueryCache
) -> None:
    """``stats()`` reports per table: hits, misses, rows served, invalidations, hit rate."""
    with engine.connect() as conn:
        for _ in range(3):
            conn.execute(CACHED).all()
    with engine.begin() as conn:
        conn.execute(sa.update(sa.table("products", sa.column("name"))).values(name="x"))
    products = qc.stats()["tables"]["products"]
    assert (products["hits"], products["misses"], products["rows_served"]) == (2, 1, 6)
    assert products["invalidations"] == 1
    assert products["hit_rate"] == pytest.approx(2 / 3)
    assert qc.stats()["database"] == qc.database_id


def test_prometheus_collector_exposes_the_per_table_counters(
    engine: sa.Engine, qc: QueryCache
) -> None:
    """The collector exports each counter with database and table labels at scrape time."""
    registry = CollectorRegistry()
    registry.register(QueryCacheCollector(qc))
    with engine.connect() as conn:
        conn.execute(CACHED).all()
        conn.execute(CACHED).all()
    text = generate_latest(registry).decode()
    labels = f'database="{qc.database_id}",table="products"'
    assert f"stratacache_sql_hits_total{{{labels}}} 1.0" in text
    assert f"stratacache_sql_misses_total{{{labels}}} 1.0" in text
    assert f"stratacache_sql_rows_served_total{{{labels}}} 3.0" in text


def test_two_engines_on_one_database_give_one_series_per_table(
    engine: sa.Engine, qc: QueryCache, db_url: str
) -> None:
    """Two query caches of one database are summed: one sample per label set, never two."""
    other_engine = sa.create_engine(db_url)
    other_cache = sc.Cache([sc.MemoryTier()], namespace="qc-other")
    other = QueryCache(other_cache, other_engine)
    try:
        assert other.database_id == qc.database_id
        registry = CollectorRegistry()
        registry.register(QueryCacheCollector(qc, other))
        for each in (engine, other_engine, other_engine):
            with each.connect() as conn:
                conn.execute(CACHED).all()
        text = generate_latest(registry).decode()
        labels = f'database="{qc.database_id}",table="products"'
        misses = [line for line in text.splitlines() if line.startswith("stratacache_sql_misses")]
        assert misses == [f"stratacache_sql_misses_total{{{labels}}} 2.0"]
        assert f"stratacache_sql_hits_total{{{labels}}} 1.0" in text
    finally:
        other.detach()
        other_engine.dispose()
        other_cache.sync.close()


def test_table_tags_are_what_the_cli_and_admin_api_invalidate(
    engine: sa.Engine, qc: QueryCache, cache: sc.Cache, counter: ExecutionCounter
) -> None:
    """Invalidating ``qc.table_tags(name)`` through the cache refreshes that table's results."""
    with engine.connect() as conn:
        conn.execute(CACHED).all()
    cache.sync.invalidate(tags=qc.table_tags("Products"))
    with engine.connect() as conn:
        assert counter.delta(lambda: conn.execute(CACHED).all())[1] == 1


@pytest.mark.parametrize(
    "change",
    ['SET search_path TO "{schema}"', "SELECT set_config('search_path', '\"{schema}\"', false)"],
    ids=["set", "set_config"],
)
def test_a_connection_that_changed_its_search_path_never_shares_results(
    pg_engine: sa.Engine, cache: sc.Cache, change: str
) -> None:
    """After ``SET search_path`` (or ``set_config``) on a connection, its reads bypass the
    cache and see its own schema."""
    other = f"sc_other_{uuid.uuid4().hex[:10]}"
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{other}"'))
        conn.execute(sa.text(f'CREATE TABLE "{other}".products (id int PRIMARY KEY, name text)'))
        conn.execute(sa.text(f"INSERT INTO \"{other}\".products VALUES (1, 'elsewhere')"))
    qc = QueryCache(cache, pg_engine)
    try:
        with pg_engine.connect() as conn:
            assert conn.execute(CACHED).scalars().all() == ["atlas", "novel", "kite"]
        with pg_engine.connect() as conn:
            conn.execute(sa.text(change.format(schema=other)))
            conn.commit()
            assert conn.execute(CACHED).scalars().all() == ["elsewhere"]
            assert conn.execute(CACHED).scalars().all() == ["elsewhere"]
            conn.execute(sa.text("RESET search_path"))
        assert qc.stats()["uncached"]["session state"] == 2
    finally:
        qc.detach()
        pg_engine.dispose()  # the marked connection goes with its pool
        with pg_engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{other}" CASCADE'))


def test_a_connection_with_a_temporary_table_never_shares_its_results(
    engine: sa.Engine, cache: sc.Cache
) -> None:
    """A temporary table shadowing ``products`` on one connection: its reads are its own,
    and another connection is never served them."""
    qc = QueryCache(cache, engine)
    try:
        with engine.connect() as mine:
            mine.execute(sa.text("CREATE TEMPORARY TABLE products (id int, name text)"))
            mine.execute(sa.text("INSERT INTO products VALUES (1, 'private')"))
            mine.commit()
            assert mine.execute(CACHED).scalars().all() == ["private"]
            assert mine.execute(CACHED).scalars().all() == ["private"]
            mine.commit()
            with engine.connect() as other:  # no temporary table here
                assert other.execute(CACHED).scalars().all() == ["atlas", "novel", "kite"]
            mine.invalidate()  # the marked connection (and its table) leaves the pool
    finally:
        qc.detach()
