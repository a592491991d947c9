"""``refresh_every`` keeps refreshing in a child process forked after it started."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import Callable

import pytest

import stratacache as sc

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

DEADLINE = 10.0  # seconds: only reached when the refresh never runs


def _wait_for(predicate: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _run_in_fork(body: Callable[[], bool]) -> int | None:
    """Run ``body`` in a forked child: its exit code is 0 when it returned True."""
    context = multiprocessing.get_context("fork")
    child = context.Process(target=lambda: os._exit(0 if body() else 3))
    child.start()
    child.join(DEADLINE * 3)
    if child.is_alive():  # pragma: no cover - a hang
        child.kill()
        child.join()
    return child.exitcode


def test_sync_refresh_every_runs_in_a_forked_child() -> None:
    """The parent's refresh thread does not survive the fork: the child runs its own."""
    cache = sc.Cache(tiers=[sc.MemoryTier(maxsize=100)], namespace="forked", bus=False)
    loads: list[int] = []

    @cache.cached(ttl=600, refresh_every=0.02)
    def fetch(x: int) -> int:
        loads.append(os.getpid())
        return x

    def refreshed_here() -> bool:
        """Keep the entry hot (a refreshed entry is refreshed again once read) until the
        refresh loop of this process has loaded it twice."""
        mine = os.getpid()
        return _wait_for(lambda: fetch(1) == 1 and loads.count(mine) >= 2)

    assert refreshed_here()

    try:
        assert _run_in_fork(refreshed_here) == 0  # its first read is the parent's entry
    finally:
        cache.sync.close()


def test_async_refresh_every_runs_in_a_forked_child() -> None:
    """The parent loop's refresh task does not exist in the child: its own loop runs one."""
    cache = sc.Cache(tiers=[sc.MemoryTier(maxsize=100)], namespace="aforked", bus=False)
    loads: list[int] = []

    @cache.cached(ttl=600, refresh_every=0.02)
    async def fetch(x: int) -> int:
        loads.append(os.getpid())
        return x

    async def refreshed_here() -> bool:
        assert await fetch(1) == 1
        mine = os.getpid()
        deadline = time.monotonic() + DEADLINE
        while loads.count(mine) < 2:  # reading keeps the entry hot
            if time.monotonic() > deadline or await fetch(1) != 1:
                return False
            await asyncio.sleep(0.01)
        return True

    assert asyncio.run(refreshed_here())  # the parent's loop is gone once this returns
    assert _run_in_fork(lambda: asyncio.run(refreshed_here())) == 0
