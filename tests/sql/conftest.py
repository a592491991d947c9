"""Fixtures of the query cache tests: a seeded database (SQLite file or PostgreSQL schema)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from tests.sql.models import ExecutionCounter, seed

import stratacache as sc
from stratacache.sql import QueryCache


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A private database: a SQLite file or a PostgreSQL schema."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    """A sync engine on a seeded database."""
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        seed(conn)
    yield engine
    engine.dispose()


@pytest.fixture
def counter(engine: sa.Engine) -> ExecutionCounter:
    """Counts the statements that reach the driver."""
    return ExecutionCounter(engine)


@pytest.fixture
def cache() -> Iterator[sc.Cache]:
    """A memory-only cache."""
    cache = sc.Cache([sc.MemoryTier()], namespace="qc")
    yield cache
    cache.sync.close()


@pytest.fixture
def qc(cache: sc.Cache, engine: sa.Engine, counter: ExecutionCounter) -> Iterator[QueryCache]:
    """A query cache on ``engine`` (attached after the counter, so it counts real executions)."""
    query_cache = QueryCache(cache, engine)
    yield query_cache
    query_cache.detach()
