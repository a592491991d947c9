"""Invalidations survive outages: kept while Redis cannot take them, replayed in order after."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis

import stratacache as sc

from ..outage import hang, resume
from ..waiting import poll


@pytest.fixture
def server(pausable_redis: Any) -> Any:
    return pausable_redis


def _cache(url: str, namespace: str, **options: Any) -> sc.Cache:
    return sc.Cache(
        tiers=[sc.MemoryTier(), sc.RedisTier(url=url, socket_timeout=0.2)],
        namespace=namespace,
        breaker_threshold=50,  # keep Redis in use: the replay, not the breaker, is tested
        **options,
    )


@pytest.mark.parametrize("how", ["keys", "tags", "prefix"])
async def test_invalidation_during_a_hang_is_replayed_and_never_serves_the_old_value(
    server: Any, how: str
) -> None:
    """Redis hung during invalidate: kept; after SIGCONT Redis no longer has the old value."""
    namespace = "rp" + uuid.uuid4().hex[:6]
    raw = redis.Redis.from_url(server.url)
    cache = _cache(server.url, namespace, bus=False)
    async with cache:
        await cache.set("item:k", "v1", tags=["t"])
        hang(server)
        started = time.monotonic()
        if how == "keys":
            await cache.invalidate(keys=["item:k"])
        elif how == "tags":
            await cache.invalidate(tags=["t"])
        else:
            await cache.invalidate(prefix="item:")
        assert time.monotonic() - started < 3  # bounded by the socket timeouts
        assert cache.replay.active
        assert await cache.get_or_set("item:k", lambda: "v2", tags=["t"]) == "v2"
        resume(server)
        await poll(lambda: not cache.replay.active, timeout=5, what="replay done")
        assert cache.stats()["engine"]["invalidations_replayed"] == 1
        assert await cache.get("item:k", tags=["t"]) in (None, "v2")
        other = _cache(server.url, namespace, bus=False)
        async with other:
            assert await other.get("item:k", tags=["t"]) in (None, "v2")
    raw.close()


async def test_pending_invalidation_hides_the_old_value_redis_still_holds(
    server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis back but the replay not yet run: the old value in Redis is a miss, not served."""
    from stratacache.engine import replay

    monkeypatch.setattr(replay, "REPLAY_INTERVAL", 60.0)
    cache = _cache(server.url, "rp" + uuid.uuid4().hex[:6], bus=False)
    async with cache:
        await cache.set("k", "old")
        hang(server)
        await cache.invalidate(keys=["k"])
        resume(server)
        assert cache.replay.active
        assert await cache.get("k") is None  # Redis still has "old"
        assert cache.sync.get("k") is None


async def test_replay_keeps_order_and_publishes_on_the_bus(server: Any) -> None:
    """Several kept invalidations are replayed in order, and other processes get them."""
    namespace = "rp" + uuid.uuid4().hex[:6]
    one, two = _cache(server.url, namespace), _cache(server.url, namespace)
    async with one, two:
        for i in range(3):
            await one.set(f"k{i}", i)
            assert await two.get(f"k{i}") == i  # now in two's memory tier
        hang(server)
        for i in range(3):
            await one.invalidate(keys=[f"k{i}"])
        assert [m.keys for m in one.replay.pending] == [(one.full_key(f"k{i}"),) for i in range(3)]
        resume(server)
        await poll(lambda: not one.replay.active, timeout=5, what="replay done")
        await poll(lambda: two.tiers.local_trusted, timeout=5, what="two's bus back")
        for i in range(3):
            assert await two.get(f"k{i}") is None


async def test_overflow_flushes_the_namespace_generation(server: Any) -> None:
    """More pending invalidations than the bound: the namespace moves to a new generation."""
    namespace = "rp" + uuid.uuid4().hex[:6]
    cache = _cache(server.url, namespace)
    async with cache:
        cache.replay.limit = 2
        await cache.set("a", 1)
        hang(server)
        for key in ("x", "y", "z"):
            await cache.invalidate(keys=[key])
        assert cache.replay.overflowed_at and not cache.replay.pending
        assert await cache.get("a") is None  # older than the overflow: hidden
        resume(server)
        await poll(lambda: not cache.replay.active, timeout=5, what="flush done")
        assert cache.invalidator.generation >= 1
        assert cache.stats()["engine"]["invalidation_overflows"] == 1


@pytest.mark.parametrize("flavor", ["async", "sync"])
async def test_an_overwrite_redis_refused_never_leaves_the_old_value_served(
    server: Any, flavor: str
) -> None:
    """Redis full (noeviction) refuses set(new): the old value is deleted once it can be,
    and neither process serves it meanwhile."""
    namespace = "full" + uuid.uuid4().hex[:8]
    writer, reader = _cache(server.url, namespace), _cache(server.url, namespace)
    raw = redis.Redis.from_url(server.url)
    async with writer, reader:
        await writer.set("price", 10)
        assert await reader.get("price") == 10
        raw.config_set("maxmemory", "1")  # every write is refused from now on
        try:
            if flavor == "sync":
                writer.sync.set("price", 12)
            else:
                await writer.set("price", 12)
            assert await writer.get("price") != 10
        finally:
            raw.config_set("maxmemory", "0")
        await poll(lambda: writer.replay.active is False, what="the deletion replayed")
        assert await reader.get("price") != 10 and await writer.get("price") != 10
    raw.close()
