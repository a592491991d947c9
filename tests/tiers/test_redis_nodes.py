"""Per-node health on a cluster: a dead primary costs only its own keys (slow: own servers)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis.crc import key_slot

import stratacache as sc
from stratacache.core.clock import ManualClock
from stratacache.core.entry import Entry
from stratacache.core.errors import NodeDownError, TierError
from stratacache.core.tier import TierContext
from stratacache.tiers._redis_nodes import NodeHealth
from stratacache.tiers.redis import RedisTier

pytestmark = pytest.mark.slow


def test_node_health_opens_after_threshold_and_lets_one_call_through() -> None:
    """Three failures open a node; after the cool-down one trial call passes; success closes."""
    clock = ManualClock(start=0.0)
    health = NodeHealth(threshold=3, cooldown=1.0, clock=clock.time)
    for _ in range(2):
        health.failed("a:1")
    assert not health.is_down("a:1")
    health.failed("a:1")
    assert health.is_down("a:1") and not health.is_down("b:2") and not health.is_down(None)
    with pytest.raises(NodeDownError):
        health.check("a:1", "redis", "get")
    clock.advance(1.0)
    assert not health.is_down("a:1")  # the trial call
    assert health.is_down("a:1")  # ... and only one
    health.succeeded("a:1")
    assert not health.is_down("a:1") and health.opened == 1


@pytest.fixture
def lonely_cluster(redis_factory: Callable[..., Any], wait_until: Callable[..., None]) -> Any:
    """Three primaries, no replicas, serving what they hold while one is down."""
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.fail("redis-cli not found; install it: apt-get install redis-server")
    nodes = [
        redis_factory(
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-require-full-coverage",
            "no",
        )
        for _ in range(3)
    ]
    addresses = [f"127.0.0.1:{n.port}" for n in nodes]
    subprocess.run(
        [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=60,
    )

    def ready() -> bool:
        for node in nodes:
            client = redis.Redis(port=node.port)
            try:
                if client.cluster("info")["cluster_state"] != "ok":  # type: ignore[index]
                    return False
            finally:
                client.close()
        return True

    wait_until(ready, timeout=30, what="cluster_state:ok")
    return nodes


def _keys_by_port(url: str, count: int) -> dict[int, list[str]]:
    client = redis.RedisCluster.from_url(url)
    try:
        out: dict[int, list[str]] = {}
        for i in range(count):
            key = f"shop:k{i}"
            node = client.nodes_manager.get_node_from_slot(key_slot(key.encode()))
            out.setdefault(int(node.port), []).append(key)
        return out
    finally:
        client.close()


async def test_a_dead_primary_costs_only_its_keys(lonely_cluster: Any) -> None:
    """With one primary killed, keys elsewhere keep hitting and the tier's breaker stays closed."""
    url = f"redis://127.0.0.1:{lonely_cluster[0].port}/0"
    victim = lonely_cluster[2]
    tier = RedisTier(url, cluster=True, socket_timeout=1, socket_connect_timeout=0.2)
    cache = sc.Cache([tier], namespace="shop", bus=False)
    async with cache:
        await cache.set_many({f"k{i}": i for i in range(60)}, ttl=600)
        by_port = _keys_by_port(url, 60)
        lost = {k.removeprefix("shop:") for k in by_port[victim.port]}
        kept = [f"k{i}" for i in range(60) if f"k{i}" not in lost]
        victim.stop()
        for _ in range(5):  # single gets, batches and coalesced gets alike
            got = await cache.get_many([f"k{i}" for i in range(60)])
            assert set(got) == set(kept) and all(got[k] == int(k[1:]) for k in got)
            singles = await asyncio.gather(*(cache.get(f"k{i}") for i in range(60)))
            assert [v for v in singles if v is not None] == [int(k[1:]) for k in kept]
        stats = cache.stats()["tiers"]["redis"]
        assert stats["circuit_opened"] == 0
        assert tier.health().down_nodes() == [f"127.0.0.1:{victim.port}"]
        with pytest.raises(NodeDownError):
            await tier.get("shop:" + sorted(lost)[0])
        healthy = "shop:" + kept[0]
        assert (await tier.get(healthy)) is not None


def test_sync_reads_skip_a_dead_primary(lonely_cluster: Any) -> None:
    """The blocking API answers for keys on live nodes while one primary is down."""
    url = f"redis://127.0.0.1:{lonely_cluster[0].port}/0"
    victim = lonely_cluster[1]
    tier = RedisTier(url, cluster=True, socket_timeout=1, socket_connect_timeout=0.2)
    asyncio.run(tier.start(TierContext("shop")))
    now = time.time()
    keys = [f"shop:k{i}" for i in range(40)]
    tier.set_many_sync({k: Entry(k, now) for k in keys})
    kept = [k for port, ks in _keys_by_port(url, 40).items() if port != victim.port for k in ks]
    victim.stop()
    for _ in range(5):
        assert set(tier.get_many_sync(keys)) == set(kept)
    errors = 0
    for key in keys:
        try:
            entry = tier.get_sync(key)
        except TierError:
            errors += 1
            continue
        assert entry is not None and entry.value == key and key in kept
    assert errors == len(keys) - len(kept)


async def test_read_through_on_a_dead_primary_spares_the_healthy_nodes(lonely_cluster: Any) -> None:
    """``get_or_set`` over every node with one primary dead: healthy keys never reach a loader."""
    url = f"redis://127.0.0.1:{lonely_cluster[0].port}/0"
    victim = lonely_cluster[2]
    tier = RedisTier(url, cluster=True, socket_timeout=1, socket_connect_timeout=0.2)
    cache = sc.Cache([tier], namespace="shop", bus=False)
    loaded: list[str] = []

    def loader(key: str) -> Callable[[], int]:
        def load() -> int:
            loaded.append(key)
            return int(key[1:])

        return load

    async with cache:
        await cache.set_many({f"k{i}": i for i in range(60)}, ttl=600)
        by_port = _keys_by_port(url, 60)
        lost = {k.removeprefix("shop:") for k in by_port[victim.port]}
        victim.stop()
        # two of the dead node's keys in a row (no healthy success between their failures),
        # then every key
        order = [*sorted(lost)[:2], *(f"k{i}" for i in range(60))]
        for key in order:
            assert await cache.get_or_set(key, loader(key)) == int(key[1:])
        assert cache.stats()["tiers"]["redis"]["circuit_opened"] == 0
        assert set(loaded) <= lost


def test_node_health_logs_each_state_change_once(caplog: pytest.LogCaptureFixture) -> None:
    """One line when a node's circuit opens, one when it closes; none per refused call."""
    clock = ManualClock(start=0.0)
    health = NodeHealth(threshold=2, cooldown=1.0, clock=clock.time, name="shared")
    with caplog.at_level("WARNING", logger="stratacache"):
        for _ in range(5):
            health.failed("a:1")
        for _ in range(10):
            assert health.is_down("a:1")
        health.succeeded("a:1")
        health.succeeded("a:1")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "'shared'" in lines[0] and "a:1 down" in lines[0]
    assert "a:1 is back" in lines[1]


def _open_circuit(tier: RedisTier, lost_key: str) -> None:
    """Fail calls on ``lost_key``'s (dead) node until its circuit is open."""
    for _ in range(tier.health().threshold):
        with pytest.raises(TierError):
            tier.get_sync(lost_key)
    assert tier.health().is_down(tier.health().node_of(tier.sync_side.c, lost_key))  # type: ignore[union-attr]


async def test_batches_and_leases_skip_a_dead_primary(lonely_cluster: Any) -> None:
    """set_many/delete_many write the live nodes' part and then raise NodeDownError (the
    rest counted as dropped); a lease on the dead node fails fast, elsewhere it works."""
    url = f"redis://127.0.0.1:{lonely_cluster[0].port}/0"
    victim = lonely_cluster[2]
    tier = RedisTier(url, cluster=True, socket_timeout=1, socket_connect_timeout=0.2)
    await tier.start(TierContext("shop"))
    try:
        keys = [f"shop:k{i}" for i in range(40)]
        now = time.time()
        await tier.set_many({k: Entry(k, now) for k in keys})
        by_port = _keys_by_port(url, 40)
        lost = by_port[victim.port]
        kept = [k for k in keys if k not in lost]
        victim.stop()
        _open_circuit(tier, lost[0])
        with pytest.raises(NodeDownError):
            await tier.set_many({k: Entry(k + "!", now) for k in keys})
        assert tier.dropped_writes == len(lost)
        got = await tier.get_many(kept)
        assert {k: e.value for k, e in got.items()} == {k: k + "!" for k in kept}
        with pytest.raises(NodeDownError):
            await tier.lease(lost[0], ["t"])
        assert await tier.lease(kept[0], ["t"]) is not None
        with pytest.raises(NodeDownError):
            await tier.delete_many(keys)
        assert tier.dropped_writes == 2 * len(lost)
        assert await tier.get_many(kept) == {}
        assert await tier.delete_many(kept) == 0  # only live nodes: no error
    finally:
        await tier.close()


def test_sync_batches_and_leases_skip_a_dead_primary(lonely_cluster: Any) -> None:
    """The blocking twins behave alike."""
    url = f"redis://127.0.0.1:{lonely_cluster[0].port}/0"
    victim = lonely_cluster[1]
    tier = RedisTier(url, cluster=True, socket_timeout=1, socket_connect_timeout=0.2)
    asyncio.run(tier.start(TierContext("shop")))
    keys = [f"shop:k{i}" for i in range(40)]
    now = time.time()
    tier.set_many_sync({k: Entry(k, now) for k in keys})
    lost = _keys_by_port(url, 40)[victim.port]
    kept = [k for k in keys if k not in lost]
    victim.stop()
    _open_circuit(tier, lost[0])
    with pytest.raises(NodeDownError):
        tier.set_many_sync({k: Entry(k + "!", now) for k in keys})
    assert tier.dropped_writes == len(lost)
    assert {k: e.value for k, e in tier.get_many_sync(kept).items()} == {k: k + "!" for k in kept}
    with pytest.raises(NodeDownError):
        tier.lease_sync(lost[0], [])
    assert tier.lease_sync(kept[0], []) is not None
    with pytest.raises(NodeDownError):
        tier.delete_many_sync(keys)
    assert tier.get_many_sync(kept) == {}


async def test_the_cache_logs_a_dead_node_once_not_per_call(
    lonely_cluster: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Calls refused because their node is down are misses without a warning each."""
    url = f"redis://127.0.0.1:{lonely_cluster[0].port}/0"
    victim = lonely_cluster[0]
    tier = RedisTier(url, cluster=True, socket_timeout=1, socket_connect_timeout=0.2)
    cache = sc.Cache([tier], namespace="shop", bus=False)
    async with cache:
        await cache.set_many({f"k{i}": i for i in range(30)}, ttl=600)
        lost = [k.removeprefix("shop:") for k in _keys_by_port(url, 30)[victim.port]]
        victim.stop()
        with caplog.at_level("WARNING", logger="stratacache"):
            for _ in range(40):
                assert await cache.get(lost[0]) is None
        refused = tier.health().refused
        down = [r for r in caplog.records if "down after" in r.getMessage()]
        failed = [r for r in caplog.records if "failed during" in r.getMessage()]
        assert len(down) == 1 and refused > 0
        assert len(failed) <= 40 - refused  # refused calls are not warned about
        assert cache.stats()["tiers"]["redis"]["circuit_opened"] == 0
