"""Safe defaults: a local tier above Redis is coherent without ``bus=``; ``lock=True`` just works.

The multi-process tests run this file as a worker script in real OS processes.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import stratacache as sc
from stratacache.engine.defaults import AUTO
from stratacache.fleet.bus import RedisBus
from stratacache.fleet.lock import RedisLock

WORKER = Path(__file__)
BUS_LAG = 0.05  # seconds allowed for the bus message to reach the reader


# -- worker ----------------------------------------------------------------------------------------
def _cache(url: str, namespace: str) -> sc.Cache:
    return sc.Cache(
        tiers=[sc.MemoryTier(ttl=60), sc.RedisTier(url=url)], namespace=namespace, default_ttl=60
    )


async def _reader(url: str, namespace: str) -> dict[str, Any]:
    """Read ``k`` until it shows the version the writer invalidated to; count older reads."""
    import redis.asyncio as aredis

    truth = aredis.Redis.from_url(url)
    cache = _cache(url, namespace)

    async def load() -> int:
        return int(await truth.get(f"truth:{namespace}") or 0)

    stale = reads = 0
    seen: float | None = None
    async with cache:
        await cache.get_or_set("k", load)
        await truth.set(f"ready:{namespace}", 1)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done = await truth.get(f"done:{namespace}")  # set once the invalidation returned
            if done is not None and seen is None:
                seen = time.monotonic()
            value = await cache.get_or_set("k", load)
            reads += 1
            # reads starting later than the bus lag allowance (50 ms) must see the new value
            if done is not None and seen is not None and time.monotonic() - seen > BUS_LAG:
                stale += value < int(done)
                if time.monotonic() - seen > 0.5:
                    break
            await asyncio.sleep(0.001)
    await truth.aclose()
    return {"stale": stale, "reads": reads}


async def _locker(url: str, namespace: str) -> dict[str, Any]:
    """Wait for the start signal, then miss ``k`` with ``lock=True``; record the value."""
    import redis.asyncio as aredis

    truth = aredis.Redis.from_url(url)
    cache = _cache(url, namespace)

    async def load() -> int:
        await truth.incr(f"calls:{namespace}")
        await asyncio.sleep(0.3)
        return 42

    async with cache:
        await truth.incr(f"ready:{namespace}")
        await truth.blpop([f"go:{namespace}"], timeout=30)
        value = await cache.get_or_set("k", load, lock=True)
    await truth.aclose()
    return {"value": value}


# -- tests -----------------------------------------------------------------------------------------
def _spawn(role: str, url: str, namespace: str, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(WORKER), role, url, namespace, str(out)])


@pytest.mark.slow
def test_two_processes_without_bus_argument_read_no_stale_value(
    redis_url: str, tmp_path: Path, wait_until: Any
) -> None:
    """No ``bus=``: after another process's invalidation returns, no read sees the old value."""
    import redis

    namespace = "df" + uuid.uuid4().hex[:6]
    truth = redis.Redis.from_url(redis_url)
    truth.set(f"truth:{namespace}", 1)
    out = tmp_path / "reader.json"
    reader = _spawn("reader", redis_url, namespace, out)
    try:
        wait_until(lambda: truth.get(f"ready:{namespace}") is not None, what="reader warm")

        async def write() -> None:
            async with _cache(redis_url, namespace) as writer:
                assert isinstance(writer.bus, RedisBus)
                truth.set(f"truth:{namespace}", 2)
                await writer.invalidate(keys=["k"])
                truth.set(f"done:{namespace}", 2)

        asyncio.run(write())
        assert reader.wait(timeout=60) == 0
    finally:
        if reader.poll() is None:
            reader.kill()
    report = json.loads(out.read_text())
    assert report["stale"] == 0, report


@pytest.mark.slow
def test_lock_true_without_argument_loads_once_across_four_processes(
    redis_url: str, tmp_path: Path, wait_until: Any
) -> None:
    """``lock=True`` on a cache with a Redis tier and no ``lock=``: one loader call in 4 processes."""
    import redis

    namespace = "dl" + uuid.uuid4().hex[:6]
    truth = redis.Redis.from_url(redis_url)
    outs = [tmp_path / f"locker{i}.json" for i in range(4)]
    procs = [_spawn("locker", redis_url, namespace, out) for out in outs]
    try:
        wait_until(lambda: int(truth.get(f"ready:{namespace}") or 0) == 4, what="lockers ready")
        truth.rpush(f"go:{namespace}", *range(4))
        assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [json.loads(o.read_text())["value"] for o in outs] == [42] * 4
    assert int(truth.get(f"calls:{namespace}") or 0) == 1


def test_default_bus_and_lock_are_built_on_the_redis_tier(redis_url: str) -> None:
    """A memory tier above a RedisTier gets a RedisBus and a RedisLock on that tier's URL."""
    cache = _cache(redis_url, "dflt")
    assert isinstance(cache.bus, RedisBus) and cache.bus.url == redis_url
    assert isinstance(cache.readthrough.lock, RedisLock) and cache.readthrough.lock.url == redis_url


def test_bus_false_and_lock_false_opt_out(redis_url: str) -> None:
    """``bus=False`` / ``lock=False`` turn the defaults off."""
    cache = sc.Cache(tiers=[sc.MemoryTier(), sc.RedisTier(url=redis_url)], bus=False, lock=False)
    assert cache.bus is None and cache.readthrough.lock is None


@pytest.mark.parametrize(
    "tiers",
    [
        lambda: [sc.MemoryTier()],
        lambda: [sc.MemoryTier(), sc.SQLTier(url="sqlite:///:memory:")],
    ],
    ids=["memory", "memory+sqlite"],
)
def test_no_shared_redis_tier_means_no_bus_and_lock_true_refused_at_decoration(
    tiers: Any,
) -> None:
    """Without a shared Redis tier there is no default bus, and ``@cached(lock=True)`` raises."""
    cache = sc.Cache(tiers=tiers())
    assert cache.bus is None
    with pytest.raises(sc.ConfigError, match="lock=True needs a fleet lock"):
        cache.cached(lock=True)
    with pytest.raises(sc.ConfigError):
        cache.sync.get_or_set("k", lambda: 1, lock=True)


def test_cluster_and_sentinel_tiers_get_a_bus_and_lock_on_their_own_connection() -> None:
    """A Cluster or Sentinel tier builds the default bus and lock on its ``RedisConnection``."""
    for tier in (
        sc.RedisTier(url="redis://127.0.0.1:1/0", cluster=True),
        sc.RedisTier(sentinels=[("127.0.0.1", 1)], service_name="main"),
    ):
        cache = sc.Cache(tiers=[sc.MemoryTier(), tier])
        assert isinstance(cache.bus, sc.RedisBus) and cache.bus.connection is tier.connection
        lock = cache.readthrough.lock
        assert isinstance(lock, sc.RedisLock) and lock.connection is tier.connection
        assert sc.Cache(tiers=[sc.MemoryTier(), tier], bus=False).bus is None


def test_a_sql_tier_gets_a_sql_bus_on_its_own_database(tmp_path: Path) -> None:
    """The embedded default (memory above SQLite) runs a ``SQLBus`` on the tier's file;
    ``lock=True`` still needs Redis; a private in-memory database needs no bus."""
    db = tmp_path / "cache.db"
    for bus in (AUTO, True):
        cache = sc.Cache(tiers=[sc.MemoryTier(), sc.SQLTier(url=f"sqlite:///{db}")], bus=bus)
        assert isinstance(cache.bus, sc.SQLBus)
        assert cache.bus.log.where == str(db) and cache.bus.log.table == "stratacache_entries_bus"
        assert cache.readthrough.lock is None
    with pytest.raises(sc.ConfigError, match="lock=True needs"):
        sc.Cache(tiers=[sc.MemoryTier(), sc.SQLTier(url=f"sqlite:///{db}")], lock=True)
    with pytest.raises(sc.ConfigError, match="builds no bus"):
        sc.Cache(tiers=[sc.MemoryTier(), sc.SQLTier(url="sqlite://")], bus=True)


def test_a_redis_tier_beside_a_sql_tier_carries_the_bus(tmp_path: Path, redis_url: str) -> None:
    """With both shared tiers (in either order) the bus and the lock are Redis ones."""
    sql = f"sqlite:///{tmp_path / 'c.db'}"
    for tiers in (
        [sc.MemoryTier(), sc.RedisTier(url=redis_url), sc.SQLTier(url=sql)],
        [sc.MemoryTier(), sc.SQLTier(url=sql), sc.RedisTier(url=redis_url)],
    ):
        cache = sc.Cache(tiers=tiers, lock=True)
        assert isinstance(cache.bus, RedisBus) and isinstance(cache.readthrough.lock, RedisLock)
    built = sc.Cache.from_url(f"memory://,{sql},{redis_url}")
    assert isinstance(built.bus, RedisBus)


@pytest.mark.parametrize("bad", ["redis://x", 1, object()])
def test_bus_and_lock_of_wrong_type_are_config_errors(bad: Any) -> None:
    """``bus=``/``lock=`` take a bus/lock object or False; anything else is a ConfigError."""
    with pytest.raises(sc.ConfigError):
        sc.Cache(tiers=[sc.MemoryTier()], bus=bad)
    with pytest.raises(sc.ConfigError):
        sc.Cache(tiers=[sc.MemoryTier()], lock=bad)


def test_bus_true_and_lock_true_build_the_defaults_as_documented(redis_url: str) -> None:
    """``bus=True``/``lock=True`` (typed as accepted, shown in the docs) mean "the default one"."""
    cache = sc.Cache(tiers=[sc.MemoryTier(), sc.RedisTier(url=redis_url)], bus=True, lock=True)
    assert isinstance(cache.bus, RedisBus) and cache.bus.url == redis_url
    assert isinstance(cache.readthrough.lock, RedisLock) and cache.readthrough.lock.url == redis_url


def test_bus_true_and_lock_true_without_a_shared_redis_tier_are_config_errors() -> None:
    """Asking for a bus or lock that cannot be built fails at construction, naming the fix."""
    with pytest.raises(sc.ConfigError, match="bus=True needs"):
        sc.Cache(tiers=[sc.MemoryTier()], bus=True)
    with pytest.raises(sc.ConfigError, match="lock=True needs"):
        sc.Cache(tiers=[sc.MemoryTier()], lock=True)


if __name__ == "__main__":
    role, url, namespace, out = sys.argv[1:5]
    report = asyncio.run((_reader if role == "reader" else _locker)(url, namespace))
    Path(out).write_text(json.dumps(report))


async def test_a_cache_without_a_local_tier_still_tells_the_others(redis_url: str) -> None:
    """A Redis-only cache gets the default bus too: its invalidations evict other L1 copies."""
    from tests.waiting import poll

    namespace = "nolocal" + uuid.uuid4().hex[:8]
    layered = sc.Cache(tiers=[sc.MemoryTier(), sc.RedisTier(url=redis_url)], namespace=namespace)
    remote_only = sc.Cache(tiers=[sc.RedisTier(url=redis_url)], namespace=namespace)
    assert isinstance(remote_only.bus, RedisBus)
    async with layered, remote_only:
        await layered.set("k", "old")
        top: Any = layered.tiers.top
        assert top.peek(layered.full_key("k")) is not None
        await remote_only.invalidate(keys=["k"])
        await poll(lambda: top.peek(layered.full_key("k")) is None, what="L1 copy evicted")
        assert await layered.get("k") is None
