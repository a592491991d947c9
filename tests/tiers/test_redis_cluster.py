"""RedisTier against a real Redis Cluster: 3 primaries, 3 replicas (slow: the shared fixture)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from tests.topologies import Cluster

from stratacache.testing import TierConformance
from stratacache.tiers.redis import RedisTier

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster_url(cluster_factory: Callable[[], Cluster]) -> str:
    """A 6-node cluster (3 primaries, 3 replicas: ``tests.topologies``) of the module's own."""
    return cluster_factory().url


class TestRedisClusterTier(TierConformance):
    """The conformance suite on a cluster RedisTier."""

    @pytest.fixture
    def raw_client(self, cluster_url: str) -> Iterator[redis.RedisCluster]:
        client = redis.RedisCluster.from_url(cluster_url)
        yield client
        client.close()

    @pytest.fixture
    def tier(self, cluster_url: str, raw_client: redis.RedisCluster) -> RedisTier:
        raw_client.flushall()
        return RedisTier(
            cluster_url, cluster=True, ttl=3600, socket_timeout=5
        )  # behaviour, not speed

    @pytest.fixture
    def tier_twin(self, cluster_url: str) -> RedisTier:
        return RedisTier(cluster_url, cluster=True, socket_timeout=5)

    @pytest.fixture
    def write_raw(self, raw_client: redis.RedisCluster) -> Callable[[str, bytes], Any]:
        return raw_client.set

    @pytest.fixture
    def physical_ttl(self, raw_client: redis.RedisCluster) -> Callable[[str], float | None]:
        def ttl(key: str) -> float | None:
            ms = int(raw_client.pttl(key))  # type: ignore[arg-type]
            return None if ms < 0 else ms / 1000

        return ttl


def _evalsha_calls(cluster_url: str) -> int:
    """EVALSHA calls served so far, summed over every primary."""
    client = redis.RedisCluster.from_url(cluster_url)
    try:
        total = 0
        for node in client.get_primaries():
            stats = client.info("commandstats", target_nodes=node)
            total += int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
        return total
    finally:
        client.close()


async def test_cluster_set_many_of_10000_tagged_entries_is_stored_in_full(
    cluster_url: str,
) -> None:
    """10,000 tagged entries are all stored, with one tag script call per chunk, not per entry."""
    import time

    from stratacache.core.entry import Entry
    from stratacache.core.tier import TierContext

    raw = redis.RedisCluster.from_url(cluster_url)
    raw.flushall()
    tier = RedisTier(cluster_url, cluster=True, socket_timeout=5)
    await tier.start(TierContext("shop"))
    now = time.time()
    entries = {
        f"shop:t{i}": Entry("x" * 1024, now, expires=now + 600, tags=(f"user:{i % 50}",))
        for i in range(10_000)
    }
    before = _evalsha_calls(cluster_url)
    await tier.set_many(entries)
    scripts = _evalsha_calls(cluster_url) - before
    assert scripts <= 10_000 // 100  # one per chunk of entries
    assert tier.dropped_writes == 0
    got = await tier.get_many(list(entries))
    assert len(got) == 10_000
    await tier.invalidate_tags(["user:3"])
    assert len(await tier.get_many(list(entries))) == 10_000 - 200
    await tier.close()
    raw.close()


def test_cluster_bookkeeping_keys_spread_over_slots() -> None:
    """On a cluster, tag counters and epoch shards of one namespace use many slots."""
    from redis.crc import key_slot

    from stratacache.tiers import _redis_scripts as rs

    names = rs.KeyNames("shop", cluster=True)
    tag_slots = {key_slot(names.tag(f"user:{i}").encode()) for i in range(100)}
    epoch_slots = {key_slot(e.encode()) for e in names.epochs}
    assert len(tag_slots) > 90 and len(epoch_slots) == rs.EPOCH_SHARDS
    entry_epochs = {names.epoch_of(f"shop:k{i}") for i in range(1000)}
    assert entry_epochs == set(names.epochs)  # entries spread over every shard
    single = rs.KeyNames("shop", cluster=False)
    assert single.tag("t") == single.tag_prefix + "t" and single.epochs == [single.epoch]


async def test_cluster_clear_voids_leases_on_every_epoch_shard(cluster_url: str) -> None:
    """After clear(), a lease taken before it cannot store, whatever the key's shard."""
    import time

    from stratacache.core.entry import Entry
    from stratacache.core.tier import TierContext

    tier = RedisTier(cluster_url, cluster=True, socket_timeout=5)
    await tier.start(TierContext("shop"))
    keys = [f"shop:l{i}" for i in range(40)]
    leases = {k: await tier.lease(k, ["t"]) for k in keys}
    await tier.clear()
    stored = [await tier.set(k, Entry(1, time.time(), tags=("t",)), leases[k]) for k in keys]
    assert not any(stored)
    assert await tier.get_many(keys) == {}
    await tier.close()


def test_cluster_tier_started_from_many_threads_builds_one_client(cluster_url: str) -> None:
    """Caches starting one cluster tier from several threads at once share one blocking
    client, and their first leased sets all succeed (none sees a cluster error)."""
    import asyncio
    import threading
    import time

    from stratacache.core.entry import Entry
    from stratacache.core.tier import TierContext

    tier = RedisTier(cluster_url, cluster=True, socket_timeout=5)
    threads = 8
    barrier = threading.Barrier(threads)
    sides: list[Any] = []
    errors: list[BaseException] = []

    def use(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            asyncio.run(tier.start(TierContext("shop")))
            sides.append(tier.sync_side)
            barrier.wait(timeout=30)
            for i in range(20):
                key = f"shop:thread{n}:{i}"
                lease = tier.lease_sync(key, ["t"])
                assert tier.set_sync(key, Entry(i, time.time(), tags=("t",)), lease)
        except BaseException as exc:  # reported below, with the thread's failure
            errors.append(exc)

    workers = [threading.Thread(target=use, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert errors == []
    assert len(sides) == threads and all(side is sides[0] for side in sides)
    for n in range(threads):
        entry = tier.get_sync(f"shop:thread{n}:19", ["t"])
        assert entry is not None and entry.value == 19


async def test_cluster_delete_many_never_leaves_a_stale_leased_write(cluster_url: str) -> None:
    """Keys on many slots: a leased write (lease taken before the call) tried before every
    command delete_many sends is refused or removed; the keys are gone once it returns."""
    from tests.tiers.test_redis_void_order import _Stepwise

    from stratacache.core.clock import ManualClock
    from stratacache.core.entry import Entry
    from stratacache.core.tier import TierContext

    clock = ManualClock()
    context = TierContext("shop", clock=clock)
    keys = [f"shop:c{i}" for i in range(12)]  # spread over the three primaries
    writer = RedisTier(cluster_url, cluster=True, socket_timeout=5)
    await writer.start(context)
    hooks: list[Callable[[], None]] = []

    def between() -> None:
        for hook in hooks:
            hook()

    def stale(key: str) -> Callable[[], None]:
        lease = writer.lease_sync(key, [])
        return lambda: writer.set_sync(key, Entry("stale", clock.time()), lease) and None

    client = _Stepwise(redis.RedisCluster.from_url(cluster_url), between)
    tier = RedisTier(cluster_url, cluster=True, socket_timeout=5, sync_client=client)
    await tier.start(context)
    try:
        tier.set_many_sync({k: Entry("old", clock.time()) for k in keys})
        hooks += [stale(k) for k in keys]
        assert tier.delete_many_sync(keys) == len(keys)
        hooks.clear()
        assert tier.get_many_sync(keys) == {}
    finally:
        await tier.close()
        await writer.close()
        client.client.close()
