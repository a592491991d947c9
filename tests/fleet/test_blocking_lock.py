"""The fleet lock from sync code: real OS processes, holder death, mixed sync/async, fallbacks.

Run as a script, this file is the worker process the multi-process tests start.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
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
HANG = 60.0  # seconds after which a stuck thread or process fails the test instead of hanging


class TracedLock(RedisLock):
    """A RedisLock that records in Redis which holder token each sync wait is for, and by whom."""

    def __init__(self, url: str, namespace: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.trace = redis.Redis.from_url(url)
        self.namespace = namespace

    def wait_sync(self, key: str, holder: LockAttempt, timeout: float) -> bool:
        self.trace.rpush(f"{self.namespace}:waits", f"{holder.token}:{os.getpid()}")
        return super().wait_sync(key, holder, timeout)


def waiters(client: redis.Redis, namespace: str, token: str | None = None) -> set[str]:
    """Pids of the processes that waited (on ``token``'s lock, when given)."""
    found = set()
    for raw in client.lrange(f"{namespace}:waits", 0, -1):
        holder, pid = raw.decode().rsplit(":", 1)
        if token is None or holder == token:
            found.add(pid)
    return found


# -- the worker process ---------------------------------------------------------------------------
def worker(url: str, namespace: str, role: str, threads: int, lease: float, others: int) -> None:
    """``threads`` threads call a sync lock=True function of one cold key; print the outcome.

    A loading worker holds its value back until ``others`` other processes wait on its lock,
    so every process meets the lock deterministically. The holder role hangs until killed.
    """
    client = redis.Redis.from_url(url)
    fleet = TracedLock(url, namespace, lease=lease, wait_timeout=HANG)
    cache = sc.Cache(tiers=[sc.MemoryTier(), sc.RedisTier(url)], namespace=namespace, lock=fleet)

    @cache.cached(ttl=60, key="hot", lock=True)
    def hot() -> str:
        client.incr(f"{namespace}:runs")
        if role == "holder":
            client.set(f"{namespace}:holder-loading", os.getpid())
            threading.Event().wait()
        token = (client.get(fleet.lock_key(cache.full_key("hot"))) or b"").decode()
        wait_until(lambda: len(waiters(client, namespace, token)) >= others, what="the others")
        return f"value-from-{os.getpid()}"

    values: list[str] = []
    go = threading.Event()

    def call() -> None:
        go.wait()
        values.append(hot())

    callers = [threading.Thread(target=call) for _ in range(threads)]
    for t in callers:
        t.start()
    with cache.sync:
        fleet.start_sync()
        client.rpush(f"{namespace}:ready", os.getpid())
        client.blpop([f"{namespace}:go"])
        go.set()
        for t in callers:
            t.join(HANG)
        engine = cache.counters.as_dict()
    print(json.dumps({"values": sorted(set(values)), "calls": len(values), "engine": engine}))


# -- helpers ----------------------------------------------------------------------------------------
def spawn(
    url: str, namespace: str, role: str, threads: int, lease: float, others: int
) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=PATHS + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = [sys.executable, __file__, url, namespace, role, str(threads), str(lease), str(others)]
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def outcome(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=2 * HANG)
    assert proc.returncode == 0, err
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def total(results: list[dict[str, Any]], counter: str) -> int:
    return sum(r["engine"][counter] for r in results)


# -- multi-process tests -----------------------------------------------------------------------------
@pytest.mark.slow
def test_four_processes_of_ten_threads_run_the_loader_once(redis_url: str) -> None:
    """4 OS processes x 10 threads call a sync lock=True function on a cold key: one run."""
    client = redis.Redis.from_url(redis_url)
    namespace = "sl" + uuid.uuid4().hex[:8]
    procs = [spawn(redis_url, namespace, "caller", 10, 5.0, 3) for _ in range(4)]
    wait_until(lambda: client.llen(f"{namespace}:ready") == 4, what="workers ready")
    client.rpush(f"{namespace}:go", *["go"] * 4)
    results = [outcome(p) for p in procs]
    assert int(client.get(f"{namespace}:runs") or 0) == 1
    assert len({v for r in results for v in r["values"]}) == 1
    assert sum(r["calls"] for r in results) == 40
    assert total(results, "lock_acquired") == 1
    assert total(results, "lock_waits") == 3  # one thread per other process waited
    assert total(results, "lock_fallbacks") == total(results, "lock_takeovers") == 0
    client.close()


@pytest.mark.slow
def test_killed_sync_holder_is_taken_over_after_its_lease(redis_url: str) -> None:
    """A sync holder is killed mid-load; after its lease one waiter takes over, all get a value."""
    client = redis.Redis.from_url(redis_url)
    namespace = "sl" + uuid.uuid4().hex[:8]
    holder = spawn(redis_url, namespace, "holder", 1, 1.0, 0)
    wait_until(lambda: client.llen(f"{namespace}:ready") == 1, what="holder ready")
    client.rpush(f"{namespace}:go", "go")
    wait_until(lambda: client.exists(f"{namespace}:holder-loading") == 1, what="holder loading")
    procs = [spawn(redis_url, namespace, "caller", 5, 1.0, 1) for _ in range(2)]
    wait_until(lambda: client.llen(f"{namespace}:ready") == 3, what="waiters ready")
    client.rpush(f"{namespace}:go", "go", "go")
    wait_until(lambda: len(waiters(client, namespace)) == 2, what="both waiting on the lock")
    os.kill(holder.pid, signal.SIGKILL)
    holder.communicate(timeout=10)  # reaps it and closes its pipes
    results = [outcome(p) for p in procs]
    values = {v for r in results for v in r["values"]}
    assert len(values) == 1 and values.pop().startswith("value-from-")
    assert sum(r["calls"] for r in results) == 10
    assert int(client.get(f"{namespace}:runs") or 0) == 2  # the dead holder's run and one more
    assert total(results, "lock_takeovers") == 1
    assert total(results, "lock_fallbacks") == 0
    client.close()


# -- in-process tests ---------------------------------------------------------------------------------
@pytest.fixture
def lock(redis_url: str) -> Iterator[RedisLock]:
    fleet = RedisLock(redis_url, lease=HANG, wait_timeout=HANG)
    yield fleet
    fleet.close_sync()


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Start ``fn`` on a thread; its result lands in the returned list."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    thread.start()
    return thread, result


def test_sync_and_async_callers_share_one_lock(lock: RedisLock, redis_url: str) -> None:
    """The blocking methods use the async ones' keys and tokens; only the owner releases."""
    other = RedisLock(redis_url, lease=5.0)

    async def take(key: str) -> LockAttempt:
        try:
            return await other.acquire(key)
        finally:
            await other.close()

    key = "k" + uuid.uuid4().hex
    mine = asyncio.run(take(key))
    seen = lock.acquire_sync(key)
    assert not seen.owned and seen.token == mine.token and 0 < seen.ttl <= 5.0
    assert not lock.release_sync(key, "not-the-token")
    assert lock.release_sync(key, mine.token)
    assert lock.acquire_sync(key).owned


def test_sync_waiter_is_woken_by_the_release_message(lock: RedisLock, redis_url: str) -> None:
    """wait_sync returns True on the holder's release, long before the holder's lease ends."""
    holder = RedisLock(redis_url, lease=HANG)
    key = "k" + uuid.uuid4().hex
    try:
        mine = holder.acquire_sync(key)
        seen = lock.acquire_sync(key)
        assert lock.subscribed_sync
        thread, woken = in_thread(lambda: lock.wait_sync(key, seen, timeout=HANG))
        listener = lock.blocking._listener
        assert listener is not None
        wait_until(lambda: key in listener._waiters, what="the waiter to register")
        assert holder.release_sync(key, mine.token)
        thread.join(HANG)
        assert woken == [True]
    finally:
        holder.close_sync()


def test_sync_waiter_polls_while_the_subscription_is_down(lock: RedisLock, redis_url: str) -> None:
    """Without its subscription, a sync waiter still sees the release (by polling the lock)."""
    holder = RedisLock(redis_url, lease=HANG)
    key = "k" + uuid.uuid4().hex
    try:
        lock.start_sync()
        listener = lock.blocking._listener
        assert listener is not None
        listener.stop()
        listener.join(HANG)
        assert not lock.subscribed_sync
        mine = holder.acquire_sync(key)
        seen = lock.acquire_sync(key)
        thread, woken = in_thread(lambda: lock.wait_sync(key, seen, timeout=HANG))
        holder.release_sync(key, mine.token)
        thread.join(HANG)
        assert woken == [True]
    finally:
        holder.close_sync()


async def test_sync_waiter_is_woken_by_an_async_holder(redis_url: str) -> None:
    """An async cache holds the lock; a sync caller elsewhere waits and gets its value."""
    namespace = "sm" + uuid.uuid4().hex[:6]
    gate = asyncio.Event()
    runs = 0
    woken: list[bool] = []

    class Recording(RedisLock):
        def wait_sync(self, key: str, holder: LockAttempt, timeout: float) -> bool:
            woken.append(super().wait_sync(key, holder, timeout))
            return woken[-1]

    async def load() -> str:
        nonlocal runs
        runs += 1
        await gate.wait()
        return "shared"

    def load_sync() -> str:
        nonlocal runs
        runs += 1
        return "from-sync"

    def tiers() -> list[Any]:
        return [sc.MemoryTier(), sc.RedisTier(redis_url)]

    holder = sc.Cache(tiers=tiers(), namespace=namespace, lock=RedisLock(redis_url, lease=HANG))
    waiter = sc.Cache(tiers=tiers(), namespace=namespace, lock=Recording(redis_url, lease=HANG))
    async with holder:
        first = asyncio.ensure_future(holder.get_or_set("k", load, lock=True))
        await poll(lambda: runs == 1, what="the async load")
        thread, got = in_thread(lambda: waiter.sync.get_or_set("k", load_sync, lock=True))
        await poll(lambda: waiter.counters.lock_waits == 1, what="the sync caller to wait")
        gate.set()
        assert await first == "shared"
        await asyncio.to_thread(thread.join, HANG)
    await asyncio.to_thread(waiter.sync.close)
    assert got == ["shared"] and runs == 1
    assert woken == [True]  # by the release message: the lease would have lasted HANG seconds
    assert waiter.counters.lock_takeovers == waiter.counters.lock_fallbacks == 0


def test_sync_caller_loads_when_the_lock_is_unreachable() -> None:
    """With the lock's Redis unreachable, sync callers still get the loader's value (counted)."""
    cache = sc.Cache(
        tiers=[sc.MemoryTier()],
        namespace="su" + uuid.uuid4().hex[:6],
        lock=RedisLock("redis://127.0.0.1:1/0", lease=1.0),
    )
    fallbacks: list[str] = []

    def on_fallback(_sender: Any, key: str, reason: str) -> None:
        fallbacks.append(reason)

    @cache.cached(ttl=60, lock=True)
    def double(x: int) -> int:
        return 2 * x

    with cache.sync, signals.lock_fallback.connected_to(on_fallback):
        assert cache.sync.get_or_set("k", lambda: "v", lock=True) == "v"
        assert double(21) == 42
    assert cache.counters.lock_fallbacks == cache.counters.lock_errors == 2
    assert double.stats.lock_fallbacks == 1  # type: ignore[attr-defined]
    assert fallbacks == ["error", "error"]


def test_sync_lock_true_without_a_lock_is_a_config_error() -> None:
    """lock=True on a cache without a shared tier is a ConfigError at decoration and call."""
    cache = sc.Cache(tiers=[sc.MemoryTier()], namespace="snolock")

    with pytest.raises(sc.ConfigError, match="no shared Redis tier"):

        @cache.cached(lock=True)
        def f() -> int:
            return 1

    with cache.sync, pytest.raises(sc.ConfigError):
        cache.sync.get_or_set("k", lambda: 1, lock=True)


def test_async_only_lock_on_a_sync_function_is_a_config_error() -> None:
    """A FleetLock without blocking methods is refused when a sync function is decorated."""

    class AsyncOnly:
        lease = wait_timeout = 1.0

        async def acquire(self, key: str) -> LockAttempt:
            raise NotImplementedError

        async def release(self, key: str, token: str) -> bool:
            raise NotImplementedError

        def hold(self, key: str, token: str) -> Any:
            raise NotImplementedError

        async def wait(self, key: str, holder: LockAttempt, timeout: float) -> bool:
            raise NotImplementedError

        async def close(self) -> None:
            pass

    cache = sc.Cache(tiers=[sc.MemoryTier()], namespace="sasync")
    with pytest.raises(sc.ConfigError):
        cache.cached(lock=AsyncOnly())(lambda: 1)


if __name__ == "__main__":
    url_, namespace_, role_, threads_, lease_, others_ = sys.argv[1:7]
    worker(url_, namespace_, role_, int(threads_), float(lease_), int(others_))
