"""Chaos: a Sentinel primary killed under load; the replica is promoted and everything follows it.

The load of ``harness.Load`` runs on two caches whose Redis tier (and default bus)
reach Redis through the Sentinel set. The primary is killed with SIGKILL; the
"outage" lasts until a sentinel names the promoted replica. What must hold: no
caller exception, no wrong value, no read staler than the bound after an
invalidation, Redis used again within a second of the promotion, and both buses
back on the new primary (connected, local tiers trusted again).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from tests.topologies import SentinelSet

import stratacache as sc

from .harness import SOCKET_TIMEOUT, Load
from .test_redis_faults import _check

pytestmark = pytest.mark.slow


async def test_sentinel_failover_under_load(sentinel_set: SentinelSet) -> None:
    """Primary killed: callers never notice, the tier and the bus follow the new primary."""
    connection = sc.RedisConnection(
        sentinels=sentinel_set.addresses, service_name=sentinel_set.service_name
    )
    load = Load(
        "",
        "failover" + uuid.uuid4().hex[:6],
        tier=lambda: sc.RedisTier(connection=connection, socket_timeout=SOCKET_TIMEOUT),
    )

    async def fault() -> None:
        sentinel_set.primary.stop()

    async def lift() -> None:
        deadline = time.monotonic() + 30
        while sentinel_set.master_port() != sentinel_set.replica.port:
            assert time.monotonic() < deadline, "no promotion within 30 s"
            await asyncio.sleep(0.02)

    report = await load.run(fault, lift, outage=0.0, after=3.0)
    _check("sentinel failover", report, outage_loads=False)
    assert all(isinstance(c.bus, sc.RedisBus) for c in load.caches)
    assert report.buses_up, "the bus did not follow the new primary"
