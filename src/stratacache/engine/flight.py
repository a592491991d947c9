"""``Flight``: one load in progress, shared by every caller asking for the same key.

Each caller waits on a future of its own, which the flight resolves itself when
the load ends. So a caller's cancellation never cancels the load (the job
``asyncio.shield`` would do), and the result reaches the callers one loop pass
sooner than through the task's done callbacks: under a busy loop, a pass is
what a miss pays most for after the loader itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from ..core.entry import Entry

#: a batch flight's answer for a key its loader left out: the waiter loads it itself
UNLOADED: Any = object()


class Flight:
    """A load of ``fkey`` registered in ``registry`` (key → flight) while it runs."""

    __slots__ = ("fkey", "registry", "run", "tags", "task", "waiters")

    def __init__(self, registry: dict[str, Flight], fkey: str, tags: tuple[str, ...]) -> None:
        self.registry = registry
        self.fkey = fkey
        self.tags = tags
        self.waiters: list[asyncio.Future[Entry]] = []
        self.task: asyncio.Task[None] | None = None
        self.run: Coroutine[Any, Any, Entry] | None = None
        registry[fkey] = self

    def join(self) -> asyncio.Future[Entry]:
        """A future resolved with the load's entry (or its error); cancelling it leaves the load."""
        waiter: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return waiter

    def start(self, run: Coroutine[Any, Any, Entry]) -> None:
        """Run the load in a task (join first: an eager task may end before this returns)."""
        self.run = run
        self.task = asyncio.ensure_future(self._fly(run))
        self.task.add_done_callback(self._abandon)

    def settle(self, entry: Any, exc: BaseException | None = None) -> None:
        """End a flight driven from outside (a batch load): ``entry`` (``UNLOADED``: load it
        yourself) or ``exc`` to every waiter, and leave the registry."""
        self._land()
        for waiter in self.waiters:
            if waiter.done():
                continue
            if exc is not None:
                waiter.set_exception(exc)
            else:
                waiter.set_result(entry)

    def _abandon(self, task: asyncio.Task[None]) -> None:
        """A task cancelled before it ever ran never reaches ``_fly``'s handlers: clean up here."""
        self._land()
        for waiter in self.waiters:
            waiter.cancel()  # a no-op on the waiters the flight already resolved
        if self.run is not None:
            self.run.close()  # never started: close it quietly (a no-op once it ran)

    async def _fly(self, run: Coroutine[Any, Any, Entry]) -> None:
        try:
            entry = await run
        except asyncio.CancelledError:  # the cache is closing: the callers are cancelled too
            self._land()
            for waiter in self.waiters:
                waiter.cancel()
            raise
        except BaseException as exc:
            self._land()
            for waiter in self.waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return  # handed to the callers; the loader's failure was counted where it ran
        self._land()
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(entry)

    def _land(self) -> None:
        """Leave the registry (unless an invalidation already detached this flight)."""
        if self.registry.get(self.fkey) is self:
            del self.registry[self.fkey]


__all__ = ["UNLOADED", "Flight"]
