"""A failing tier never raises into the caller: killed Redis, open circuit, recovery."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import stratacache as sc


async def test_redis_killed_mid_test_serves_from_memory_and_loader(
    redis_factory: Callable[..., Any],
) -> None:
    """With its Redis killed, the cache answers from memory or the loader and raises nothing."""
    server = redis_factory()
    memory = sc.MemoryTier()
    cache = sc.Cache(
        tiers=[memory, sc.RedisTier(url=server.url, socket_timeout=0.2)],
        namespace="chaos",
        breaker_threshold=3,
    )
    async with cache:
        await cache.set("warm", "from-memory")
        server.stop()
        assert await cache.get("warm") == "from-memory"
        for i in range(5):
            assert await cache.get_or_set(f"cold{i}", lambda i=i: i * 10) == i * 10
        await cache.set("written", 1)
        assert await cache.get("written") == 1
        await cache.invalidate(keys=["warm"], tags=["t"], prefix="p")
        assert await cache.get("warm") is None
        stats = cache.stats()["tiers"]["redis"]
        assert stats["errors"] >= 3
        assert stats["circuit_open"] is True
        assert stats["skipped"] > 0


async def test_tier_comes_back_after_restart(redis_factory: Callable[..., Any]) -> None:
    """After the server restarts on the same port and the breaker cools down, Redis is used again."""
    server = redis_factory()
    redis_tier = sc.RedisTier(url=server.url, socket_timeout=0.2)
    cache = sc.Cache(tiers=[redis_tier], namespace="back", breaker_threshold=1, breaker_reset=0.05)
    async with cache:
        server.stop()
        assert await cache.get_or_set("k", lambda: "loaded") == "loaded"
        assert cache.stats()["tiers"]["redis"]["circuit_open"] is True
        server.start()
        value = None
        for _ in range(200):  # poll until the breaker lets a probe through and it succeeds
            await cache.set("k2", "stored")
            value = await cache.get("k2")
            if value == "stored":
                break
            await _tick()
        assert value == "stored"
        assert cache.stats()["tiers"]["redis"]["circuit_open"] is False


def test_sync_facade_survives_killed_redis(redis_factory: Callable[..., Any]) -> None:
    """The sync API also answers from memory/loader when Redis is down."""
    server = redis_factory()
    cache = sc.Cache(
        tiers=[sc.MemoryTier(), sc.RedisTier(url=server.url, socket_timeout=0.2)],
        namespace="chaos-sync",
    )
    with cache.sync as sync:
        sync.set("k", "v")
        server.stop()
        assert sync.get("k") == "v"
        assert sync.get_or_set("cold", lambda: 42) == 42
        assert cache.stats()["tiers"]["redis"]["errors"] >= 1


async def _tick() -> None:
    import asyncio

    await asyncio.sleep(0.01)
