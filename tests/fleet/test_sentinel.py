"""The fleet services behind a real Sentinel set (1 primary, 1 replica, 3 sentinels), across processes."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from tests.topologies import SentinelSet
from tests.waiting import poll, wait_until

import stratacache as sc

from .processes import Worker, run_lockers

pytestmark = pytest.mark.slow

NAMESPACES = ["shop", "users", "orders", "a", "b"]


def spec(sentinels: SentinelSet, **extra: Any) -> dict[str, Any]:
    return {
        "mode": "sentinel",
        "sentinels": sentinels.addresses,
        "service": sentinels.service_name,
        **extra,
    }


def tier(sentinels: SentinelSet) -> sc.RedisTier:
    return sc.RedisTier(
        connection=sc.RedisConnection(
            sentinels=sentinels.addresses, service_name=sentinels.service_name
        ),
        socket_timeout=2.0,
    )


def test_bus_keeps_processes_coherent_and_the_fleet_lock_holds(
    sentinel_set: SentinelSet, tmp_path: Path
) -> None:
    """Worker processes follow another process's writes in every namespace; ``lock=True``
    runs each loader once across 4 processes."""
    workers = [Worker(spec(sentinel_set, namespaces=NAMESPACES)) for _ in range(2)]
    try:
        for worker in workers:
            wait_until(lambda w=worker: all(w.ask("connected").values()), what="buses up")

        async def write(value: str) -> None:
            for ns in NAMESPACES:
                async with sc.Cache(tiers=[sc.MemoryTier(), tier(sentinel_set)], namespace=ns) as c:
                    await c.set("k", value)

        asyncio.run(write("v1"))
        for worker in workers:
            assert set(worker.ask("get", key="k").values()) == {"v1"}
            assert all(worker.ask("l1", key="k").values())
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
    namespace = "lock" + uuid.uuid4().hex[:6]
    keys = [f"key{i}" for i in range(4)]
    results = run_lockers(spec(sentinel_set, namespaces=[namespace], keys=keys), 4, tmp_path / "go")
    for result in results:
        assert result["values"] == [f"value-of-{k}" for k in keys]
    raw = redis.Redis(port=sentinel_set.primary.port)
    try:
        assert {k: int(raw.get(f"loads:{namespace}:{k}") or 0) for k in keys} == dict.fromkeys(
            keys, 1
        )
    finally:
        raw.close()


async def test_bus_and_tracking_follow_a_failover(sentinel_set: SentinelSet) -> None:
    """The primary killed: the bus and tracking move to the promoted replica by themselves,
    and ``flush_namespace`` works there (no ReadOnlyError)."""
    namespace = "fo" + uuid.uuid4().hex[:6]
    one = sc.Cache(tiers=[sc.MemoryTier(), tier(sentinel_set)], namespace=namespace)
    bus = sc.RedisBus(connection=tier(sentinel_set).connection, tracking=True)
    two = sc.Cache(tiers=[sc.MemoryTier(), tier(sentinel_set)], namespace=namespace, bus=bus)
    async with one, two:
        await poll(lambda: bus.connected and two.tiers.local_trusted, what="bus up")
        sentinel_set.primary.stop()
        await poll(
            lambda: sentinel_set.master_port() == sentinel_set.replica.port,
            timeout=30,
            what="promotion",
        )
        await poll(lambda: bus.connected and two.tiers.local_trusted, timeout=10, what="bus back")
        await one.set("k", "v1")
        assert await two.get("k") == "v1"
        await one.set("k", "v2")
        await poll(lambda: two.tiers.top.peek(two.full_key("k")) is None, what="evicted")  # type: ignore[attr-defined]
        assert await two.get("k") == "v2"
        assert await one.flush_namespace() >= 1
        raw = redis.Redis(port=sentinel_set.replica.port)
        try:
            raw.set(f"{namespace}:outside", b"x")  # tracking reports it from the new primary
            before = bus.tracker.received if bus.tracker else 0
            raw.set(f"{namespace}:outside", b"y")
            await poll(
                lambda: bus.tracker is not None and bus.tracker.received > before,
                what="tracking on the new primary",
            )
        finally:
            raw.close()
