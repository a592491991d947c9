"""``Portal``: an event loop on a daemon thread, for running coroutines from sync code.

The sync facade runs async-only work on one; the Redis bus runs its reader on one
of its own, so that the subscription lives as long as the cache, not as long as
whichever event loop first used it. A portal survives ``fork``: in the child the
parent's thread does not exist, so the portal forgets it and starts a new one on
first use (``core.loops.on_fork``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .errors import ConfigError
from .loops import on_fork

T = TypeVar("T")


class Portal:
    """An event loop on a daemon thread, for running coroutines from sync code.

    Args:
        name: the thread's name.
        on_exit: called on the portal thread when its loop stops without ``stop()`` having
            been asked for (someone stopped or broke the loop); not called at interpreter exit.
    """

    def __init__(
        self, name: str = "stratacache-portal", on_exit: Callable[[], None] | None = None
    ) -> None:
        self.name = name
        self.on_exit = on_exit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        on_fork(self)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the portal loop and wait for its result."""
        if self._thread is not None and threading.current_thread() is self._thread:
            coro.close()
            raise ConfigError(
                "cache.sync was called from the cache's own event-loop thread (e.g. a signal "
                "receiver or audit hook); use the async API there"
            )
        return self.submit(coro).result()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the portal loop (starting it if needed); its future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The portal's loop, started now if it is not running."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None or not thread.is_alive():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=self._serve, args=(loop,), name=self.name, daemon=True
                )
                self._loop, self._thread = loop, thread
                thread.start()
            return loop

    @property
    def running(self) -> bool:
        """Whether the portal thread is alive (a stopped portal restarts on next use)."""
        thread = self._thread
        return self._loop is not None and thread is not None and thread.is_alive()

    def owns(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether ``loop`` is this portal's loop."""
        return loop is self._loop

    def in_portal(self) -> bool:
        """Whether the caller runs on the portal thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    def stop(self) -> None:
        """Stop the loop and its thread (a later ``run`` starts a new one)."""
        with self._lock:
            loop, self._loop = self._loop, None
            thread = self._thread
        if loop is not None and thread is not None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
            if thread is not threading.current_thread():
                thread.join(timeout=5)

    def after_fork(self) -> None:
        """In a forked child the thread is gone: start afresh on next use."""
        self._lock = threading.Lock()
        self._loop = self._thread = None

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            with self._lock:
                asked = self._loop is not loop  # stop() forgets the loop before stopping it
                if not asked:
                    self._loop = None
            _cancel_all(loop)
            loop.close()
            if not asked and self.on_exit is not None and not sys.is_finalizing():
                self.on_exit()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on a stopped loop and let it unwind (like ``asyncio.run`` does)."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        with contextlib.suppress(Exception):  # best effort while stopping
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


async def await_any(awaitable: Any) -> Any:
    return await awaitable
