"""No stale set: a load that began before an invalidation cannot store its result afterwards.

Each test blocks a loader on an ``asyncio.Event`` after it has read the source,
invalidates while it is blocked, releases it, and then checks every tier.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from tests.waiting import poll

import stratacache as sc
from stratacache.fleet.bus import RedisBus

Invalidate = Callable[[sc.Cache], Awaitable[Any]]

INVALIDATIONS: dict[str, Invalidate] = {
    "key": lambda c: c.invalidate(keys=["user:1"]),
    "tag": lambda c: c.invalidate(tags=["org:7"]),
    "prefix": lambda c: c.invalidate(prefix="user:"),
    "clear": lambda c: c.clear(),
    "flush": lambda c: c.flush_namespace(),
}


class BlockedLoader:
    """Reads the source, signals that it started, then waits to be released."""

    def __init__(self, source: dict[str, int]) -> None:
        self.source = source
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        value = self.source["user:1"]
        self.started.set()
        await self.release.wait()
        return value


def tier_sets(redis_url: str | None) -> list[sc.Tier]:
    tiers: list[sc.Tier] = [sc.MemoryTier(maxsize=100)]
    if redis_url is not None:
        tiers.append(sc.RedisTier(url=redis_url))
    return tiers


async def race(cache: sc.Cache, other: sc.Cache, invalidate: Invalidate) -> Any:
    """Load in ``cache``, invalidate in ``other`` mid-load; return what the racing load got."""
    source = {"user:1": 1}
    loader = BlockedLoader(source)
    task = asyncio.ensure_future(cache.get_or_set("user:1", loader, tags=["org:7"]))
    await loader.started.wait()
    source["user:1"] = 2
    await invalidate(other)
    loader.release.set()
    raced = await task
    assert loader.calls == 1
    source_loader = BlockedLoader(source)
    source_loader.release.set()
    return raced, source_loader


@pytest.mark.parametrize("kind", list(INVALIDATIONS))
async def test_memory_only_refuses_stale_set(kind: str) -> None:
    """In one process with a memory tier, the raced load's value is not cached."""
    cache = sc.Cache(tiers=tier_sets(None), namespace="nss")
    async with cache:
        raced, loader = await race(cache, cache, INVALIDATIONS[kind])
        assert raced == 1  # the caller whose read began before the invalidation may see it
        assert await cache.get("user:1") is None
        assert await cache.get_or_set("user:1", loader, tags=["org:7"]) == 2


@pytest.mark.parametrize("kind", list(INVALIDATIONS))
async def test_redis_stack_refuses_stale_set(kind: str, redis_url: str) -> None:
    """With memory + Redis, neither tier keeps the raced value, seen from a fresh cache too."""
    namespace = "nss" + uuid.uuid4().hex[:6]
    bus = RedisBus(redis_url)
    cache = sc.Cache(tiers=tier_sets(redis_url), namespace=namespace, bus=bus)
    async with cache:
        raced, loader = await race(cache, cache, INVALIDATIONS[kind])
        assert raced == 1
        assert await cache.get("user:1") is None
        observer = sc.Cache(
            tiers=[sc.RedisTier(url=redis_url)], namespace=namespace, bus=RedisBus(redis_url)
        )
        async with observer:
            assert await observer.get("user:1") is None  # nothing stale in Redis either
        assert await cache.get_or_set("user:1", loader, tags=["org:7"]) == 2


@pytest.mark.parametrize("kind", ["key", "tag", "prefix", "flush"])
async def test_invalidation_from_another_cache_refuses_stale_set(kind: str, redis_url: str) -> None:
    """An invalidation issued by another process (origin) voids the load's leases everywhere."""
    namespace = "nss" + uuid.uuid4().hex[:6]

    def make() -> sc.Cache:
        return sc.Cache(tiers=tier_sets(redis_url), namespace=namespace, bus=RedisBus(redis_url))

    loading, other = make(), make()
    async with loading, other:
        raced, loader = await race(loading, other, INVALIDATIONS[kind])
        assert raced == 1
        # the bus lag: a flush reaches ``loading`` only as a message (its generation)
        await poll(lambda: loading.bus.received >= 1, what="the message")  # type: ignore[union-attr]
        for cache in (loading, other):
            assert await cache.get("user:1") is None
        assert await loading.get_or_set("user:1", loader, tags=["org:7"]) == 2
        assert await other.get("user:1") == 2


async def test_decorated_function_does_not_memoize_raced_result(redis_url: str) -> None:
    """The decorator's in-memory fast path never picks up a result whose set was refused."""
    source = {"user:1": 1}
    gate = {"started": asyncio.Event(), "release": asyncio.Event()}
    blocking = [True]
    cache = sc.Cache(tiers=tier_sets(redis_url), namespace="nss" + uuid.uuid4().hex[:6])

    @cache.cached(key="user:{user_id}", tags=["org:7"])
    async def get_user(user_id: int) -> int:
        value = source[f"user:{user_id}"]
        if blocking[0]:
            gate["started"].set()
            await gate["release"].wait()
        return value

    async with cache:
        task = asyncio.ensure_future(get_user(1))
        await gate["started"].wait()
        source["user:1"] = 2
        await cache.invalidate(tags=["org:7"])
        gate["release"].set()
        assert await task == 1
        blocking[0] = False
        assert await get_user(1) == 2
        assert await get_user(1) == 2  # and now from the fast path


def test_sync_facade_refuses_stale_set(redis_url: str) -> None:
    """The sync facade's loader, raced by an invalidation from another thread, stores nothing."""
    started, release = threading.Event(), threading.Event()
    source = {"user:1": 1}

    def loader() -> int:
        value = source["user:1"]
        started.set()
        release.wait(30)
        return value

    cache = sc.Cache(tiers=tier_sets(redis_url), namespace="nss" + uuid.uuid4().hex[:6])
    with cache.sync as facade:
        result: list[int] = []
        worker = threading.Thread(
            target=lambda: result.append(facade.get_or_set("user:1", loader, tags=["org:7"]))
        )
        worker.start()
        assert started.wait(30)
        source["user:1"] = 2
        facade.invalidate(tags=["org:7"])
        release.set()
        worker.join(30)
        assert result == [1]
        assert facade.get("user:1") is None
        assert facade.get_or_set("user:1", lambda: source["user:1"]) == 2


def _stack(request: pytest.FixtureRequest, storage: str) -> list[sc.Tier]:
    """Memory over the shared ``storage`` tier (memory alone for ``"memory"``)."""
    tiers: list[sc.Tier] = [sc.MemoryTier(maxsize=100)]
    if storage == "redis":
        tiers.append(sc.RedisTier(url=request.getfixturevalue("redis_url")))
    elif storage != "memory":
        tiers.append(sc.SQLTier(url=request.getfixturevalue(f"{storage}_url")))
    return tiers


WRITES: dict[str, Callable[[Any], Any]] = {
    "set": lambda c: c.set("user:1", 2),
    "set_many": lambda c: c.set_many({"user:1": 2}),
}
STORAGES = ["memory", "sqlite", "postgres", "redis"]


@pytest.mark.parametrize("write", list(WRITES))
@pytest.mark.parametrize("storage", STORAGES)
async def test_write_during_load_wins(
    request: pytest.FixtureRequest, storage: str, write: str
) -> None:
    """A write made while a load runs is what every tier keeps, not the load's older result."""
    namespace = "nsw" + uuid.uuid4().hex[:6]
    cache = sc.Cache(tiers=_stack(request, storage), namespace=namespace, bus=False)
    async with cache:
        loader = BlockedLoader({"user:1": 1})
        task = asyncio.ensure_future(cache.get_or_set("user:1", loader))
        await loader.started.wait()
        await WRITES[write](cache)
        loader.release.set()
        assert await task == 1
        assert await cache.get("user:1") == 2
    shared = _stack(request, storage)[1:]
    if shared:
        async with sc.Cache(tiers=shared, namespace=namespace, bus=False) as other:
            assert await other.get("user:1") == 2  # what another process reads


@pytest.mark.parametrize("write", list(WRITES))
@pytest.mark.parametrize("storage", STORAGES)
def test_sync_write_during_load_wins(
    request: pytest.FixtureRequest, storage: str, write: str
) -> None:
    """The sync facade: a write made while a load runs wins over the load's result."""
    started, release = threading.Event(), threading.Event()

    def loader() -> int:
        started.set()
        release.wait(30)
        return 1

    namespace = "nsw" + uuid.uuid4().hex[:6]
    cache = sc.Cache(tiers=_stack(request, storage), namespace=namespace, bus=False)
    with cache.sync as facade:
        result: list[int] = []
        worker = threading.Thread(target=lambda: result.append(facade.get_or_set("user:1", loader)))
        worker.start()
        assert started.wait(30)
        WRITES[write](facade)
        release.set()
        worker.join(30)
        assert result == [1]
        assert facade.get("user:1") == 2
    shared = _stack(request, storage)[1:]
    if shared:
        with sc.Cache(tiers=shared, namespace=namespace, bus=False).sync as other:
            assert other.get("user:1") == 2
