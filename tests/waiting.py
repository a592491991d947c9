"""Polling with a deadline: how tests wait for something to happen (never a bare sleep)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

import pytest

TIMEOUT = 30.0  # seconds: only reached when the awaited thing never happens


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT, what: str = "") -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.01)


async def poll(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = TIMEOUT, what: str = ""
) -> None:
    """Yield to the event loop until ``predicate()`` (awaited if it is a coroutine) holds;
    fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout

    async def holds() -> bool:
        result = predicate()
        return bool(await result) if inspect.isawaitable(result) else bool(result)

    while not await holds():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(0.001)
