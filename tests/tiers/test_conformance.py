"""The tier conformance suite run on every tier: memory, Redis, SQL (SQLite, PostgreSQL), aiocache."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from stratacache.testing import TierConformance
from stratacache.tiers.memory import MemoryTier
from stratacache.tiers.redis import RedisTier


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
