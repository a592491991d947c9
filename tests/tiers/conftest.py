"""Fixtures the Redis tier's tests share: a manual clock, a raw client and a started tier."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis

from stratacache.core.clock import ManualClock
from stratacache.core.tier import TierContext
from stratacache.tiers.redis import RedisTier

#: the namespace the Redis tier's tests store under
NS = "shop"


@pytest.fixture
def own_redis_url(redis_factory: Callable[..., Any]) -> str:
    """A redis-server of this test's own: command counts see no other test's clients
    (modules that count commands make it their ``redis_url``)."""
    return str(redis_factory().url)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=time.time())


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the same server (a module may override ``redis_url``)."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
async def tier(redis_url: str, clock: ManualClock) -> AsyncIterator[RedisTier]:
    """A started ``RedisTier`` in namespace ``NS``."""
    t = RedisTier(redis_url)
    await t.start(TierContext(NS, clock=clock))
    yield t
    await t.close()
