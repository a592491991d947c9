"""Chaos: a Redis Cluster primary killed under load; its replica is promoted and the tier follows.

The load of ``harness.Load`` runs on two caches whose Redis tier (and default bus,
sharded pub/sub) reach a 6-node cluster (3 primaries, 3 replicas). A primary that
is not the startup node is killed with SIGKILL; the "outage" lasts until every
running node reports ``cluster_state:ok`` again. What must hold: no caller
exception, no wrong value, no read staler than the bound after an invalidation,
Redis used again within a second of the recovery, both buses back.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
from tests.topologies import Cluster

import stratacache as sc

from .harness import SOCKET_TIMEOUT, Load
from .test_redis_faults import _check

pytestmark = pytest.mark.slow


async def test_cluster_primary_killed_under_load(cluster_factory: Callable[[], Cluster]) -> None:
    """A primary killed: callers never notice, the tier follows the promoted replica."""
    cluster = cluster_factory()
    try:
        connection = sc.RedisConnection(
            cluster.url, cluster=True, startup_nodes=cluster.addresses[1:]
        )
        load = Load(
            "",
            "cfail" + uuid.uuid4().hex[:6],
            tier=lambda: sc.RedisTier(connection=connection, socket_timeout=SOCKET_TIMEOUT),
        )
        victim = next(n for n in cluster.primaries() if n.port != cluster.nodes[0].port)

        async def fault() -> None:
            victim.stop()

        def promoted() -> bool:
            primaries = [n.port for n in cluster.primaries()]
            return victim.port not in primaries and len(primaries) == 3 and cluster.healthy()

        async def lift() -> None:
            deadline = time.monotonic() + 30
            while not await asyncio.to_thread(promoted):
                assert time.monotonic() < deadline, "no promotion within 30 s"
                await asyncio.sleep(0.05)

        report = await load.run(fault, lift, outage=0.0, after=3.0)
        _check("cluster failover", report, outage_loads=False)
        assert report.buses_up, "the bus did not come back"
    finally:
        for node in cluster.nodes:
            node.stop()
