"""A refresh overwrites a value: other processes drop their memory copy, as after a set.

The reader runs in its own OS process with memory over Redis and the bus; this
process refreshes a decorated function's entry and the reader must see the new
value (within the bus lag), not keep its memory copy until the memory TTL.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from tests.waiting import wait_until

import stratacache as sc

READER = """
import json, sys
import redis
import stratacache as sc
url, ns = sys.argv[1], sys.argv[2]
source = redis.Redis.from_url(url)
cache = sc.Cache(tiers=[sc.MemoryTier(ttl=300), sc.RedisTier(url=url)], namespace=ns)
@cache.cached(ttl=600, key="price:{sku}")
def price(sku):
    return int(source.get(ns + ":source:" + sku))
for line in sys.stdin:
    print(json.dumps([price("A"), cache.sync.get("price:A")]), flush=True)
"""


class Reader:
    """The other process: answers each request with what it reads now."""

    def __init__(self, url: str, namespace: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", READER, url, namespace],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def read(self) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def sees(self, expected: Any) -> None:
        """Wait (the bus lag, with a deadline) until the reader reads ``expected``."""
        wait_until(
            lambda: self.read() == expected, timeout=10.0, what=f"the reader to see {expected}"
        )

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


@pytest.fixture
def namespace() -> str:
    return "rfa" + uuid.uuid4().hex[:6]


@pytest.fixture
def reader(redis_url: str, namespace: str) -> Iterator[Reader]:
    process = Reader(redis_url, namespace)
    yield process
    process.close()


@pytest.mark.parametrize("how", ["refresh", "refresh_hot"])
def test_sync_refresh_reaches_other_processes(
    redis_url: str, namespace: str, reader: Reader, how: str
) -> None:
    """After ``fn.refresh()`` / ``fn.refresh_hot()`` (sync), another process reads the new value."""
    source = redis.Redis.from_url(redis_url)
    source.set(f"{namespace}:source:A", 1)
    cache = sc.Cache(
        tiers=[sc.MemoryTier(ttl=300), sc.RedisTier(url=redis_url)], namespace=namespace
    )

    @cache.cached(ttl=600, key="price:{sku}")
    def price(sku: str) -> int:
        return int(source.get(f"{namespace}:source:{sku}"))  # type: ignore[arg-type]

    with cache.sync:
        assert price("A") == 1
        assert reader.read() == [1, 1]  # the reader now holds 1 in memory
        source.set(f"{namespace}:source:A", 2)
        if how == "refresh":
            assert price.refresh("A") == 2
        else:
            assert price.refresh_hot() == 1
        reader.sees([2, 2])
    source.close()


@pytest.mark.parametrize("how", ["refresh", "refresh_hot"])
def test_async_refresh_reaches_other_processes(
    redis_url: str, namespace: str, reader: Reader, how: str
) -> None:
    """After ``await fn.refresh()`` / ``fn.refresh_hot()``, another process reads the new value."""
    source = redis.Redis.from_url(redis_url)
    source.set(f"{namespace}:source:A", 1)

    async def scenario() -> None:
        cache = sc.Cache(
            tiers=[sc.MemoryTier(ttl=300), sc.RedisTier(url=redis_url)], namespace=namespace
        )

        @cache.cached(ttl=600, key="price:{sku}")
        async def price(sku: str) -> int:
            return int(source.get(f"{namespace}:source:{sku}"))  # type: ignore[arg-type]

        async with cache:
            assert await price("A") == 1
            assert await asyncio.to_thread(reader.read) == [1, 1]
            source.set(f"{namespace}:source:A", 2)
            if how == "refresh":
                assert await price.refresh("A") == 2
            else:
                assert await price.refresh_hot() == 1
            await asyncio.to_thread(reader.sees, [2, 2])

    asyncio.run(scenario())
    source.close()
