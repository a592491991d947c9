"""The refresh-ahead schedule of one cached function (``refresh_every=``), fork-safe.

Why: the schedule is a thread (a sync function) or a task (an async one) that the
function's first load starts, and neither exists in a process forked from one that
ran it. In a forked child the schedule is forgotten and the function's memo emptied,
so that its next call takes the slow path and starts the child's own schedule: the
engine's rule for its threads too, "start again on next use" (a child that never
calls the function never runs its loader in the background).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from .core.loops import on_fork
from .core.memo import CallMemo

log = logging.getLogger("stratacache")


class RefreshSchedule:
    """Starts a function's refresh loop when none runs in this process (``interval`` None:
    no schedule)."""

    __slots__ = ("__weakref__", "_stop", "_task", "interval", "memo")

    def __init__(self, interval: float | None, memo: CallMemo) -> None:
        self.interval = interval
        self.memo = memo
        self._stop: threading.Event | None = None  # set to stop the refresh thread
        self._task: asyncio.Task[None] | None = None
        if interval is not None:
            on_fork(self)

    def ensure_thread(
        self, refresh_hot: Callable[[], int], closers: list[Callable[[], None]]
    ) -> None:
        """Start the refresh thread unless one runs (``closers`` get its stop)."""
        if self.interval is None or (self._stop is not None and not self._stop.is_set()):
            return
        self._stop = stop = threading.Event()
        interval = self.interval

        def loop() -> None:
            while not stop.wait(interval):
                try:
                    refresh_hot()
                except Exception as exc:  # keep the schedule alive
                    log.warning("stratacache: scheduled refresh failed: %r", exc)

        threading.Thread(target=loop, name="stratacache-schedule", daemon=True).start()
        closers.append(stop.set)  # stops with the cache

    def ensure_task(
        self,
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        refresh_hot: Callable[[], Coroutine[Any, Any, int]],
    ) -> None:
        """Start the refresh task unless one runs."""
        if self.interval is None or (self._task is not None and not self._task.done()):
            return
        self._task = spawn(self._every(self.interval, refresh_hot))

    @staticmethod
    async def _every(interval: float, refresh_hot: Callable[[], Coroutine[Any, Any, int]]) -> None:
        while True:
            await asyncio.sleep(interval)
            await refresh_hot()

    def after_fork(self) -> None:
        """In a forked child: the parent's thread or task does not run here; the next call
        starts one (the memo no longer answers it first)."""
        self._stop = None
        self._task = None
        self.memo.clear()
