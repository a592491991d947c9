"""Single-flight loads: callers share one load; a caller's cancellation never cancels it."""

from __future__ import annotations

import asyncio
import gc

import pytest

import stratacache as sc


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
