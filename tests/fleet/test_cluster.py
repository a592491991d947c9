"""The fleet services on a real 6-node Redis Cluster (3 primaries, 3 replicas), across processes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from tests.topologies import Cluster
from tests.waiting import poll, wait_until

import stratacache as sc

from .processes import Worker, run_lockers

pytestmark = pytest.mark.slow

#: namespaces whose channels, generation keys and entries land on every primary ("shop" too)
NAMESPACES = ["shop", "users", "orders", "a", "b", "c", "reports", "n7"]


def spec(cluster: Cluster, **extra: Any) -> dict[str, Any]:
    return {
        "mode": "cluster",
        "url": cluster.url,
        "startup_nodes": cluster.addresses[1:],
        **extra,
    }


def tier(cluster: Cluster) -> sc.RedisTier:
    return sc.RedisTier(
        connection=sc.RedisConnection(
            cluster.url, cluster=True, startup_nodes=cluster.addresses[1:]
        ),
        socket_timeout=2.0,
    )


def writer(cluster: Cluster, namespace: str) -> sc.Cache:
    return sc.Cache(tiers=[sc.MemoryTier(), tier(cluster)], namespace=namespace)


@pytest.fixture
def raw(cluster6: Cluster) -> Iterator[redis.RedisCluster]:
    client = redis.RedisCluster.from_url(cluster6.url)
    yield client
    client.close()


def test_namespaces_land_on_every_primary(raw: redis.RedisCluster) -> None:
    """The test namespaces' channels hash to every primary (else the test proves little)."""
    owners = {raw.get_node_from_key(f"stratacache:{ns}").name for ns in NAMESPACES}
    assert len(owners) == 3


def test_bus_keeps_processes_coherent_for_every_namespace(cluster6: Cluster) -> None:
    """Two worker processes' memory tiers follow another process's writes in 8 namespaces."""
    workers = [Worker(spec(cluster6, namespaces=NAMESPACES)) for _ in range(2)]
    try:
        for worker in workers:
            wait_until(lambda w=worker: all(w.ask("connected").values()), what="buses up")

        async def write(value: str) -> None:
            for ns in NAMESPACES:
                async with writer(cluster6, ns) as cache:
                    await cache.set("k", value)

        asyncio.run(write("v1"))
        for worker in workers:
            assert set(worker.ask("get", key="k").values()) == {"v1"}
            assert all(worker.ask("l1", key="k").values())  # now served from memory
        asyncio.run(write("v2"))
        for worker in workers:
            wait_until(
                lambda w=worker: set(w.ask("get", key="k").values()) == {"v2"},
                timeout=5,
                what="every namespace's memory tier follows the write",
            )
    finally:
        for worker in workers:
            worker.stop()


async def test_flush_namespace_and_a_given_cluster_client(cluster6: Cluster) -> None:
    """``flush_namespace`` works for any namespace; ``RedisBus(client=RedisCluster)`` works."""
    client = sc.RedisConnection(cluster6.url, cluster=True).client()
    for ns in ("shop", "users", "orders"):
        one = sc.Cache(tiers=[sc.MemoryTier(), tier(cluster6)], namespace=ns)
        two = sc.Cache(
            tiers=[sc.MemoryTier(), tier(cluster6)], namespace=ns, bus=sc.RedisBus(client=client)
        )
        async with one, two:
            await poll(lambda c=two: c.bus.connected, what="bus on a given cluster client")  # type: ignore[union-attr]
            await one.set("k", "old")
            assert await two.get("k") == "old"
            generation = await one.flush_namespace()
            assert generation >= 1
            await poll(lambda c=two, g=generation: c.invalidator.generation == g, what="flush")
            assert await two.get("k") is None
    await client.aclose()


def test_tracking_evicts_outside_writes_on_every_node(
    cluster6: Cluster, raw: redis.RedisCluster
) -> None:
    """With tracking, a raw write to a cached key on any primary evicts it in another process."""
    namespace = "trk" + uuid.uuid4().hex[:6]
    keys: dict[str, str] = {}
    i = 0
    while len(keys) < 3:  # one key per primary
        key = f"k{i}"
        keys.setdefault(raw.get_node_from_key(f"{namespace}:{key}").name, key)
        i += 1
    worker = Worker(spec(cluster6, namespaces=[namespace], tracking=True))
    try:
        wait_until(lambda: all(worker.ask("connected").values()), what="bus and trackers up")

        async def write() -> None:
            async with writer(cluster6, namespace) as cache:
                for key in keys.values():
                    await cache.set(key, "v")

        asyncio.run(write())
        for key in keys.values():
            wait_until(lambda k=key: worker.ask("get", key=k)[namespace] == "v", what="stored")
            assert worker.ask("l1", key=key)[namespace]
        for key in keys.values():
            raw.set(f"{namespace}:{key}", b"written by another program")
        for key in keys.values():
            wait_until(
                lambda k=key: not worker.ask("l1", key=k)[namespace], timeout=5, what="evicted"
            )
    finally:
        worker.stop()


def test_one_loader_call_under_the_fleet_lock_across_four_processes(
    cluster6: Cluster, raw: redis.RedisCluster, tmp_path: Path
) -> None:
    """``lock=True`` runs each key's loader once across 4 processes, whatever the key's slot."""
    namespace = "lock" + uuid.uuid4().hex[:6]
    keys = [f"key{i}" for i in range(6)]
    results = run_lockers(spec(cluster6, namespaces=[namespace], keys=keys), 4, tmp_path / "go")
    for result in results:
        assert result["values"] == [f"value-of-{k}" for k in keys]
    loads = {k: int(raw.get(f"loads:{namespace}:{k}") or 0) for k in keys}
    assert loads == dict.fromkeys(keys, 1)


async def test_hot_keys_published_and_warmed(cluster6: Cluster) -> None:
    """Hot keys are published to the cluster and warm a fresh process's memory tier."""
    namespace = "hot" + uuid.uuid4().hex[:6]
    old = writer(cluster6, namespace)
    async with old:
        redis_tier: Any = old.tiers.slots[-1].tier
        hot = redis_tier.hot_keys(k=4, interval=3600).attach(old)
        for i in range(6):
            for _ in range(10 - i):
                await old.get_or_set(f"k{i}", lambda i=i: f"v{i}")
        assert await hot.publish() > 0
        new = writer(cluster6, namespace)
        async with new:
            sc.HotKeys(connection=redis_tier.connection).attach(new)
            await new.warm(from_hot=True)
            top: Any = new.tiers.top
            assert top.peek(new.full_key("k0")) is not None


async def test_process_started_while_the_startup_node_is_down(
    cluster_factory: Any, tmp_path: Path
) -> None:
    """With the URL's own node down at start, the cache answers and uses the cluster soon."""
    cluster: Cluster = cluster_factory()
    try:
        down = cluster.nodes[0]
        down.stop()
        cache = sc.Cache(tiers=[sc.MemoryTier(), tier(cluster)], namespace="start", default_ttl=60)
        async with cache:  # no exception, though the first startup node is gone
            assert await cache.get_or_set("k", lambda: "v") == "v"
            assert cache.sync.get_or_set("s", lambda: "w") == "w"
            other = sc.Cache(tiers=[tier(cluster)], namespace="start", bus=False)
            async with other:

                async def stored() -> bool:
                    await cache.set("k2", "x")
                    return await other.get("k2") == "x"

                for _ in range(200):  # the cluster serves all slots again after the failover
                    if await stored():
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("the cluster tier was never used")
            await poll(lambda: cache.bus.connected, timeout=15, what="bus up")  # type: ignore[union-attr]
    finally:
        for node in cluster.nodes:
            node.stop()


def test_sync_callers_share_the_fleet_lock_on_a_cluster(cluster6: Cluster) -> None:
    """Blocking callers of two caches (two lock instances) load each key once on a cluster."""
    namespace = "slock" + uuid.uuid4().hex[:6]
    caches = [writer(cluster6, namespace) for _ in range(2)]
    loads: list[str] = []
    keys = [f"key{i}" for i in range(4)]

    def loader(key: str) -> str:
        loads.append(key)
        time.sleep(0.3)  # the other cache asks meanwhile
        return f"value-of-{key}"

    def call(cache: sc.Cache, key: str) -> Any:
        return cache.sync.get_or_set(key, lambda: loader(key), lock=True)

    for (
        cache
    ) in caches:  # connect the blocking clients first (their own start-up is not tested here)
        cache.sync.set("warm", 1)
    try:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(call, c, k) for k in keys for c in caches]
            assert [f.result(timeout=30) for f in futures] == [
                f"value-of-{k}" for k in keys for _ in caches
            ]
    finally:
        for cache in caches:
            cache.sync.close()
    assert sorted(loads) == sorted(keys)
