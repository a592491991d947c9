"""Single-flight loads: callers share one load; a caller's cancellation never cancels it."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence

import pytest

import stratacache as sc
from stratacache.core.entry import Entry


class Gate:
    """A loader that counts its runs and waits until released."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.fail = fail

    async def __call__(self) -> int:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        if self.fail:
            raise RuntimeError("source down")
        return 42


def cache() -> sc.Cache:
    return sc.Cache([sc.MemoryTier(maxsize=100)], namespace="flight")


@pytest.mark.parametrize("callers", [2, 5, 20])
@pytest.mark.parametrize("cancelled", ["first", "all_but_last", "all"])
async def test_cancelled_callers_leave_the_load_running(callers: int, cancelled: str) -> None:
    """Cancelling waiting callers (even the one that started the load) never cancels the load."""
    async with cache() as c:
        loader = Gate()
        tasks = [asyncio.ensure_future(c.get_or_set("k", loader)) for _ in range(callers)]
        await loader.started.wait()
        flight = c.readthrough._inflight[c.full_key("k")]
        doomed = {"first": tasks[:1], "all_but_last": tasks[:-1], "all": tasks}[cancelled]
        for task in doomed:
            task.cancel()
        await asyncio.gather(*doomed, return_exceptions=True)
        loader.release.set()
        survivors = [t for t in tasks if t not in doomed]
        assert await asyncio.gather(*survivors) == [42] * len(survivors)
        assert flight.task is not None
        await flight.task
        assert await c.get_or_set("k", loader) == 42  # stored by the load nobody waited for
        assert loader.calls == 1
        assert c.stats()["engine"]["coalesced"] == callers - 1


@pytest.mark.parametrize("callers", [1, 3, 10])
async def test_a_failed_load_reaches_every_caller(callers: int) -> None:
    """The loader's error is raised to each waiting caller, and the load runs once."""
    async with cache() as c:
        loader = Gate(fail=True)
        tasks = [asyncio.ensure_future(c.get_or_set("k", loader)) for _ in range(callers)]
        await loader.started.wait()
        loader.release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        assert loader.calls == 1


async def test_failed_load_with_no_caller_left_is_not_reported_unretrieved() -> None:
    """A load whose callers were all cancelled fails quietly (no 'never retrieved' report)."""
    reported: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        async with cache() as c:
            loader = Gate(fail=True)
            task = asyncio.ensure_future(c.get_or_set("k", loader))
            await loader.started.wait()
            flight = c.readthrough._inflight[c.full_key("k")]
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            loader.release.set()
            assert flight.task is not None
            await flight.task  # ends normally: the error went to the (cancelled) callers
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert reported == []


async def test_close_cancels_a_load_and_its_callers() -> None:
    """Closing the cache cancels a running load; its callers see the cancellation."""
    c = cache()
    await c.start()
    loader = Gate()
    task = asyncio.ensure_future(c.get_or_set("k", loader))
    await loader.started.wait()
    await c.close()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_close_before_the_load_started_releases_its_callers() -> None:
    """A load cancelled before its task ever ran still releases its callers (no hang)."""
    c = cache()
    await c.start()
    loader = Gate()
    task = asyncio.ensure_future(c.get_or_set("k", loader))
    await asyncio.sleep(0)  # the caller registered the load; its task has not run yet
    assert c.full_key("k") in c.readthrough._inflight and loader.calls == 0
    await c.close()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5.0)
    assert loader.calls == 0 and not c.readthrough._inflight


class _GatedRedis(sc.RedisTier):
    """A Redis tier whose reads wait for ``gate`` while it is set."""

    gate: asyncio.Event | None = None
    reads = 0

    async def get(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        return await super().get(key, tags)


async def test_a_cancelled_first_reader_leaves_no_joined_reader_waiting(redis_url: str) -> None:
    """Callers that joined another's read of a key get their value even when that first
    reader is cancelled mid-read: they read again themselves."""
    tier = _GatedRedis(redis_url)
    async with sc.Cache([tier], namespace="flight-read", bus=False) as c:
        await c.set("k", 7, ttl=60)
        tier.gate = asyncio.Event()
        loader = Gate()
        first = asyncio.ensure_future(c.get_or_set("k", loader, ttl=60))
        await asyncio.sleep(0)  # its read is in flight, held at the gate
        joined = [asyncio.ensure_future(c.get_or_set("k", loader, ttl=60)) for _ in range(3)]
        await asyncio.sleep(0)
        assert tier.reads == 1  # they share the first read
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        tier.gate.set()
        assert await asyncio.wait_for(asyncio.gather(*joined), timeout=5) == [7, 7, 7]
        assert first.cancelled() and loader.calls == 0
