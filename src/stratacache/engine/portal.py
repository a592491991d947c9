"""``Portal``: an event loop on a daemon thread, for running coroutines from sync code."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..core.errors import ConfigError

T = TypeVar("T")


class Portal:
    """An event loop on a daemon thread, for running coroutines from sync code."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the portal loop and wait for its result."""
        if self._loop is not None and threading.current_thread() is self._thread:
            coro.close()
            raise ConfigError(
                "cache.sync was called from the cache's own event-loop thread (e.g. a signal "
                "receiver or audit hook); use the async API there"
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=loop.run_forever, name="stratacache-portal", daemon=True
                )
                self._thread.start()
                self._loop = loop
            return self._loop

    def stop(self) -> None:
        """Stop the loop and its thread (a later ``run`` starts a new one)."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=5)
            loop.close()


async def _await(awaitable: Any) -> Any:
    return await awaitable
