"""Pre-warming: registered warmers, concurrency limit, progress, summary, warming from hot keys.

Run as a script, this file is the "freshly started process" of the hot-key test.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import stratacache as sc
from stratacache import warming
from stratacache.fleet.hotkeys import HotKeys

SRC = str(Path(__file__).resolve().parents[1] / "src")


def make_cache(url: str, namespace: str) -> sc.Cache:
    return sc.Cache(tiers=[sc.MemoryTier(), sc.RedisTier(url)], namespace=namespace)


@pytest.fixture
async def cache(redis_url: str) -> AsyncIterator[sc.Cache]:
    async with make_cache(redis_url, "wm" + uuid.uuid4().hex[:8]) as c:
        yield c


async def test_warm_fills_every_tier_and_reports(cache: sc.Cache) -> None:
    """warm() loads each registered argument set into L1 and Redis and returns a summary."""
    calls: list[int] = []

    @cache.cached(ttl=60, key="sq:{x}", warm=[(1,), (2,), {"x": 3}, 4])
    async def square(x: int) -> int:
        calls.append(x)
        return x * x

    seen: list[int] = []
    summary = await cache.warm(progress=lambda p: seen.append(p.done))  # type: ignore[attr-defined]
    assert summary.warmed == 4 and summary.failed == 0 and summary.took >= 0
    assert seen == [1, 2, 3, 4] and sorted(calls) == [1, 2, 3, 4]
    stats = cache.stats()["tiers"]
    assert stats["memory"]["entries"] == 4 and stats["redis"]["sets"] == 4
    assert await square(3) == 9 and len(calls) == 4  # served from the warmed cache
    assert cache.counters.warmed == 4


async def test_warm_respects_the_concurrency_limit(cache: sc.Cache) -> None:
    """No more than ``concurrency`` warm calls run at the same time."""
    running = peak = 0
    gate = asyncio.Event()

    async def slow(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 3:
            gate.set()
        await gate.wait()
        running -= 1
        return x

    warming.register(cache, cache.cached(ttl=60)(slow), range(20))
    summary = await warming.warm(cache, concurrency=3)
    assert summary.warmed == 20 and peak == 3


async def test_warm_counts_failures_and_goes_on(cache: sc.Cache) -> None:
    """A failing argument set is counted and reported; the others are still warmed."""

    @cache.cached(ttl=60)
    async def fragile(x: int) -> int:
        if x == 2:
            raise ValueError("bad row")
        return x

    async def args() -> AsyncIterator[int]:
        for x in range(5):
            yield x

    warming.register(cache, fragile, args)
    summary = await warming.warm(cache)
    assert (summary.warmed, summary.failed) == (4, 1)
    name, item, error = summary.errors[0]
    assert item == 2 and isinstance(error, ValueError) and name.endswith("fragile")
    assert cache.counters.warm_failed == 1


async def test_warm_rejects_a_zero_concurrency(cache: sc.Cache) -> None:
    """concurrency below 1 is a configuration error."""
    with pytest.raises(sc.ConfigError):
        await warming.warm(cache, concurrency=0)


async def fresh_process(url: str, namespace: str) -> None:
    """A new process: warm L1 from the fleet's hot keys, then report what L1 holds."""
    cache = make_cache(url, namespace)
    HotKeys(url=url).attach(cache)
    async with cache:
        summary = await warming.warm(cache, from_hot=True)
        top: Any = cache.tiers.top
        held = sorted(k for k in (cache.full_key(f"item:{i}") for i in range(10)) if top.peek(k))
        print(json.dumps({"warmed": summary.warmed, "held": held}))


@pytest.mark.slow
async def test_fresh_process_warms_l1_from_the_fleets_hot_keys(redis_url: str) -> None:
    """Hot keys published by one process are in a new process's L1 after warm(from_hot=True)."""
    namespace = "wh" + uuid.uuid4().hex[:8]
    async with make_cache(redis_url, namespace) as old:
        hot = HotKeys(url=redis_url, k=3).attach(old)
        for i in range(10):
            for _ in range(1 if i >= 3 else 20):  # items 0..2 are hot
                await old.get_or_set(f"item:{i}", lambda i=i: i)
        assert await hot.publish() == 3
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, redis_url, namespace, stdout=subprocess.PIPE, env=env
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["warmed"] == 3
    assert result["held"] == sorted(f"{namespace}:item:{i}" for i in range(3))


if __name__ == "__main__":
    asyncio.run(fresh_process(sys.argv[1], sys.argv[2]))
