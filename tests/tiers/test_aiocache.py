"""AiocacheTier specifics: async-only, unsupported prefix deletion, configuration errors."""

from __future__ import annotations

import asyncio
import uuid
from collections import UserDict
from typing import Any

import aiocache
import pytest
import redis

import stratacache as sc
from stratacache.core.clock import ManualClock
from stratacache.core.entry import Entry
from stratacache.core.errors import ConfigError, StratacacheError
from stratacache.core.tier import SyncTier, Tier, TierContext
from stratacache.tiers.aiocache import MEMCACHED_MAX_TTL, AiocacheTier


def test_is_an_async_only_tier() -> None:
    """The adapter implements Tier but not SyncTier."""
    tier = AiocacheTier(aiocache.SimpleMemoryCache())
    assert isinstance(tier, Tier) and not isinstance(tier, SyncTier)


def test_rejects_non_aiocache_objects() -> None:
    """Anything but an aiocache cache is a ConfigError."""
    with pytest.raises(ConfigError):
        AiocacheTier(object())


async def test_delete_prefix_unsupported_backend_is_clear_error() -> None:
    """A backend that cannot list its keys raises a StratacacheError naming it."""

    class Opaque(aiocache.SimpleMemoryCache):  # type: ignore[misc]
        """A backend whose store cannot be listed by the adapter."""

        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self._cache = UserDict()

    tier = AiocacheTier(Opaque())
    await tier.start(TierContext("shop"))
    with pytest.raises(StratacacheError, match="not supported"):
        await tier.delete_prefix("shop:")


@pytest.mark.parametrize("ttl", [None, 31 * 86_400, 2**31])
async def test_memcached_backends_expire_entries_within_30_days(ttl: float | None) -> None:
    """memcached reads an expiry above 30 days as a Unix time, so the tier sends at most 30 days."""

    class Memcached(aiocache.SimpleMemoryCache):  # type: ignore[misc]
        """Stands in for aiocache's memcached backend (only its NAME matters here)."""

        NAME = "memcached"

    clock = ManualClock()
    memcached, memory = (
        AiocacheTier(Memcached(), ttl=ttl),
        AiocacheTier(aiocache.SimpleMemoryCache()),
    )
    for tier in (memcached, memory):
        await tier.start(TierContext("shop", clock=clock))
    long = Entry("v", created=clock.time(), expires=clock.time() + 2**31)
    forever = Entry("v", created=clock.time())
    assert memcached._ttl(long) == MEMCACHED_MAX_TTL
    assert memcached._ttl(forever) == (0 if ttl is None else MEMCACHED_MAX_TTL)
    assert memory._ttl(long) == 2**31


def _aio_redis(redis_url: str) -> aiocache.RedisCache:
    url = redis.connection.parse_url(redis_url)
    return aiocache.RedisCache(endpoint=url["host"], port=url["port"], db=url["db"])


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_serves_sync_callers_and_any_event_loop(backend: str, redis_url: str) -> None:
    """After an event loop that used it has closed, cache.sync and new loops still read it."""
    client = aiocache.SimpleMemoryCache() if backend == "memory" else _aio_redis(redis_url)
    tier = AiocacheTier(client)
    cache = sc.Cache(tiers=[tier], namespace=f"aioloops-{uuid.uuid4().hex}", bus=False)

    async def write_and_read() -> Any:
        await cache.set("a", 1)
        return await cache.get("a")

    assert asyncio.run(write_and_read()) == 1  # this loop closes
    assert cache.sync.get("a") == 1
    cache.sync.set("b", 2)
    assert cache.sync.get("b") == 2

    async def read_again() -> Any:
        return await cache.get("b")

    assert asyncio.run(read_again()) == 2
    assert cache.stats()["tiers"][tier.name]["errors"] == 0
    cache.sync.close()


async def test_sync_callers_on_other_threads_share_the_running_loop_client(
    redis_url: str,
) -> None:
    """While an event loop uses the tier, cache.sync from worker threads reads it too."""
    tier = AiocacheTier(_aio_redis(redis_url))
    cache = sc.Cache(tiers=[tier], namespace=f"aiothreads-{uuid.uuid4().hex}", bus=False)
    async with cache:
        await cache.set("a", 1)
        got = await asyncio.gather(
            *(asyncio.to_thread(cache.sync.get, "a") for _ in range(4)), cache.get("a")
        )
        assert got == [1] * 5
        await asyncio.to_thread(cache.sync.set, "b", 2)
        assert await cache.get("b") == 2
    assert cache.stats()["tiers"][tier.name]["errors"] == 0
