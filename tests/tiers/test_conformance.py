"""The tier conformance suite run on every tier: memory, Redis, SQL (SQLite, PostgreSQL), aiocache."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import aiocache
import pytest
import redis

from stratacache.core.clock import ManualClock
from stratacache.testing import TierConformance
from stratacache.tiers.aiocache import AiocacheTier
from stratacache.tiers.memory import MemoryTier
from stratacache.tiers.redis import RedisTier
from stratacache.tiers.sql import SQLTier


class TestMemoryTier(TierConformance):
    """The in-process LRU tier."""

    @pytest.fixture
    def tier(self) -> MemoryTier:
        return MemoryTier(maxsize=1000)

    @pytest.fixture
    def tier_twin(self) -> MemoryTier:
        return MemoryTier(maxsize=1000)


class TestRedisTier(TierConformance):
    """The Redis tier on a throwaway redis-server."""

    @pytest.fixture
    def raw_client(self, redis_url: str) -> Iterator[redis.Redis]:
        client = redis.Redis.from_url(redis_url)
        yield client
        client.close()

    @pytest.fixture
    def tier(self, redis_url: str) -> RedisTier:
        return RedisTier(redis_url, ttl=3600)

    @pytest.fixture
    def tier_twin(self, redis_url: str) -> RedisTier:
        return RedisTier(redis_url)

    @pytest.fixture
    def write_raw(self, raw_client: redis.Redis) -> Callable[[str, bytes], Any]:
        return raw_client.set

    @pytest.fixture
    def physical_ttl(self, raw_client: redis.Redis) -> Callable[[str], float | None]:
        def ttl(key: str) -> float | None:
            ms = int(raw_client.pttl(key))  # type: ignore[arg-type]
            return None if ms < 0 else ms / 1000

        return ttl


class _SQLConformance(TierConformance):
    """Hooks shared by the SQL tier on SQLite and PostgreSQL."""

    @pytest.fixture
    def tier(self, db_url: str) -> SQLTier:
        return SQLTier(db_url, ttl=3600, sweep_interval=0)

    @pytest.fixture
    def tier_twin(self, db_url: str) -> SQLTier:
        return SQLTier(db_url, sweep_interval=0)

    @pytest.fixture
    def write_raw(self, started: SQLTier) -> Callable[[str, bytes], Any]:
        def write(key: str, data: bytes) -> None:
            sql = f"INSERT INTO stratacache_entries (key, value) VALUES ({started.store.mark}, {started.store.mark})"
            with started.store.connection() as conn:
                conn.execute(sql, (key, data))

        return write

    @pytest.fixture
    def physical_ttl(self, started: SQLTier, clock: ManualClock) -> Callable[[str], float | None]:
        def ttl(key: str) -> float | None:
            sql = f"SELECT expires_at FROM stratacache_entries WHERE key = {started.store.mark}"
            with started.store.connection() as conn:
                row = conn.execute(sql, (key,)).fetchone()
            return None if row is None or row[0] is None else float(row[0]) - clock.time()

        return ttl


class TestSQLTierSQLite(_SQLConformance):
    """The SQL tier on a SQLite file."""

    @pytest.fixture
    def db_url(self, sqlite_url: str) -> str:
        return sqlite_url


class TestSQLTierPostgres(_SQLConformance):
    """The SQL tier on the local PostgreSQL."""

    @pytest.fixture
    def db_url(self, postgres_url: str) -> str:
        return postgres_url


class TestAiocacheMemoryTier(TierConformance):
    """The aiocache adapter on aiocache's in-process memory backend."""

    @pytest.fixture
    def tier(self) -> AiocacheTier:
        return AiocacheTier(aiocache.SimpleMemoryCache())

    @pytest.fixture
    def write_raw(self, started: AiocacheTier) -> Callable[[str, bytes], Any]:
        return started.cache.set


class TestAiocacheRedisTier(TierConformance):
    """The aiocache adapter on aiocache's Redis backend."""

    @pytest.fixture
    def aio_redis(self, redis_url: str) -> aiocache.RedisCache:
        url = redis.connection.parse_url(redis_url)
        return aiocache.RedisCache(endpoint=url["host"], port=url["port"], db=url["db"])

    @pytest.fixture
    def tier(self, aio_redis: aiocache.RedisCache) -> AiocacheTier:
        return AiocacheTier(aio_redis, ttl=3600)

    @pytest.fixture
    def tier_twin(self, redis_url: str) -> AiocacheTier:
        url = redis.connection.parse_url(redis_url)
        return AiocacheTier(
            aiocache.RedisCache(endpoint=url["host"], port=url["port"], db=url["db"])
        )

    @pytest.fixture
    def write_raw(self, started: AiocacheTier) -> Callable[[str, bytes], Any]:
        return started.cache.set

    @pytest.fixture
    def physical_ttl(self, redis_url: str) -> Iterator[Callable[[str], float | None]]:
        client = redis.Redis.from_url(redis_url)

        def ttl(key: str) -> float | None:
            ms = int(client.pttl(key))  # type: ignore[arg-type]
            return None if ms < 0 else ms / 1000

        yield ttl
        client.close()
