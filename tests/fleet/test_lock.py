"""The fleet recompute lock: one loader run across real OS processes, holder death, fallbacks.

Run as a script, this file is the worker process the multi-process tests start.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
from tests.waiting import poll, wait_until

import stratacache as sc
from stratacache.core.fleet import LockAttempt
from stratacache.engine import signals
from stratacache.fleet.lock import RedisLock

ROOT = Path(__file__).resolve().parents[2]
# the worker processes run this file as a script: they need the package and tests.waiting
PATHS = os.pathsep.join([str(ROOT / "src"), str(ROOT)])


# -- the worker process ---------------------------------------------------------------------------
async def worker(url: str, namespace: str, role: str, callers: int, lease: float) -> None:
    """Serve ``callers`` concurrent reads of one cold key with lock=True; print the outcome."""
    client = redis.asyncio.Redis.from_url(url)
    cache = sc.Cache(tiers=[sc.MemoryTier(), sc.RedisTier(url)], namespace=namespace)
    cache.readthrough.lock = RedisLock(url, lease=lease, wait_timeout=60)

    async def load() -> str:
        await client.incr(f"{namespace}:runs")
        if role == "holder":  # start loading, then hang until killed
            await client.set(f"{namespace}:holder-loading", os.getpid())
            await asyncio.Event().wait()
        await asyncio.sleep(0.2)  # a slow loader: the others arrive while it runs
        return f"value-from-{os.getpid()}"

    pending: set[asyncio.Task[Any]] = set()

    def waiting(_sender: Any, key: str) -> None:
        task = asyncio.ensure_future(client.rpush(f"{namespace}:waiting", os.getpid()))
        pending.add(task)

    async with cache:
        await cache.readthrough.lock.start()  # type: ignore[union-attr]
        with signals.lock_wait.connected_to(waiting):
            await client.rpush(f"{namespace}:ready", os.getpid())
            await client.blpop([f"{namespace}:go"])
            values = await asyncio.gather(
                *(cache.get_or_set("hot", load, ttl=60, lock=True) for _ in range(callers))
            )
        print(json.dumps({"values": sorted(set(values)), "engine": cache.counters.as_dict()}))
    await client.aclose()


# -- helpers ----------------------------------------------------------------------------------------
def spawn(url: str, namespace: str, role: str, callers: int, lease: float) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=PATHS + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = [sys.executable, __file__, url, namespace, role, str(callers), str(lease)]
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def outcome(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# -- multi-process tests -----------------------------------------------------------------------------
@pytest.mark.slow
def test_four_processes_of_50_callers_run_the_loader_once(redis_url: str) -> None:
    """4 OS processes x 50 concurrent callers of a cold key with lock=True: one loader run."""
    client = redis.Redis.from_url(redis_url)
    namespace = "lk" + uuid.uuid4().hex[:8]
    procs = [spawn(redis_url, namespace, "caller", 50, 5.0) for _ in range(4)]
    wait_until(lambda: client.llen(f"{namespace}:ready") == 4, what="workers ready")
    client.rpush(f"{namespace}:go", *["go"] * 4)
    results = [outcome(p) for p in procs]
    assert int(client.get(f"{namespace}:runs") or 0) == 1
    assert len({v for r in results for v in r["values"]}) == 1
    assert sum(r["engine"]["lock_acquired"] for r in results) == 1
    assert sum(r["engine"]["lock_waits"] for r in results) >= 1
    assert sum(r["engine"]["lock_fallbacks"] for r in results) == 0
    client.close()


@pytest.mark.slow
def test_killed_holder_is_taken_over_within_the_lease(redis_url: str) -> None:
    """The lock holder is killed mid-load; the waiting processes take over and all get a value."""
    client = redis.Redis.from_url(redis_url)
    namespace = "lk" + uuid.uuid4().hex[:8]
    holder = spawn(redis_url, namespace, "holder", 1, 1.0)
    wait_until(lambda: client.llen(f"{namespace}:ready") == 1, what="holder ready")
    client.rpush(f"{namespace}:go", "go")
    wait_until(lambda: client.exists(f"{namespace}:holder-loading") == 1, what="holder loading")
    waiters = [spawn(redis_url, namespace, "caller", 20, 1.0) for _ in range(2)]
    wait_until(lambda: client.llen(f"{namespace}:ready") == 3, what="waiters ready")
    client.rpush(f"{namespace}:go", "go", "go")
    wait_until(lambda: client.llen(f"{namespace}:waiting") == 2, what="both waiting on the lock")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    results = [outcome(p) for p in waiters]
    values = {v for r in results for v in r["values"]}
    assert len(values) == 1 and values.pop().startswith("value-from-")
    assert int(client.get(f"{namespace}:runs") or 0) == 2  # the dead holder's run and one more
    assert sum(r["engine"]["lock_takeovers"] for r in results) == 1
    client.close()


# -- in-process tests ---------------------------------------------------------------------------------
@pytest.fixture
async def lock(redis_url: str) -> AsyncIterator[RedisLock]:
    fleet = RedisLock(redis_url, lease=5.0, wait_timeout=5.0)
    yield fleet
    await fleet.close()


async def test_only_the_owner_can_release(lock: RedisLock) -> None:
    """Release compares tokens: a stranger's token leaves the lock in place."""
    key = "k" + uuid.uuid4().hex
    mine = await lock.acquire(key)
    assert mine.owned
    theirs = await lock.acquire(key)
    assert not theirs.owned and theirs.token == mine.token and 0 < theirs.ttl <= 5.0
    assert not await lock.release(key, "not-the-token")
    assert not (await lock.acquire(key)).owned
    assert await lock.release(key, mine.token)
    assert (await lock.acquire(key)).owned


async def test_waiter_is_woken_by_the_release_message(lock: RedisLock, redis_url: str) -> None:
    """A waiter returns as soon as the holder releases, long before the holder's lease ends."""
    other = RedisLock(redis_url, lease=120.0)
    key = "k" + uuid.uuid4().hex
    try:
        mine = await other.acquire(key)
        seen = await lock.acquire(key)
        waiting = asyncio.ensure_future(lock.wait(key, seen, timeout=30))
        await asyncio.sleep(0)  # let the waiter subscribe-check and block
        assert not waiting.done()
        await other.release(key, mine.token)
        # True means woken by the message: the lease (120 s) and the wait bound (30 s) are far off
        assert await waiting is True
    finally:
        await other.close()


async def test_waiter_times_out_on_a_silent_holder(lock: RedisLock) -> None:
    """Without a release, wait() returns False when its bound is reached."""
    key = "k" + uuid.uuid4().hex
    await lock.acquire(key)
    holder = LockAttempt(False, "someone", 5.0)
    assert not await lock.wait(key, holder, timeout=0.05)


async def test_lock_unreachable_falls_back_to_loading(redis_url: str) -> None:
    """With the lock's Redis unreachable, the caller still gets the loader's value (counted)."""
    dead = RedisLock("redis://127.0.0.1:1/0", lease=1.0)
    cache = sc.Cache(tiers=[sc.MemoryTier()], namespace="lf" + uuid.uuid4().hex[:6])
    cache.readthrough.lock = dead
    async with cache:
        assert await cache.get_or_set("k", lambda: "v", lock=True) == "v"
    assert cache.counters.lock_fallbacks == 1 and cache.counters.lock_errors == 1


async def test_lock_true_without_a_lock_is_a_config_error() -> None:
    """lock=True on a cache that has no fleet lock raises ConfigError."""
    async with sc.Cache(tiers=[sc.MemoryTier()], namespace="nolock") as cache:
        with pytest.raises(sc.ConfigError):
            await cache.get_or_set("k", lambda: 1, lock=True)


async def test_waiting_cache_reads_the_holders_value(redis_url: str) -> None:
    """Two caches (separate L1s) on one lock: the second waits and gets the first's value."""
    namespace = "lw" + uuid.uuid4().hex[:6]
    gate = asyncio.Event()
    runs = 0

    async def load() -> str:
        nonlocal runs
        runs += 1
        await gate.wait()
        return "shared"

    caches = [
        sc.Cache(tiers=[sc.MemoryTier(), sc.RedisTier(redis_url)], namespace=namespace)
        for _ in range(2)
    ]
    for c in caches:
        c.readthrough.lock = RedisLock(redis_url, lease=5.0)
    async with caches[0], caches[1]:
        first = asyncio.ensure_future(caches[0].get_or_set("k", load, lock=True))
        await poll(lambda: runs == 1, what="the first load")
        second = asyncio.ensure_future(caches[1].get_or_set("k", load, lock=True))
        await poll(lambda: caches[1].counters.lock_waits == 1, what="the second to wait")
        gate.set()
        assert await first == await second == "shared"
    assert runs == 1 and caches[1].counters.lock_waits == 1


if __name__ == "__main__":
    url_, namespace_, role_, callers_, lease_ = sys.argv[1:6]
    asyncio.run(worker(url_, namespace_, role_, int(callers_), float(lease_)))
