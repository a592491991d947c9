"""Portal: a private event loop for running coroutines from synchronous code."""

from __future__ import annotations

import asyncio

import pytest

from stratacache.core.errors import ConfigError
from stratacache.core.portal import Portal, await_any


def test_run_returns_the_coroutine_result() -> None:
    """``run`` waits for the coroutine on the portal's loop and returns its result."""
    portal = Portal()
    try:
        assert portal.run(asyncio.sleep(0, result=7)) == 7
        assert portal.owns(portal.loop) and not portal.owns(asyncio.new_event_loop())
    finally:
        portal.stop()


def test_run_from_the_portal_thread_is_a_clear_error() -> None:
    """Blocking on the portal from its own thread would deadlock: refused with ConfigError."""
    portal = Portal()

    async def nested() -> None:
        portal.run(asyncio.sleep(0))

    try:
        with pytest.raises(ConfigError):
            portal.run(nested())
    finally:
        portal.stop()


def test_await_any_awaits_any_awaitable() -> None:
    """``await_any`` turns any awaitable (a future, a coroutine) into a coroutine."""
    portal = Portal()
    try:
        assert portal.run(await_any(asyncio.sleep(0, result="x"))) == "x"
    finally:
        portal.stop()
