"""``TierStack`` on a miss: remote leases asked in turn, lowest first; a tier that failed is not written unleased."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest
import redis

import stratacache as sc


class RemoteTier(sc.MemoryTier):
    """An in-process store posing as a shared tier; counts its leases."""

    shared = True  # type: ignore[assignment]

    def __init__(self, name: str) -> None:
        super().__init__(maxsize=100, name=name)
        self.leases = 0

    async def lease(self, key: str, tags: Sequence[str]) -> object | None:
        self.leases += 1
        return await super().lease(key, tags)


@pytest.mark.parametrize("remote", [1, 2, 3])
async def test_a_miss_leases_each_tier_again_for_its_load_but_the_lowest(remote: int) -> None:
    """The read leases every tier above the one it reads next; the load leases them all
    again, bottom-up (``plans.lease_plan``): the lowest tier once, the others twice."""
    lower = [RemoteTier(f"r{i}") for i in range(remote)]
    async with sc.Cache([sc.MemoryTier(maxsize=10), *lower], namespace="stack") as cache:
        for n in range(5):
            assert await cache.get_or_set(f"k{n}", lambda: 7) == 7
        assert [tier.leases for tier in lower] == [10] * (remote - 1) + [5]
        for tier in lower:
            assert all([await tier.get(cache.full_key(f"k{n}")) for n in range(5)])


class Ordered(RemoteTier):
    """A remote tier that records when its lease is asked and when it answers."""

    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__(name)
        self.log = log

    async def lease(self, key: str, tags: Sequence[str]) -> object | None:
        self.log.append(f"ask {self.name}")
        lease = await super().lease(key, tags)
        await asyncio.sleep(0)  # another lease asked now would overlap this one
        self.log.append(f"got {self.name}")
        return lease


@pytest.mark.parametrize("remote", [2, 3, 4])
async def test_remote_leases_are_taken_in_turn_lowest_first(remote: int) -> None:
    """Each remote lease is asked only once the one below it answered: a write between two
    of them voids the lower one, and the bottom-up write stops there."""
    log: list[str] = []
    lower = [Ordered(f"r{i}", log) for i in range(remote)]
    async with sc.Cache([sc.MemoryTier(maxsize=10), *lower], namespace="stack") as cache:
        leases = await cache.tiers.leases(cache.full_key("k"), ())
    assert len(leases) == remote + 1 and None not in leases
    names = [f"r{i}" for i in reversed(range(remote))]
    assert log == [step for name in names for step in (f"ask {name}", f"got {name}")]


class LeaseFailsOnce(sc.RedisTier):
    """A Redis tier whose next lease fails (a network blip), every later call succeeding."""

    fail_next = False

    def _blip(self) -> None:
        if self.fail_next:
            self.fail_next = False
            raise redis.ConnectionError("blip")

    async def lease(self, key: str, tags: Sequence[str]) -> object | None:
        self._blip()
        return await super().lease(key, tags)

    def lease_sync(self, key: str, tags: Sequence[str]) -> object | None:
        self._blip()
        return super().lease_sync(key, tags)


def _blipping_pair(redis_url: str) -> tuple[sc.Cache, sc.Cache, LeaseFailsOnce]:
    namespace = "blip" + uuid.uuid4().hex[:8]
    tier = LeaseFailsOnce(url=redis_url)
    tier.fail_next = True
    cache = sc.Cache([tier], namespace=namespace, bus=False)
    other = sc.Cache([sc.RedisTier(url=redis_url)], namespace=namespace, bus=False)
    return cache, other, tier


async def test_a_load_whose_lease_failed_does_not_store_over_an_invalidation(
    redis_url: str,
) -> None:
    """Without its lease a load cannot tell that an invalidation landed meanwhile: its
    write must not reach the tier as an unconditional overwrite."""
    cache, other, tier = _blipping_pair(redis_url)
    source = {"k": 1}

    async def load() -> int:
        value = source["k"]
        source["k"] = 2  # the source changes while the load runs, and is invalidated
        await other.invalidate(keys=["k"])
        return value

    async with cache, other:
        assert await cache.get_or_set("k", load) == 1  # the caller gets its load's result
        assert not tier.fail_next  # the lease did fail
        assert await other.get_or_set("k", lambda: source["k"]) == 2  # not the outdated 1


def test_a_load_whose_lease_failed_does_not_store_over_an_invalidation_sync(
    redis_url: str,
) -> None:
    cache, other, tier = _blipping_pair(redis_url)
    source = {"k": 1}

    def load() -> int:
        value = source["k"]
        source["k"] = 2
        other.sync.invalidate(keys=["k"])
        return value

    with cache.sync, other.sync:
        assert cache.sync.get_or_set("k", load) == 1
        assert not tier.fail_next
        assert other.sync.get_or_set("k", lambda: source["k"]) == 2


class ReadFailsOnce(sc.RedisTier):
    """A Redis tier whose next read fails; counts the leases and writes it is asked for."""

    fail_next = True
    calls = 0

    def _read(self) -> None:
        if self.fail_next:
            self.fail_next = False
            raise redis.TimeoutError("hung")

    async def get(self, key: str, tags: Sequence[str] | None = None) -> sc.Entry | None:
        self._read()
        return await super().get(key, tags)

    def get_sync(self, key: str, tags: Sequence[str] | None = None) -> sc.Entry | None:
        self._read()
        return super().get_sync(key, tags)

    async def lease(self, key: str, tags: Sequence[str]) -> object | None:
        self.calls += 1
        return await super().lease(key, tags)

    def lease_sync(self, key: str, tags: Sequence[str]) -> object | None:
        self.calls += 1
        return super().lease_sync(key, tags)

    async def set(self, key: str, entry: sc.Entry, lease: object | None = None) -> bool:
        self.calls += 1
        return await super().set(key, entry, lease)

    def set_sync(self, key: str, entry: sc.Entry, lease: object | None = None) -> bool:
        self.calls += 1
        return super().set_sync(key, entry, lease)


@pytest.mark.parametrize("blocking", [False, True])
async def test_a_miss_whose_read_failed_does_not_call_that_tier_again(
    redis_url: str, blocking: bool
) -> None:
    """A tier that just failed (a hung Redis) is not leased and written by the same call:
    one timeout per call before the breaker opens, not three."""
    tier = ReadFailsOnce(url=redis_url)
    cache = sc.Cache([sc.MemoryTier(), tier], namespace="r" + uuid.uuid4().hex[:8], bus=False)
    async with cache:
        if blocking:
            got = await asyncio.to_thread(cache.sync.get_or_set, "k", lambda: 1)
        else:
            got = await cache.get_or_set("k", lambda: 1)
        assert got == 1
        assert not tier.fail_next
        assert tier.calls == 0
        assert cache.stats()["tiers"]["redis"]["errors"] == 1
        assert await cache.get("k") == 1  # the memory tier still took the value


def _full_pair(maxsize: int) -> tuple[sc.MemoryTier, RemoteTier]:
    """A W-TinyLFU memory tier of ``maxsize`` entries above an in-process shared tier."""
    return sc.MemoryTier(maxsize=maxsize), RemoteTier("r")


async def test_a_full_memory_tier_declines_a_one_off_backfill() -> None:
    """A key read once is served from the lower tier without displacing a hotter one above;
    read often, it is backfilled."""
    top, lower = _full_pair(4)
    async with sc.Cache([top, lower], namespace="adm") as cache:
        for n in range(4):  # fills the memory tier with keys read several times
            await cache.set(f"hot{n}", n)
            for _ in range(3):
                assert await cache.get(f"hot{n}") == n
        await lower.set(cache.full_key("cold"), sc.Entry("v", cache.clock.time()))
        assert await cache.get("cold") == "v"
        assert top.peek(cache.full_key("cold")) is None
        assert len(top) == 4
        for _ in range(8):
            assert await cache.get("cold") == "v"
        assert top.peek(cache.full_key("cold")) is not None


def test_a_full_memory_tier_declines_a_one_off_backfill_sync() -> None:
    """``cache.sync`` makes the same admission decision as the async client."""
    top, lower = _full_pair(4)
    cache = sc.Cache([top, lower], namespace="adm")
    with cache.sync:
        for n in range(4):
            cache.sync.set(f"hot{n}", n)
            for _ in range(3):
                assert cache.sync.get(f"hot{n}") == n
        lower.set_sync(cache.full_key("cold"), sc.Entry("v", cache.clock.time()))
        assert cache.sync.get("cold") == "v"
        assert top.peek(cache.full_key("cold")) is None
        for _ in range(8):
            assert cache.sync.get("cold") == "v"
        assert top.peek(cache.full_key("cold")) is not None


class FailingRemote(RemoteTier):
    """A shared tier whose writes fail."""

    async def set(self, key: str, entry: sc.Entry, lease: object | None = None) -> bool:
        raise OSError("down")


async def _fill(cache: sc.Cache) -> None:
    """Fill a 4-entry memory tier with keys read several times each."""
    for n in range(4):
        await cache.set(f"hot{n}", n)
        for _ in range(3):
            assert await cache.get(f"hot{n}") == n


async def test_a_full_memory_tier_declines_a_one_off_load_the_tier_below_stored() -> None:
    """A load's value read once goes to the shared tier only; the memory tier keeps its keys."""
    top, lower = _full_pair(4)
    async with sc.Cache([top, lower], namespace="adm") as cache:
        await _fill(cache)
        assert await cache.get_or_set("new", lambda: "v") == "v"
        assert top.peek(cache.full_key("new")) is None
        assert (await lower.get(cache.full_key("new"))) is not None


async def test_a_load_is_kept_above_when_the_tier_below_failed_to_store_it() -> None:
    """No tier below holds the value: the memory tier stores it whatever its admission says."""
    top = sc.MemoryTier(maxsize=4)
    async with sc.Cache([top, FailingRemote("r")], namespace="adm") as cache:
        await _fill(cache)
        assert await cache.get_or_set("new", lambda: "v") == "v"
        assert top.peek(cache.full_key("new")) is not None


async def test_a_memory_only_cache_keeps_every_load() -> None:
    """Without a tier below, a full memory tier stores a one-off load as before."""
    top = sc.MemoryTier(maxsize=4)
    async with sc.Cache([top], namespace="adm") as cache:
        await _fill(cache)
        assert await cache.get_or_set("new", lambda: "v") == "v"
        assert top.peek(cache.full_key("new")) is not None


def test_a_full_memory_tier_declines_a_one_off_load_sync() -> None:
    """``cache.sync`` runs the same write plan: the one-off load stays below."""
    top, lower = _full_pair(4)
    cache = sc.Cache([top, lower], namespace="adm")
    with cache.sync:
        for n in range(4):
            cache.sync.set(f"hot{n}", n)
            for _ in range(3):
                assert cache.sync.get(f"hot{n}") == n
        assert cache.sync.get_or_set("new", lambda: "v") == "v"
        assert top.peek(cache.full_key("new")) is None
        assert lower.get_sync(cache.full_key("new")) is not None
