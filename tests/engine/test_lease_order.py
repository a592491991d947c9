"""A load's leases are taken bottom-up: a set racing a read-through never leaves the tiers apart.

The lower tier runs a ``set`` of the same key at a chosen moment of the load: right
after its miss, right before the load leases it, or right after.
Either way every tier ends with the same value: the load's when the set came first,
the set's when it came after the lower lease (the load then writes nowhere).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

import stratacache as sc
from stratacache.core.entry import Entry

AsyncHook = Callable[[], Awaitable[Any]]
SyncHook = Callable[[], Any]


def hooked(base: type[Any]) -> type[Any]:
    """``base`` with one-shot hooks after a miss, before and after a lease (async, blocking)."""

    class Hooked(base):  # type: ignore[misc,valid-type]
        on_miss: AsyncHook | None = None
        on_leasing: AsyncHook | None = None
        on_leased: AsyncHook | None = None
        on_miss_sync: SyncHook | None = None
        on_leasing_sync: SyncHook | None = None
        on_leased_sync: SyncHook | None = None

        async def get(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
            entry: Entry | None = await super().get(key, tags)
            hook, self.on_miss = self.on_miss, None
            if entry is None and hook is not None:
                await hook()
            return entry

        async def get_many(self, keys: list[str]) -> dict[str, Entry]:
            found: dict[str, Entry] = await super().get_many(keys)
            hook, self.on_miss = self.on_miss, None
            if len(found) < len(keys) and hook is not None:
                await hook()
            return found

        async def lease(self, key: str, tags: Sequence[str]) -> object | None:
            hook, self.on_leasing = self.on_leasing, None
            if hook is not None:
                await hook()
            lease = await super().lease(key, tags)
            hook, self.on_leased = self.on_leased, None
            if hook is not None:
                await hook()
            return lease

        def get_sync(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
            entry: Entry | None = super().get_sync(key, tags)
            hook, self.on_miss_sync = self.on_miss_sync, None
            if entry is None and hook is not None:
                hook()
            return entry

        def get_many_sync(self, keys: list[str]) -> dict[str, Entry]:
            found: dict[str, Entry] = super().get_many_sync(keys)
            hook, self.on_miss_sync = self.on_miss_sync, None
            if len(found) < len(keys) and hook is not None:
                hook()
            return found

        def lease_sync(self, key: str, tags: Sequence[str]) -> object | None:
            hook, self.on_leasing_sync = self.on_leasing_sync, None
            if hook is not None:
                hook()
            lease = super().lease_sync(key, tags)
            hook, self.on_leased_sync = self.on_leased_sync, None
            if hook is not None:
                hook()
            return lease

    return Hooked


LOWER = ["redis", "sqlite"]
#: when the lower tier runs the set, and what every tier then holds
MOMENTS = pytest.mark.parametrize(
    ("moment", "expected"), [("miss", "loaded"), ("leasing", "loaded"), ("leased", "v1")]
)


@pytest.fixture(params=LOWER)
def lower(request: pytest.FixtureRequest) -> Callable[[], Any]:
    """A factory of the hooked lower tier (Redis or SQLite)."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        return lambda: hooked(sc.RedisTier)(url=url)
    url = request.getfixturevalue("sqlite_url")
    return lambda: hooked(sc.SQLTier)(url=url)


def make(lower: Callable[[], Any]) -> tuple[sc.Cache, Any, Any]:
    memory, below = sc.MemoryTier(), lower()
    cache = sc.Cache(tiers=[memory, below], namespace=f"lo-{uuid.uuid4().hex[:8]}", bus=False)
    return cache, memory, below


def values(cache: sc.Cache, memory: Any, below: Any) -> tuple[Any, Any]:
    fkey = cache.keys.full_key("k")
    up, down = memory.get_sync(fkey), below.get_sync(fkey)
    return (up and up.value), (down and down.value)


@MOMENTS
async def test_a_set_during_a_load_leaves_every_tier_alike(
    lower: Callable[[], Any], moment: str, expected: str
) -> None:
    cache, memory, below = make(lower)

    async def set_v1() -> None:
        await cache.set("k", "v1")

    setattr(below, f"on_{moment}", set_v1)
    async with cache:
        got = await cache.get_or_set("k", lambda: "loaded")
        assert got == "loaded"
        assert values(cache, memory, below) == (expected, expected)
        assert await cache.get("k") == expected


@MOMENTS
def test_a_set_during_a_sync_load_leaves_every_tier_alike(
    lower: Callable[[], Any], moment: str, expected: str
) -> None:
    cache, memory, below = make(lower)
    with cache.sync as sync:
        setattr(below, f"on_{moment}_sync", lambda: sync.set("k", "v1"))
        assert sync.get_or_set("k", lambda: "loaded") == "loaded"
        assert values(cache, memory, below) == (expected, expected)
        assert sync.get("k") == expected


@MOMENTS
async def test_a_set_during_a_batch_load_leaves_every_tier_alike(
    lower: Callable[[], Any], moment: str, expected: str
) -> None:
    cache, memory, below = make(lower)

    async def set_v1() -> None:
        await cache.set("k", "v1")

    setattr(below, f"on_{moment}", set_v1)
    async with cache:
        got = await cache.get_or_set_many(["k"], lambda keys: dict.fromkeys(keys, "loaded"))
        assert got == {"k": "loaded"}
        assert values(cache, memory, below) == (expected, expected)


@MOMENTS
def test_a_set_during_a_sync_batch_load_leaves_every_tier_alike(
    lower: Callable[[], Any], moment: str, expected: str
) -> None:
    cache, memory, below = make(lower)
    with cache.sync as sync:
        setattr(below, f"on_{moment}_sync", lambda: sync.set("k", "v1"))
        got = sync.get_or_set_many(["k"], lambda keys: dict.fromkeys(keys, "loaded"))
        assert got == {"k": "loaded"}
        assert values(cache, memory, below) == (expected, expected)


@pytest.mark.parametrize(("hooked_tier", "expected"), [(2, "loaded"), (1, "v1")])
async def test_three_tiers_lease_from_the_bottom(
    redis_url: str, sqlite_url: str, hooked_tier: int, expected: str
) -> None:
    """A set just before the load's SQL lease reaches every tier before the load's leases
    (all keep the load); one between the SQL and Redis leases voids them all (all keep it)."""
    memory = sc.MemoryTier()
    tiers = [memory, hooked(sc.RedisTier)(url=redis_url), hooked(sc.SQLTier)(url=sqlite_url)]
    cache = sc.Cache(tiers=tiers, namespace=f"lo-{uuid.uuid4().hex[:8]}", bus=False)

    async def set_v1() -> None:
        await cache.set("k", "v1")

    async def redis_read_lease() -> None:  # the read leases Redis before the SQL read
        tiers[1].on_leasing = set_v1

    if hooked_tier == 1:
        tiers[1].on_leased = redis_read_lease
    else:
        tiers[2].on_leasing = set_v1
    async with cache:
        assert await cache.get_or_set("k", lambda: "loaded") == "loaded"
        fkey = cache.keys.full_key("k")
        assert [e and e.value for e in (t.get_sync(fkey) for t in tiers)] == [expected] * 3


async def test_a_set_in_flight_across_the_loads_leases_leaves_no_tier_apart(
    lower: Callable[[], Any],
) -> None:
    """A set wrote the lower tier before the load leased it, and memory only after the load
    leased memory: the load is refused in memory only, and memory drops the key rather
    than keep the set's value (the lower tier holds the load's, which a read then finds)."""
    cache, memory, below = make(lower)
    written, go = asyncio.Event(), asyncio.Event()
    base_set = below.set

    async def set_held_after_the_lower_write(key: str, entry: Entry, lease: Any = None) -> bool:
        stored: bool = await base_set(key, entry, lease)
        if lease is None:  # the set's overwrite, not the load's leased write
            written.set()
            await go.wait()
        return stored

    below.set = set_held_after_the_lower_write
    setter: asyncio.Task[None] | None = None

    async def start_the_set() -> None:
        nonlocal setter
        setter = asyncio.ensure_future(cache.set("k", "v1"))
        await written.wait()

    async def load() -> str:
        go.set()
        assert setter is not None
        await setter  # the set writes memory now, voiding the load's memory lease
        return "loaded"

    below.on_miss = start_the_set
    async with cache:
        assert await cache.get_or_set("k", load) == "loaded"
        up, down = values(cache, memory, below)
        assert (up, down) == (None, "loaded")
        assert await cache.get("k") == "loaded"
