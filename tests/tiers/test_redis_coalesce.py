"""Coalesced reads: concurrent async gets ride one MGET and each caller gets its own reply."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
import redis

import stratacache as sc
from stratacache.core.clock import ManualClock
from stratacache.core.entry import Entry
from stratacache.core.errors import TierError
from stratacache.core.tier import TierContext
from stratacache.tiers._redis_coalesce import ReadCoalescer
from stratacache.tiers.redis import RedisTier

NS = "shop"  # as the shared ``tier`` fixture (tests/tiers/conftest.py)


@pytest.fixture
def redis_url(own_redis_url: str) -> str:
    """This module counts commands: a server of each test's own."""
    return own_redis_url


def _stats(tier: RedisTier) -> ReadCoalescer:
    assert tier._coalescers is not None
    return tier._coalescers.get()


class _Gate:
    """A ``send`` for ``ReadCoalescer`` that records batches and waits until released."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        self.fail = fail

    async def send(self, keys: Sequence[str]) -> list[Any]:
        self.batches.append(list(keys))
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return [f"value of {k}" for k in keys]

    async def alone(self, key: str) -> Any:
        return (await self.send([key]))[0]


async def _settle() -> None:
    """Let every ready task run a few loop turns."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_concurrent_gets_each_return_their_own_entry(
    tier: RedisTier, clock: ManualClock
) -> None:
    """Many tasks reading many keys, with duplicates and misses, each get their own value."""
    keys = [f"shop:k{i}" for i in range(50)]
    await tier.set_many({k: Entry(k.upper(), clock.time()) for k in keys[:40]})
    wanted = [keys[i % 50] for i in range(300)]  # every key six times; the last 10 are misses
    got = await asyncio.gather(*(tier.get(k) for k in wanted))
    for key, entry in zip(wanted, got, strict=True):
        if key in keys[:40]:
            assert entry is not None and entry.value == key.upper()
        else:
            assert entry is None
    stats = _stats(tier)
    assert stats.batches >= 1 and stats.coalesced >= 250  # they really rode shared MGETs


async def test_coalesced_gets_cost_few_commands(
    tier: RedisTier, raw: redis.Redis, clock: ManualClock
) -> None:
    """200 concurrent gets are a handful of commands, not 200."""
    keys = [f"shop:c{i}" for i in range(200)]
    await tier.set_many({k: Entry(k, clock.time()) for k in keys})
    await asyncio.gather(*(tier.get(k) for k in keys))  # connections opened (and announced)
    before = int(raw.info("stats")["total_commands_processed"])  # type: ignore[index]
    got = await asyncio.gather(*(tier.get(k) for k in keys))
    after = int(raw.info("stats")["total_commands_processed"])  # type: ignore[index]
    assert [e.value for e in got if e is not None] == keys
    assert after - before - 1 <= 2  # one GET alone, one MGET of the rest


async def test_tagged_entries_are_checked_when_coalesced(
    tier: RedisTier, clock: ManualClock
) -> None:
    """A tagged entry read in a batch is a miss once its tag was invalidated."""
    await tier.set("shop:t1", Entry(1, clock.time(), tags=("red",)))
    await tier.set("shop:t2", Entry(2, clock.time(), tags=("blue",)))
    got = await asyncio.gather(*(tier.get(k) for k in ["shop:t1", "shop:t2"] * 5))
    assert [e.value for e in got if e is not None] == [1, 2] * 5
    await tier.invalidate_tags(["red"])
    got = await asyncio.gather(*(tier.get(k) for k in ["shop:t1", "shop:t2"] * 5))
    assert [None if e is None else e.value for e in got] == [None, 2] * 5


async def test_uncoalesced_tier_reads_the_same(redis_url: str, clock: ManualClock) -> None:
    """With coalescing off, concurrent gets return the same values (and no batch is made)."""
    # each concurrent get opens its own connection: generous timeouts on a busy machine
    tier = RedisTier(redis_url, socket_timeout=5, socket_connect_timeout=5)
    await tier.start(TierContext(NS, clock=clock))
    tier.coalesce = False
    await tier.set_many({f"shop:u{i}": Entry(i, clock.time()) for i in range(20)})
    got = await asyncio.gather(*(tier.get(f"shop:u{i % 25}") for i in range(100)))
    assert [None if e is None else e.value for e in got] == [
        i % 25 if i % 25 < 20 else None for i in range(100)
    ]
    assert tier._coalescers is None
    await tier.close()


async def test_a_failing_batch_reaches_every_waiter_as_a_tier_error(
    redis_factory: Any, clock: ManualClock
) -> None:
    """When the server goes away, every coalesced caller gets TierError, none a wrong value."""
    server = redis_factory()
    tier = RedisTier(server.url, socket_timeout=2.0)
    await tier.start(TierContext(NS, clock=clock))
    await tier.set("shop:x", Entry("x", clock.time()))
    assert (await tier.get("shop:x")) is not None
    server.stop()
    results = await asyncio.gather(*(tier.get("shop:x") for _ in range(20)), return_exceptions=True)
    assert results and all(isinstance(r, TierError) for r in results)
    await tier.close()


async def test_an_error_in_one_batch_reaches_its_waiters_only() -> None:
    """The batch's error is raised in each of its waiters; the next batch works again."""
    coalescer = ReadCoalescer()
    gate = _Gate(fail=ConnectionError("boom"))
    first = asyncio.ensure_future(coalescer.read("a", gate.send, gate.alone))
    await _settle()
    waiters = [asyncio.ensure_future(coalescer.read(k, gate.send, gate.alone)) for k in "bcb"]
    await _settle()
    assert gate.batches == [["a"], ["b", "c"]]
    gate.release.set()
    results = await asyncio.gather(first, *waiters, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    ok = _Gate()
    ok.release.set()
    assert await coalescer.read("d", ok.send, ok.alone) == "value of d"


async def test_a_cancelled_waiter_leaves_the_others_served() -> None:
    """Cancelling one waiter cancels only its own read."""
    coalescer = ReadCoalescer()
    gate = _Gate()
    first = asyncio.ensure_future(coalescer.read("a", gate.send, gate.alone))
    await _settle()
    reads = {k: asyncio.ensure_future(coalescer.read(k, gate.send, gate.alone)) for k in "bcd"}
    await _settle()
    reads["c"].cancel()
    gate.release.set()
    assert await first == "value of a"
    assert await reads["b"] == "value of b" and await reads["d"] == "value of d"
    assert reads["c"].cancelled()


async def test_a_cancelled_leader_hands_its_batch_on() -> None:
    """Cancelling the read that sends a batch still serves everyone who joined it."""
    coalescer = ReadCoalescer()
    gate = _Gate()
    first = asyncio.ensure_future(coalescer.read("a", gate.send, gate.alone))
    await _settle()
    # the leader opens its batch and waits one loop turn: reads started in that turn join
    leader = asyncio.ensure_future(coalescer.read("b", gate.send, gate.alone))
    joined = [asyncio.ensure_future(coalescer.read(k, gate.send, gate.alone)) for k in "cb"]
    await _settle()
    assert gate.batches[1] == ["b", "c"]
    leader.cancel()
    await _settle()
    gate.release.set()
    assert await first == "value of a"
    assert [await j for j in joined] == ["value of c", "value of b"]
    assert leader.cancelled()


async def test_a_read_after_a_write_sees_the_write(tier: RedisTier, clock: ManualClock) -> None:
    """Under coalesced reads, a get issued after set/delete returned never sees the old value."""
    key = "shop:order"
    stop = asyncio.Event()

    async def background_reader() -> None:
        while not stop.is_set():
            await tier.get(key)

    readers = [asyncio.ensure_future(background_reader()) for _ in range(16)]
    try:
        for version in range(60):
            await tier.set(key, Entry(version, clock.time()))
            got = await asyncio.gather(*(tier.get(key) for _ in range(4)))
            assert all(e is not None and e.value == version for e in got)
            await tier.delete_many([key])
            got = await asyncio.gather(*(tier.get(key) for _ in range(4)))
            assert all(e is None for e in got)
    finally:
        stop.set()
        await asyncio.gather(*readers)


async def test_no_stale_set_under_coalesced_reads(redis_url: str) -> None:
    """A load that began before an invalidation cannot store its result, with reads coalesced."""
    cache = sc.Cache([sc.RedisTier(redis_url)], namespace="coal", bus=False)
    async with cache:
        started, finish = asyncio.Event(), asyncio.Event()

        async def slow_loader() -> str:
            started.set()
            await finish.wait()
            return "old"

        load = asyncio.ensure_future(cache.get_or_set("k", slow_loader, ttl=60))
        await started.wait()
        await cache.set("k", "new", ttl=60)
        await cache.invalidate(keys=["k"])
        await cache.set("k", "newer", ttl=60)
        finish.set()
        assert await load == "old"  # the caller gets what it loaded ...
        got = await asyncio.gather(*(cache.get("k") for _ in range(32)))
        assert got == ["newer"] * 32  # ... but it was not stored over the newer value


async def test_multi_key_reads_join_a_batch_and_can_be_cancelled() -> None:
    """read_keys shares the loop turn's batch with single reads; cancelling one leaves the rest."""
    coalescer = ReadCoalescer()
    gate = _Gate()
    first = asyncio.ensure_future(coalescer.read("a", gate.send, gate.alone))
    await _settle()
    leader = asyncio.ensure_future(coalescer.read("b", gate.send, gate.alone))
    many = asyncio.ensure_future(coalescer.read_keys(["b", "c", "d"], gate.send))
    dropped = asyncio.ensure_future(coalescer.read_keys(["c", "e"], gate.send))
    await _settle()
    assert gate.batches[1] == ["b", "c", "d", "e"]
    dropped.cancel()
    gate.release.set()
    assert await first == "value of a" and await leader == "value of b"
    assert await many == ["value of b", "value of c", "value of d"]
    assert dropped.cancelled()


async def test_leases_taken_in_a_batch_are_voided_by_an_invalidation(
    tier: RedisTier, clock: ManualClock
) -> None:
    """Concurrent leases (coalesced) still refuse the sets an invalidation voided."""
    keys = [f"shop:l{i}" for i in range(30)]
    leases = await asyncio.gather(*(tier.lease(k, ["team"]) for k in keys))
    assert _stats(tier).coalesced > 0
    await tier.invalidate_tags(["team"])
    stored = await asyncio.gather(
        *(
            tier.set(k, Entry(1, clock.time(), tags=("team",)), le)
            for k, le in zip(keys, leases, strict=True)
        )
    )
    assert not any(stored)
    fresh = await asyncio.gather(*(tier.lease(k, ["team"]) for k in keys))
    stored = await asyncio.gather(
        *(
            tier.set(k, Entry(2, clock.time(), tags=("team",)), le)
            for k, le in zip(keys, fresh, strict=True)
        )
    )
    assert all(stored)
    got = await asyncio.gather(*(tier.get(k) for k in keys))
    assert [e.value for e in got if e is not None] == [2] * 30


async def test_a_leader_cancelled_in_its_loop_turn_still_serves_the_joined_reads() -> None:
    """Cancelling the read that opened a batch before it was sent (in the loop turn it
    waits for reads to join) still answers every read that joined, each with its own value."""
    coalescer = ReadCoalescer()
    gate = _Gate()
    first = asyncio.ensure_future(coalescer.read("a", gate.send, gate.alone))
    await _settle()  # "a" is in flight alone: the next read opens a batch
    # the leader opens its batch and waits one loop turn: reads started in that turn join
    leader = asyncio.ensure_future(coalescer.read("b", gate.send, gate.alone))
    joined = [asyncio.ensure_future(coalescer.read(k, gate.send, gate.alone)) for k in "cbd"]
    many = asyncio.ensure_future(coalescer.read_keys(["e", "c"], gate.send))
    await asyncio.sleep(0)  # they joined; the leader still waits for its turn to end
    assert not gate.batches[1:]
    leader.cancel()
    gate.release.set()
    got = await asyncio.wait_for(asyncio.gather(*joined, many), timeout=5)
    assert got == ["value of c", "value of b", "value of d", ["value of e", "value of c"]]
    assert leader.cancelled() and await first == "value of a"
    assert gate.batches == [["a"], ["b", "c", "d", "e"]]  # sent once, by the task handed it


async def test_a_joined_read_cancelled_with_its_leader_leaves_the_others_served() -> None:
    """A joined read cancelled in the same loop turn as its leader drops its own read only."""
    coalescer = ReadCoalescer()
    gate = _Gate()
    first = asyncio.ensure_future(coalescer.read("a", gate.send, gate.alone))
    await _settle()
    leader = asyncio.ensure_future(coalescer.read("b", gate.send, gate.alone))
    joined = {k: asyncio.ensure_future(coalescer.read(k, gate.send, gate.alone)) for k in "cde"}
    await asyncio.sleep(0)  # they joined; the leader still waits for its turn to end
    leader.cancel()
    joined["d"].cancel()
    gate.release.set()
    assert await asyncio.wait_for(joined["c"], timeout=5) == "value of c"
    assert await asyncio.wait_for(joined["e"], timeout=5) == "value of e"
    assert joined["d"].cancelled() and leader.cancelled() and await first == "value of a"
    assert gate.batches[-1] == ["c", "e"]  # neither the leader's key nor the dropped read's


async def test_cancelled_leaders_leave_no_tier_read_hanging(
    tier: RedisTier, clock: ManualClock
) -> None:
    """At the tier, with every batch's leader cancelled in its loop turn, each joined get
    still returns its own entry."""
    keys = [f"shop:h{i}" for i in range(20)]
    await tier.set_many({k: Entry(k.upper(), clock.time()) for k in keys})
    for _ in range(10):
        first = asyncio.ensure_future(tier.get("shop:h0"))  # in flight alone
        await asyncio.sleep(0)
        leader = asyncio.ensure_future(tier.get("shop:h1"))  # opens the batch
        joined = [asyncio.ensure_future(tier.get(k)) for k in keys[2:]]
        await asyncio.sleep(0)  # they joined; the leader still waits for its turn to end
        leader.cancel()
        got = await asyncio.wait_for(asyncio.gather(*joined), timeout=5)
        assert [e.value for e in got if e is not None] == [k.upper() for k in keys[2:]]
        assert (await first) is not None
        assert leader.cancelled()
