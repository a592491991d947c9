"""Where ``SQLTier``'s calls run: in the caller's thread, inline on the loop, or on its worker.

Why: the choice of thread and the translation of driver errors into ``TierError`` are
one job, the same for every operation; the tier only says which call goes where.

Where the calls run:

- The ``*_sync`` methods (``cache.sync``) run in the caller's thread.
- Async reads on SQLite are answered inline on the event loop: a primary-key read
  in WAL mode never waits for a writer; if it would have to (a lock during WAL
  recovery), it is retried on the tier's worker thread instead of blocking the loop.
  Async reads on PostgreSQL use psycopg's async connections, one small pool per
  event loop.
- Async writes run on one dedicated worker thread per tier, except a single-row set on
  SQLite, which is written inline unless the file is locked (then it goes to the worker
  too). Inline connections never checkpoint; the worker does, every few hundred writes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from ...core.errors import FileLockedError, TierError
from ._lockwait import StillLocked

T = TypeVar("T")
log = logging.getLogger("stratacache.tiers.sql")


class Runner:
    """Runs a SQL tier's calls; driver errors (``errors``) become ``TierError`` of ``name``.

    Args:
        name: the tier's name, in errors and logs.
        errors: the driver's exception types (plus ``OSError``) to translate.
        busy: whether an error means "SQLite is locked by another connection" (retry on
            the worker thread, which waits for the lock).
    """

    def __init__(
        self,
        name: str,
        errors: tuple[type[BaseException], ...],
        busy: Callable[[BaseException], bool],
    ) -> None:
        self.name = name
        self.errors = errors
        self._busy = busy
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        #: the task sweeping expired rows, if started
        self.sweeper: asyncio.Task[None] | None = None

    def error(self, op: str, exc: BaseException) -> TierError:
        """The engine's error for driver error ``exc`` in operation ``op``."""
        if isinstance(exc, StillLocked):
            return FileLockedError(self.name, op, exc)
        return TierError(self.name, op, exc)

    def guard(self, op: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the caller's thread, driver errors turned into ``TierError``."""
        try:
            return fn(*args)
        except self.errors as exc:
            raise self.error(op, exc) from exc

    async def aguard(self, op: str, awaitable: Any) -> Any:
        """``await awaitable`` (an async driver call), driver errors as ``TierError``."""
        try:
            return await awaitable
        except self.errors as exc:
            raise self.error(op, exc) from exc

    async def here(self, op: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args, inline=True)`` on the event loop; if SQLite is locked by another
        connection, ``fn(*args)`` on the worker thread, which waits for the lock."""
        try:
            return fn(*args, True)
        except self.errors as exc:
            if not self._busy(exc):
                raise self.error(op, exc) from exc
        return await self.offload(op, fn, *args)

    async def offload(self, op: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the tier's worker thread, driver errors as ``TierError``."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.worker(), fn, *args)
        except self.errors as exc:
            raise self.error(op, exc) from exc

    def background(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the worker thread without waiting; a failure is logged."""
        self.worker().submit(fn).add_done_callback(self._log_failure)

    def worker(self) -> ThreadPoolExecutor:
        """The one thread that runs this tier's async writes (started on first use)."""
        executor = self._executor
        if executor is None:
            with self._executor_lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="stratacache-sql")
                executor = self._executor
        return executor

    def keep_sweeping(self, interval: float, sweep: Callable[[], Awaitable[int]]) -> None:
        """Run ``sweep()`` every ``interval`` seconds on this event loop (0: never); idempotent."""
        if not interval:
            return
        loop = asyncio.get_running_loop()
        task = self.sweeper
        if task is None or task.done() or task.get_loop() is not loop:
            self.sweeper = loop.create_task(self._sweep_forever(interval, sweep))

    async def _sweep_forever(self, interval: float, sweep: Callable[[], Awaitable[int]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await sweep()
            except TierError as exc:
                log.warning("stratacache: sweep of tier %r failed: %s", self.name, exc)

    async def close(self) -> None:
        """Stop the sweeper, then the worker thread after its queued calls (never blocking)."""
        sweeper, self.sweeper = self.sweeper, None
        if sweeper is not None and not sweeper.get_loop().is_closed():
            sweeper.cancel()
            if sweeper.get_loop() is asyncio.get_running_loop():
                await asyncio.gather(sweeper, return_exceptions=True)
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)

    def after_fork(self) -> None:
        """In a forked child: the parent's worker thread and sweeper do not exist here."""
        self.sweeper = None
        self._executor = None
        self._executor_lock = threading.Lock()

    def _log_failure(self, future: Future[Any]) -> None:
        exc = future.exception()
        if exc is not None:
            log.warning("stratacache: tier %r could not record reads: %r", self.name, exc)
