"""Coalesced leased writes: a loop turn's backfills and loads go out as one pipeline."""

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
from stratacache.tiers._redis_write_coalesce import WriteCoalescer, coalescer
from stratacache.tiers.redis import RedisTier

NS = "shop"  # as the shared ``tier`` fixture (tests/tiers/conftest.py)


@pytest.fixture
def redis_url(own_redis_url: str) -> str:
    """This module counts commands: a server of each test's own."""
    return own_redis_url


def _evalsha_calls(raw: redis.Redis) -> int:
    stats: dict[str, Any] = raw.info("commandstats")  # type: ignore[assignment]
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def _leases(tier: RedisTier, keys: Sequence[str]) -> list[Any]:
    return list(await asyncio.gather(*(tier.lease(k, ()) for k in keys)))


async def test_leased_writes_of_one_turn_are_one_round_trip(
    redis_url: str, raw: redis.Redis, clock: ManualClock
) -> None:
    """64 leased writes issued in one loop turn are one pipeline: one send, 64 script calls."""
    sends = 0

    class Counting(redis.asyncio.Connection):
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            nonlocal sends
            sends += 1
            await super().send_packed_command(command, check_health)

    client = redis.asyncio.Redis(
        connection_pool=redis.asyncio.ConnectionPool.from_url(redis_url, connection_class=Counting)
    )
    tier = RedisTier(redis_url, client=client)
    await tier.start(TierContext(NS, clock=clock))
    keys = [f"shop:w{i}" for i in range(64)]
    leases = await _leases(tier, keys)
    await tier.set("shop:warm", Entry(0, clock.time()), (await _leases(tier, ["shop:warm"]))[0])
    sends_before, evalsha_before = sends, _evalsha_calls(raw)
    stored = await asyncio.gather(
        *(tier.set(k, Entry(k, clock.time()), le) for k, le in zip(keys, leases, strict=True))
    )
    assert all(stored)
    assert sends - sends_before == 1
    assert _evalsha_calls(raw) - evalsha_before == 64
    assert coalescer(tier).coalesced >= 63
    assert [raw.exists(k) for k in keys] == [1] * 64
    await tier.close()
    await client.aclose()


async def test_each_coalesced_write_keeps_its_own_ttl(
    tier: RedisTier, raw: redis.Redis, clock: ManualClock
) -> None:
    """Writes sharing a pipeline each expire at their own entry's end, values their own."""
    keys = [f"shop:t{i}" for i in range(20)]
    leases = await _leases(tier, keys)
    now = clock.time()
    entries = {k: Entry(i, now, expires=now + 100 * (i + 1)) for i, k in enumerate(keys)}
    stored = await asyncio.gather(
        *(tier.set(k, entries[k], le) for k, le in zip(keys, leases, strict=True))
    )
    assert all(stored) and coalescer(tier).coalesced >= 19
    for i, key in enumerate(keys):
        assert 100_000 * (i + 1) - 5_000 < raw.pttl(key) <= 100_000 * (i + 1)
    got = await tier.get_many(keys)
    assert {k: e.value for k, e in got.items()} == {k: i for i, k in enumerate(keys)}


@pytest.mark.parametrize("invalidate_first", [True, False])
async def test_an_invalidation_in_the_same_turn_wins(
    tier: RedisTier, clock: ManualClock, invalidate_first: bool
) -> None:
    """Leased writes held back for a loop turn never land over an invalidation issued in
    that turn, before or after them: every write is refused, no key holds a value."""
    keys = [f"shop:i{i}" for i in range(30)]
    leases = await _leases(tier, keys)
    tasks: list[asyncio.Future[Any]] = []
    if invalidate_first:
        tasks.append(asyncio.ensure_future(tier.delete_many(keys)))
    tasks += [
        asyncio.ensure_future(tier.set(k, Entry("stale", clock.time()), le))
        for k, le in zip(keys, leases, strict=True)
    ]
    if not invalidate_first:
        tasks.append(asyncio.ensure_future(tier.delete_many(keys)))
    await asyncio.gather(*tasks)
    assert await tier.get_many(keys) == {}
    assert coalescer(tier).coalesced >= 29


async def test_a_newer_write_in_the_same_turn_wins(tier: RedisTier, clock: ManualClock) -> None:
    """An explicit set issued after a held-back backfill of the same key is what stays."""
    lease = (await _leases(tier, ["shop:n"]))[0]
    backfill = asyncio.ensure_future(tier.set("shop:n", Entry("old", clock.time()), lease))
    await tier.set("shop:n", Entry("new", clock.time()))
    assert await backfill is False
    entry = await tier.get("shop:n")
    assert entry is not None and entry.value == "new"


async def test_a_failing_batch_fails_each_caller_and_raises_to_none(
    redis_factory: Any,
) -> None:
    """Loads whose writes share a batch that fails: each caller still gets its value, the
    tier counts one failure per write."""
    server = redis_factory()
    cache = sc.Cache([sc.RedisTier(server.url, socket_timeout=2.0)], namespace="wf", bus=False)
    async with cache:
        await cache.get("warm")
        release, all_started = asyncio.Event(), asyncio.Event()
        started = 0

        async def loader() -> str:
            nonlocal started
            started += 1
            if started == 20:
                all_started.set()
            await release.wait()
            return "loaded"

        loads = [
            asyncio.ensure_future(cache.get_or_set(f"k{i}", loader, ttl=60)) for i in range(20)
        ]
        await all_started.wait()  # every lease taken, every loader waiting
        errors = cache.stats()["tiers"]["redis"]["errors"]
        server.stop()
        release.set()
        assert await asyncio.gather(*loads) == ["loaded"] * 20
        assert cache.stats()["tiers"]["redis"]["errors"] - errors == 20


class _Gate:
    """A ``send`` for ``WriteCoalescer`` that records batches and waits until released."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.release = asyncio.Event()

    async def send(self, calls: Sequence[Any], nbytes: int) -> list[Any]:
        self.batches.append([c[0] for c in calls])
        await self.release.wait()
        return [ValueError(c[0]) if c[0] == "bad" else f"done {c[0]}" for c in calls]


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_error_reply_fails_its_own_writer_only() -> None:
    """A call whose reply is an error gets it; the others of its batch get theirs."""
    writes = WriteCoalescer()
    gate = _Gate()
    gate.release.set()
    got = await asyncio.gather(*(writes.write((k,), 1, gate.send) for k in ("a", "bad", "c")))
    assert gate.batches == [["a", "bad", "c"]]
    assert got[0] == "done a" and isinstance(got[1], ValueError) and got[2] == "done c"


async def test_a_cancelled_writer_is_left_out_and_a_cancelled_leader_hands_on() -> None:
    """A writer cancelled before the send is not sent; cancelling the leader in its
    loop turn still sends the others' writes."""
    writes = WriteCoalescer()
    gate = _Gate()
    gate.release.set()
    tasks = {k: asyncio.ensure_future(writes.write((k,), 1, gate.send)) for k in "abcd"}
    await asyncio.sleep(0)  # every write joined; the leader ("a") waits for its turn to end
    tasks["a"].cancel()
    tasks["c"].cancel()
    await _settle()
    assert gate.batches == [["b", "d"]]
    assert await tasks["b"] == "done b" and await tasks["d"] == "done d"
    assert tasks["a"].cancelled() and tasks["c"].cancelled()


async def test_scripts_lost_by_redis_are_reloaded(
    tier: RedisTier, raw: redis.Redis, clock: ManualClock
) -> None:
    """After SCRIPT FLUSH, coalesced leased writes reload the script and store."""
    keys = [f"shop:s{i}" for i in range(10)]
    leases = await _leases(tier, keys)
    raw.script_flush()
    stored = await asyncio.gather(
        *(tier.set(k, Entry(1, clock.time()), le) for k, le in zip(keys, leases, strict=True))
    )
    assert all(stored)
    lease = (await _leases(tier, ["shop:alone"]))[0]
    raw.script_flush()
    assert await tier.set("shop:alone", Entry(2, clock.time()), lease)


async def test_failing_writes_raise_tier_error(redis_factory: Any, clock: ManualClock) -> None:
    """At the tier, every write of a failed batch raises TierError."""
    server = redis_factory()
    tier = RedisTier(server.url, socket_timeout=2.0)
    await tier.start(TierContext(NS, clock=clock))
    keys = [f"shop:f{i}" for i in range(10)]
    leases = await _leases(tier, keys)
    server.stop()
    results = await asyncio.gather(
        *(tier.set(k, Entry(1, clock.time()), le) for k, le in zip(keys, leases, strict=True)),
        return_exceptions=True,
    )
    assert all(isinstance(r, TierError) for r in results)
    await tier.close()
