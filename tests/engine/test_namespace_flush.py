"""O(1) namespace flush: a generation bump outdates every entry in every tier and process."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from tests.waiting import poll

import stratacache as sc
from stratacache.fleet.bus import RedisBus


def stacked(redis_url: str, namespace: str, bus: bool = True) -> sc.Cache:
    return sc.Cache(
        tiers=[sc.MemoryTier(maxsize=1000), sc.RedisTier(url=redis_url)],
        namespace=namespace,
        bus=RedisBus(redis_url) if bus else False,
    )


async def test_flush_outdates_everything_in_memory_only_cache() -> None:
    """Without shared tiers the generation is local: every entry and decorator memo is outdated."""
    cache = sc.Cache(tiers=[sc.MemoryTier()], namespace="fl")
    calls: list[int] = []

    @cache.cached(key="sq:{n}")
    async def square(n: int) -> int:
        calls.append(n)
        return n * n

    async with cache:
        await cache.set("a", 1)
        assert await square(3) == 9 and await square(3) == 9
        assert await cache.flush_namespace() == 1
        assert await cache.get("a") is None
        assert await square(3) == 9
        assert calls == [3, 3]


async def test_flush_does_not_touch_old_keys(redis_factory: Callable[..., Any]) -> None:
    """The flush neither scans nor deletes: old entries stay in Redis but are never read again
    (on a server of the test's own: command counts see no other test's clients)."""
    redis_url = redis_factory().url
    namespace = "fl" + uuid.uuid4().hex[:6]
    client = redis.Redis.from_url(redis_url)
    async with stacked(redis_url, namespace) as cache:
        await cache.set_many({f"k{i}": i for i in range(50)})
        before = set(client.keys(f"{namespace}:*"))
        stats = client.info("commandstats")
        await cache.flush_namespace()
        after_stats = client.info("commandstats")
        assert set(client.keys(f"{namespace}:*")) == before
        for command in ("cmdstat_scan", "cmdstat_unlink", "cmdstat_del"):
            assert stats.get(command) == after_stats.get(command), command
        assert await cache.get_many([f"k{i}" for i in range(50)]) == {}
        await cache.set("k1", "new")
        assert await cache.get("k1") == "new"
    client.close()


async def test_other_processes_follow_the_flush(redis_url: str) -> None:
    """Another cache moves to the new generation via the bus and stops serving old entries."""
    namespace = "fl" + uuid.uuid4().hex[:6]
    one, two = stacked(redis_url, namespace), stacked(redis_url, namespace)
    async with one, two:
        await two.set("k", "old")
        await one.flush_namespace(reason="deploy")
        await poll(lambda: two.invalidator.generation == 1)
        assert await two.get("k") is None
        await one.set("k", "new")
        assert await two.get("k") == "new"


async def test_late_starter_reads_the_current_generation(redis_url: str) -> None:
    """A cache started after a flush begins at the stored generation, not at zero."""
    namespace = "fl" + uuid.uuid4().hex[:6]
    async with stacked(redis_url, namespace) as one:
        await one.set("k", "old")
        await one.flush_namespace()
        await one.flush_namespace()
        await one.set("k", "new")
        async with stacked(redis_url, namespace) as late:
            assert late.invalidator.generation == 2
            assert await late.get("k") == "new"


async def test_without_generation_store_flush_falls_back_to_clear(redis_url: str) -> None:
    """With a shared tier but no bus, a private generation would mislead others: it clears."""
    namespace = "fl" + uuid.uuid4().hex[:6]
    async with stacked(redis_url, namespace, bus=False) as cache:
        await cache.set("k", 1)
        assert await cache.flush_namespace() == 0
        assert await cache.get("k") is None
        async with stacked(redis_url, namespace, bus=False) as other:
            assert await other.get("k") is None


async def test_keys_and_helpers_after_flush(redis_url: str) -> None:
    """Reserved ``~g`` keys are refused; decorator invalidation still works after a flush."""
    namespace = "fl" + uuid.uuid4().hex[:6]
    cache = stacked(redis_url, namespace)
    source = {"v": 1}

    @cache.cached(key="item:{n}")
    async def item(n: int) -> int:
        return source["v"]

    async with cache:
        with pytest.raises(sc.CacheKeyError, match="reserved"):
            await cache.set("~g1:x", 1)
        await cache.flush_namespace()
        assert cache.full_key("a") == f"{namespace}:~g1:a"
        assert cache.relative_key(cache.full_key("a")) == "~g1:a"
        assert await item(1) == 1
        source["v"] = 2
        await item.invalidate(1)  # type: ignore[attr-defined]
        assert await item(1) == 2


def test_sync_facade_flush(redis_url: str) -> None:
    """``cache.sync.flush_namespace()`` outdates entries for sync callers too."""
    cache = stacked(redis_url, "fl" + uuid.uuid4().hex[:6])
    with cache.sync as facade:
        facade.set("k", 1)
        assert facade.flush_namespace() == 1
        assert facade.get("k") is None


async def test_flush_with_redis_down_raises_tier_error(redis_factory: Callable[..., Any]) -> None:
    """With Redis down, flush_namespace raises TierError (not the driver's error); nothing moves."""
    server = redis_factory()
    cache = stacked(server.url, "fl" + uuid.uuid4().hex[:6])
    async with cache:
        await cache.set("a", 1)
        server.stop()
        with pytest.raises(sc.TierError) as raised:
            await cache.flush_namespace()
        assert not isinstance(raised.value.__cause__, sc.StratacacheError)
        assert cache.full_key("a").endswith(":a") and "~g" not in cache.full_key("a")
        await cache.clear()  # degrades (replayed later) instead of raising


def test_sync_flush_with_redis_down_raises_tier_error(redis_factory: Callable[..., Any]) -> None:
    """The sync facade raises the same TierError when Redis is down."""
    server = redis_factory()
    with stacked(server.url, "fl" + uuid.uuid4().hex[:6]).sync as facade:
        facade.set("a", 1)
        server.stop()
        with pytest.raises(sc.TierError):
            facade.flush_namespace()
        facade.clear()
