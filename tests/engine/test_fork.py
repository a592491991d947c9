"""A cache used in a child process after ``os.fork()`` (real forks; the parent checks the exit)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import stratacache as sc
from stratacache.fleet.bus import RedisBus

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

STACKS = ["redis", "memory+redis", "memory+redis+bus"]
CHILD_TIMEOUT = 30.0  # seconds: only reached when the child hangs


def build(stack: str, url: str, namespace: str) -> sc.Cache:
    tiers: list[Any] = [sc.RedisTier(url=url)]
    if stack.startswith("memory"):
        tiers.insert(0, sc.MemoryTier(maxsize=100))
    bus = RedisBus(url, reconnect_max=0.05) if stack.endswith("bus") else None
    lock = sc.RedisLock(url)  # the fleet lock too: its listeners are threads and tasks
    return sc.Cache(tiers=tiers, namespace=namespace, default_ttl=60, bus=bus, lock=lock)


def l1_has(cache: sc.Cache, key: str) -> bool:
    top: Any = cache.tiers.top
    return hasattr(top, "peek") and top.peek(cache.full_key(key)) is not None


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + CHILD_TIMEOUT / 2
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def in_child(body: Callable[[], None]) -> int:
    """Fork; run ``body`` in the child (exit 0 if it returns); the child's pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            body()
            code = 0
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)
    return pid


def exit_code(pid: int) -> int:
    """Wait for the child (killing it if it hangs) and return its exit code."""
    deadline = time.monotonic() + CHILD_TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child hung for {CHILD_TIMEOUT}s")
        time.sleep(0.01)


def child_work(cache: sc.Cache, path: str, stack: str, url: str) -> Callable[[], None]:
    """What the child does: read the parent's value, write its own, hear the bus."""

    def sync_path() -> None:
        assert cache.sync.get("parent") == "p"
        cache.sync.set("child", "c")
        assert cache.sync.get("child") == "c"
        assert cache.sync.get_or_set("loaded", lambda: "l", lock=True) == "l"
        cache.sync.invalidate(keys=["loaded"])
        assert cache.sync.get("loaded") is None

    async def async_path() -> None:
        assert await cache.get("parent") == "p"
        await cache.set("child", "c")
        assert await cache.get("child") == "c"
        assert await cache.get_or_set("loaded", lambda: "l", lock=True) == "l"
        await cache.invalidate(keys=["loaded"])
        assert await cache.get("loaded") is None

    def body() -> None:
        if stack.endswith("bus"):
            # the parent's bus thread does not exist here: nothing local is trusted yet
            assert not cache.tiers.local_trusted
        if path == "sync":
            sync_path()
        else:
            asyncio.run(async_path())
        if stack.endswith("bus"):
            bus = cache.bus
            assert isinstance(bus, RedisBus) and bus.running and cache.tiers.local_trusted
            assert l1_has(cache, "child")
            other = build(stack, url, cache.namespace)  # another process, as far as the bus knows
            other.sync.set("child", "c2")
            wait_for(lambda: not l1_has(cache, "child"), "the child's bus to evict")
            other.sync.close()
        if path == "sync":
            cache.sync.close()
        else:
            asyncio.run(cache.close())

    return body


@pytest.mark.parametrize("path", ["sync", "async"])
@pytest.mark.parametrize("stack", STACKS)
def test_child_after_fork_gets_and_sets_and_parent_keeps_working(
    stack: str, path: str, redis_url: str
) -> None:
    """A forked child uses the cache (sync or async) and exits 0; the parent is unharmed."""
    cache = build(stack, redis_url, "fork" + uuid.uuid4().hex[:8])

    async def parent_first() -> None:
        await cache.set("parent", "p")
        assert await cache.get("parent") == "p"
        assert await cache.get_or_set("locked", lambda: 1, lock=True) == 1

    asyncio.run(parent_first())  # async clients, the bus and lock threads, made before the fork
    cache.sync.set("parent", "p")  # and the blocking clients
    assert cache.sync.get_or_set("locked-sync", lambda: 1, lock=True) == 1
    pid = in_child(child_work(cache, path, stack, redis_url))
    assert exit_code(pid) == 0
    # the child closed its copies of the sockets: the parent's connections still work
    expected = "c2" if stack.endswith("bus") else "c"
    assert cache.sync.get("child") == expected

    async def parent_again() -> Any:
        return await cache.get("child")

    assert asyncio.run(parent_again()) == expected
    if stack.endswith("bus"):
        bus = cache.bus
        assert isinstance(bus, RedisBus) and bus.running and cache.tiers.local_trusted
    cache.sync.close()


def test_fork_from_a_thread_using_the_sync_api_does_not_hang(redis_url: str) -> None:
    """The child's sync set returns even though the parent's portal and bus threads are gone."""
    cache = build("memory+redis+bus", redis_url, "forkhang" + uuid.uuid4().hex[:8])
    cache.sync.set("k", 1)
    cache.sync.flush_namespace()  # the sync facade's portal thread now exists too

    def body() -> None:
        cache.sync.set("k", 2)
        assert cache.sync.get("k") == 2
        assert cache.sync.flush_namespace() >= 2  # runs on a new portal thread

    assert exit_code(in_child(body)) == 0
    cache.sync.close()


def test_a_forked_child_hears_the_parents_invalidations(redis_url: str) -> None:
    """A child gets an origin of its own: its bus applies what its parent (or a sibling) sends."""
    cache = sc.Cache(
        tiers=[sc.MemoryTier(), sc.RedisTier(url=redis_url)],
        namespace="forko" + uuid.uuid4().hex[:8],
        staleness_bound=0,
    )
    cache.sync.set("warm", 1)  # the parent has used the cache, and its bus runs
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            cache.sync.set("k", "v")
            deadline = time.monotonic() + 10
            while not (cache.tiers.local_trusted and l1_has(cache, "k")):
                if time.monotonic() > deadline:
                    os._exit(2)
                time.sleep(0.01)
                cache.sync.get("k")
            os.write(ready_w, b"1")
            deadline = time.monotonic() + 10
            while l1_has(cache, "k") and time.monotonic() < deadline:
                time.sleep(0.01)
            status = 0 if not l1_has(cache, "k") else 3
        finally:
            os._exit(status)
    assert os.read(ready_r, 1) == b"1"
    cache.sync.invalidate(keys=["k"])
    _, status = os.waitpid(pid, 0)
    cache.sync.close()
    assert os.waitstatus_to_exitcode(status) == 0


def test_forked_workers_on_one_sqlite_file_hear_each_other(tmp_path: Path) -> None:
    """The embedded default forked into workers (``gunicorn --preload``): each child's bus
    (a ``SQLBus`` on the shared file) applies what the parent or a sibling writes."""
    cache = sc.Cache(
        tiers=[sc.MemoryTier(), sc.SQLTier(url=f"sqlite:///{tmp_path / 'c.db'}")],
        namespace="forksql",
    )
    cache.sync.set("k", 0)  # the parent has used the cache, and its bus runs
    assert type(cache.bus).__name__ == "SQLBus"
    ready_r, ready_w = os.pipe()

    def reader() -> None:
        assert cache.sync.get("k") == 0  # now in this child's memory tier
        wait_for(lambda: cache.tiers.local_trusted and l1_has(cache, "k"), "the child's L1 copy")
        os.write(ready_w, b"1")
        wait_for(lambda: cache.sync.get("k") == 1, "the sibling's write")

    pid = in_child(reader)
    assert os.read(ready_r, 1) == b"1"
    writer = in_child(lambda: cache.sync.set("k", 1))
    assert exit_code(writer) == 0
    assert exit_code(pid) == 0
    cache.sync.close()
