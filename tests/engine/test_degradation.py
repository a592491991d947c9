"""Bounded degradation: with the bus down, local entries serve only within the staleness bound."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import stratacache as sc
from stratacache.fleet.bus import RedisBus

from ..waiting import poll


def _cache(data_url: str, bus_url: str, namespace: str, clock: sc.ManualClock) -> sc.Cache:
    return sc.Cache(
        tiers=[sc.MemoryTier(), sc.RedisTier(url=data_url, socket_timeout=0.2)],
        namespace=namespace,
        bus=RedisBus(bus_url, reconnect_min=0.01, reconnect_max=0.05, connect_timeout=0.2),
        clock=clock,
        staleness_bound=1.0,
        breaker_threshold=2,
    )


@pytest.mark.parametrize("age", [0.0, 0.5, 0.99])
async def test_young_local_entry_is_served_while_the_bus_is_down(
    redis_url: str, redis_factory: Callable[..., Any], age: float
) -> None:
    """Bus down: an entry younger than the bound is served from memory, even if outdated."""
    bus_server = redis_factory()
    namespace = "dg" + uuid.uuid4().hex[:6]
    clock = sc.ManualClock()
    cache = _cache(redis_url, bus_server.url, namespace, clock)
    other = sc.Cache(tiers=[sc.RedisTier(url=redis_url)], namespace=namespace)
    async with cache, other:
        await cache.set("k", "v1")
        bus_server.stop()
        await poll(lambda: cache.tiers.degraded_bound is not None, what="degraded mode")
        await other.set("k", "v2")  # this invalidation cannot reach ``cache``
        clock.advance(age)
        assert await cache.get("k") == "v1"  # within the documented bound


@pytest.mark.parametrize("age", [1.01, 1.5, 30.0])
async def test_local_entry_older_than_the_bound_is_not_served(
    redis_url: str, redis_factory: Callable[..., Any], age: float
) -> None:
    """Bus down: past the bound the local copy is a miss and the shared tier answers."""
    bus_server = redis_factory()
    namespace = "dg" + uuid.uuid4().hex[:6]
    clock = sc.ManualClock()
    cache = _cache(redis_url, bus_server.url, namespace, clock)
    other = sc.Cache(tiers=[sc.RedisTier(url=redis_url)], namespace=namespace)
    calls: list[int] = []

    @cache.cached(key="f")
    async def f() -> int:
        calls.append(1)
        return len(calls)

    async with cache, other:
        await cache.set("k", "v1")
        assert await f() == 1 and await f() == 1
        bus_server.stop()
        await poll(lambda: cache.tiers.degraded_bound is not None, what="degraded mode")
        await other.set("k", "v2")
        await other.invalidate(keys=["f"])
        clock.advance(age)
        assert await cache.get("k") == "v2"
        assert await f() == 2  # the decorator's fast path obeys the bound too


async def test_loader_runs_about_once_per_key_per_bound_with_redis_and_bus_down(
    redis_factory: Callable[..., Any],
) -> None:
    """Redis (tier and bus) down for 3 s of calls: ~1 load per key per second, not per call."""
    server = redis_factory()
    clock = sc.ManualClock()
    cache = _cache(server.url, server.url, "dg" + uuid.uuid4().hex[:6], clock)
    loads: Counter[str] = Counter()
    keys = [f"k{i}" for i in range(4)]
    async with cache:
        server.stop()
        await poll(lambda: cache.tiers.degraded_bound is not None, what="degraded mode")
        for i in range(300):  # 300 calls, 10 ms of cache time apart: 3 s
            key = keys[i % len(keys)]

            def load(key: str = key) -> str:
                loads[key] += 1
                return f"value-{key}"

            assert await cache.get_or_set(key, load) == f"value-{key}"
            clock.advance(0.01)
    assert all(1 <= loads[k] <= 4 for k in keys), loads  # 3 s / 1 s bound, +1 at the edge


async def test_bus_back_restores_the_normal_promise(
    redis_url: str, redis_factory: Callable[..., Any]
) -> None:
    """When the bus returns, local copies made meanwhile are dropped once and L1 is trusted."""
    bus_server = redis_factory()
    namespace = "dg" + uuid.uuid4().hex[:6]
    clock = sc.ManualClock()
    cache = _cache(redis_url, bus_server.url, namespace, clock)
    async with cache:
        bus_server.stop()
        await poll(lambda: cache.tiers.degraded_bound is not None, what="degraded mode")
        await cache.set("k", "v1")
        assert cache.tiers.top.peek(cache.full_key("k")) is not None  # type: ignore[attr-defined]
        bus_server.start()
        await poll(lambda: cache.tiers.local_trusted, timeout=10, what="bus back")
        assert cache.tiers.degraded_bound is None
        assert cache.tiers.top.peek(cache.full_key("k")) is None  # type: ignore[attr-defined]
        assert await cache.get("k") == "v1"


def test_staleness_bound_is_checked() -> None:
    """A negative or non-numeric staleness bound is a ConfigError; 0 is allowed (distrust all)."""
    with pytest.raises(sc.ConfigError):
        sc.Cache(tiers=[sc.MemoryTier()], staleness_bound=-1)
    with pytest.raises(sc.ConfigError):
        sc.Cache(tiers=[sc.MemoryTier()], staleness_bound="1s")  # type: ignore[arg-type]
    assert sc.Cache(tiers=[sc.MemoryTier()], staleness_bound=0).staleness_bound == 0


def test_sync_facade_obeys_the_same_bound(
    redis_url: str, redis_factory: Callable[..., Any], wait_until: Any
) -> None:
    """cache.sync in degraded mode: a young local entry is served, an older one is not."""
    bus_server = redis_factory()
    namespace = "dg" + uuid.uuid4().hex[:6]
    clock = sc.ManualClock()
    cache = _cache(redis_url, bus_server.url, namespace, clock)
    other = sc.Cache(tiers=[sc.RedisTier(url=redis_url)], namespace=namespace)
    with cache.sync as sync, other.sync as osync:
        sync.set("k", "v1")
        bus_server.stop()
        wait_until(lambda: cache.tiers.degraded_bound is not None, what="degraded mode")
        osync.set("k", "v2")  # lost for ``cache``
        clock.advance(0.5)
        assert sync.get("k") == "v1"
        clock.advance(0.6)
        assert sync.get("k") == "v2"
