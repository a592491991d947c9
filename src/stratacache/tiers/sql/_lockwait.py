"""How long a SQLite write may wait for another connection's write lock: one decision for
the tier's writes and its bus's appends, which share one file.

Why: a cache degrades fast. SQLite has one writer at a time; a write that finds the file
locked waits up to ``timeout`` (SQLite's busy handler), then fails as a tier failure the
engine handles (the caller still gets its value; a write or invalidation that could not
land is kept and replayed). A wait that ran out means the file is locked for long (a long
transaction, a backup, a stalled process): from then on writes try the lock once without
waiting, so callers do not pay the wait on every call, until one gets through (the lock
is gone) or ``recheck`` seconds have passed since the last wait ran out (then one caller
waits again, as the breaker's cool-down lets one call through).

Not the engine's circuit breaker: reads of a WAL file need no write lock and keep
answering (each success resets the breaker's count, and its probe is a read), and
overwrites and invalidations reach a shared tier even while its breaker is open. A write
that does not wait is still tried: it costs microseconds, and it lands as soon as the
lock is free, where skipping it would not.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ...core.durations import check_duration

log = logging.getLogger("stratacache.tiers.sql")

#: default seconds a cache operation waits for another connection's write lock: many times
#: the tier's own longest routine write (a sweep or eviction batch, ``BATCH_ROWS`` rows: ~10 ms),
#: and the order of a Redis command's timeout, so a locked file costs a caller no more
#: than a hung Redis does
LOCK_TIMEOUT = 0.25
#: seconds after a wait ran out before one caller waits again (the others do not wait)
RECHECK = 1.0


class WaitingConnection(sqlite3.Connection):
    """A ``sqlite3`` connection that remembers its busy timeout (set only when it changes)."""

    busy_ms = -1

    def wait_for_lock(self, seconds: float) -> None:
        ms = int(seconds * 1000)
        if ms != self.busy_ms:
            self.execute(f"PRAGMA busy_timeout = {ms}")
            self.busy_ms = ms


class StillLocked(sqlite3.OperationalError):
    """A write tried without waiting found the lock still held (``FileLockedError`` to the
    engine: counted, but not a failure of the tier)."""


class LockWait:
    """The wait for a SQLite file's write lock, shortened to none while it is held for long.

    Args:
        timeout: seconds a write waits for the lock (0: never waits).
        recheck: seconds after a wait ran out before a write waits again.
    """

    def __init__(
        self,
        timeout: float = LOCK_TIMEOUT,
        recheck: float = RECHECK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = check_duration("SQL lock_timeout", timeout, zero_ok=True)
        self.recheck = recheck
        #: waits for the lock that ran out (each one a failed cache operation)
        self.timeouts = 0
        self._clock = clock
        self._since: float | None = None  # when the last wait ran out; None: not held long

    @property
    def held_long(self) -> bool:
        """Whether writes currently try the lock without waiting."""
        return self._since is not None

    def wait(self) -> float:
        """Seconds the write about to run may wait for the lock."""
        since = self._since
        if since is None:
            return self.timeout
        now = self._clock()
        if now - since < self.recheck:
            return 0.0
        self._since = now  # this caller waits; the others keep not waiting meanwhile
        return self.timeout

    @contextmanager
    def writing(self, conn: WaitingConnection, inline: bool = False) -> Iterator[None]:
        """Run a write on ``conn`` with the wait decided now (none ``inline``: such a
        connection never waits); note whether it found the lock held or got through."""
        wait = 0.0 if inline else self.wait()
        conn.wait_for_lock(wait)
        try:
            yield
        except sqlite3.OperationalError as exc:
            if busy(exc) and not inline:
                if wait > 0:
                    self._ran_out()
                elif self._since is not None:  # known, and logged once: not worth a log per call
                    raise StillLocked(str(exc)) from exc
            raise
        if self._since is not None:
            self._since = None
            log.info("stratacache: SQLite file writable again; writes wait for its lock again")

    def _ran_out(self) -> None:
        self.timeouts += 1
        if self._since is None:
            log.warning(
                "stratacache: SQLite file locked by another connection for over %.2fs;"
                " writes fail without waiting (kept for replay) until the lock is gone",
                self.timeout,
            )
        self._since = self._clock()


def busy(exc: BaseException) -> bool:
    """Whether ``exc`` only says another connection holds a lock on the file."""
    text = str(exc)
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


__all__ = ["LOCK_TIMEOUT", "LockWait", "StillLocked", "WaitingConnection", "busy"]
