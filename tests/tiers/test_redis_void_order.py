"""Deletes and overwrites void older leases before they remove or write: a load that began
before them never stores its result after them, whatever runs between their commands."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis
import redis.asyncio

from stratacache.core.clock import ManualClock
from stratacache.core.entry import Entry
from stratacache.core.tier import TierContext
from stratacache.tiers.redis import RedisTier

NS = "shop"  # as the shared ``tier`` fixture (tests/tiers/conftest.py)


class _Stepwise:
    """A blocking client whose pipelines send their commands one at a time, running
    ``between`` before each command (and before each script call): another client's
    write lands at every point where a non-transactional pipeline lets it."""

    def __init__(self, client: Any, between: Callable[[], None]) -> None:
        self.client = client
        self.between = between

    def pipeline(self, transaction: bool = True) -> _Pipe:
        return _Pipe(self)

    def evalsha(self, *args: Any) -> Any:
        self.between()
        return self.client.evalsha(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


class _Pipe:
    def __init__(self, owner: _Stepwise) -> None:
        self.owner = owner
        self.calls: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any) -> None:
        self.calls.append(args)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        out = []
        for call in self.calls:
            self.owner.between()
            out.append(self.owner.client.execute_command(*call))
        return out


class _AsyncStepwise(_Stepwise):
    """The same for the asyncio client (its pipelines and script calls are awaited)."""

    def pipeline(self, transaction: bool = True) -> _AsyncPipe:
        return _AsyncPipe(self)

    async def evalsha(self, *args: Any) -> Any:
        self.between()
        return await self.client.evalsha(*args)


class _AsyncPipe(_Pipe):
    async def execute(self, raise_on_error: bool = True) -> list[Any]:  # type: ignore[override]
        out = []
        for call in self.calls:
            self.owner.between()
            out.append(await self.owner.client.execute_command(*call))
        return out


@pytest.fixture
async def writer(redis_url: str, clock: ManualClock) -> AsyncIterator[RedisTier]:
    """Another client of the same namespace: the one whose load began before the delete."""
    t = RedisTier(redis_url)
    await t.start(TierContext(NS, clock=clock))
    yield t
    await t.close()


@pytest.fixture
def stale_writes(writer: RedisTier, clock: ManualClock) -> Callable[..., Callable[[], None]]:
    """``between`` hooks that try a leased write of ``key`` under a lease taken now."""

    def make(key: str, tags: tuple[str, ...] = ()) -> Callable[[], None]:
        lease = writer.lease_sync(key, list(tags))

        def between() -> None:
            writer.set_sync(key, Entry("stale", clock.time(), tags=tags), lease)

        return between

    return make


async def _stepwise_tier(
    redis_url: str, clock: ManualClock, between: Callable[[], None]
) -> RedisTier:
    """A tier whose blocking and asyncio clients are both ``_Stepwise``."""
    sync = _Stepwise(redis.Redis.from_url(redis_url), between)
    aio = _AsyncStepwise(redis.asyncio.Redis.from_url(redis_url), between)
    t = RedisTier(redis_url, client=aio, sync_client=sync)
    await t.start(TierContext(NS, clock=clock))
    return t


async def _close(t: RedisTier) -> None:
    """Close the tier and the clients it was given."""
    await t.close()
    assert t._given[0] is not None and t._given[1] is not None
    await t._given[0].client.aclose()
    t._given[1].client.close()


async def test_a_lease_taken_before_delete_many_refuses_the_write_after_it(
    tier: RedisTier, clock: ManualClock
) -> None:
    """Lease, delete_many, then the leased write: refused, the keys stay deleted."""
    keys = [f"shop:d{i}" for i in range(5)]
    await tier.set_many({k: Entry("old", clock.time()) for k in keys})
    leases = [await tier.lease(k, []) for k in keys]
    assert await tier.delete_many(keys) == 5
    for key, lease in zip(keys, leases, strict=True):
        assert not await tier.set(key, Entry("stale", clock.time()), lease)
        assert tier.lease_sync(key, []) is not None
        assert not tier.set_sync(key, Entry("stale", clock.time()), lease)
    assert await tier.get_many(keys) == {}


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
async def test_a_stale_leased_write_between_delete_commands_never_outlives_the_delete(
    redis_url: str, clock: ManualClock, stale_writes: Any, sync: bool
) -> None:
    """A leased write tried before every command of delete_many (its lease taken before
    the call) is refused or removed: once delete_many returns, the keys are gone."""
    keys = [f"shop:s{i}" for i in range(3)]
    hooks: list[Callable[[], None]] = []

    def between() -> None:
        for hook in hooks:
            hook()

    tier = await _stepwise_tier(redis_url, clock, between)
    try:
        tier.set_many_sync({k: Entry("old", clock.time()) for k in keys})
        hooks += [stale_writes(k) for k in keys]  # leases taken after the set, before the delete
        if sync:
            assert tier.delete_many_sync(keys) == 3
        else:
            assert await tier.delete_many(keys) == 3
        hooks.clear()
        assert tier.get_many_sync(keys) == {}
        assert all(tier.get_sync(k) is None for k in keys)
    finally:
        await _close(tier)


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
@pytest.mark.parametrize("tags", [(), ("team",)], ids=["untagged", "tagged"])
async def test_a_stale_leased_write_never_lands_over_an_overwrite(
    redis_url: str, clock: ManualClock, stale_writes: Any, tags: tuple[str, ...], sync: bool
) -> None:
    """An unleased set (an overwrite) voids older leases before it writes: a leased write
    tried before each of its commands never replaces the new value."""
    key = "shop:o"
    tier = await _stepwise_tier(redis_url, clock, stale_writes(key, tags))
    try:
        if sync:
            tier.set_sync(key, Entry("new", clock.time(), tags=tags))
        else:
            await tier.set(key, Entry("new", clock.time(), tags=tags))
        got = tier.get_sync(key)
        assert got is not None and got.value == "new"
    finally:
        await _close(tier)
