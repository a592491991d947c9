"""Keeps a SQL tier's table within ``max_entries`` / ``max_bytes``.

Why: counting writes, checking the bounds every few of them, evicting (expired rows
first, then the least recently read) and recording reads for that order are one job,
shared by every write path of the tier (``set``, batches, compare-and-set).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ._common import over
from ._readlog import ReadLog


class Bounds:
    """The bound keeping of one tier's table.

    Args:
        store: the tier's ``SQLiteStore`` or ``PostgresStore``.
        max_entries: most live entries kept (None: no bound on the count).
        max_bytes: most bytes of stored values kept (None: no bound on bytes).
        now: the tier's clock, in seconds.
    """

    def __init__(
        self,
        store: Any,
        max_entries: int | None,
        max_bytes: int | None,
        now: Callable[[], float],
    ) -> None:
        self.store = store
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.now = now
        #: whether any bound is set (without one, nothing here does any work)
        self.bounded = max_entries is not None or max_bytes is not None
        #: reads recorded for the eviction order
        self.reads = ReadLog()
        #: entries evicted so far (shown as the tier's ``evictions``)
        self.evictions = 0
        self._written = 0
        self._count_lock = threading.Lock()

    def wrote(self, rows: int) -> bool:
        """Count ``rows`` written; True when a bound check is due (the count restarts)."""
        self._written += rows
        if self.bounded and self._written >= self.store.check_every:
            self._written = 0
            return True
        return False

    def over_bounds(self, errors: tuple[type[BaseException], ...]) -> bool:
        """Whether the table exceeds a bound, read on the event loop (a one-row read); True
        when that read fails with one of ``errors``, so that the worker thread, which waits
        for locks, looks."""
        try:
            count, size = self.store.usage(True)
        except errors:
            return True
        # record reads for the eviction order only once eviction is in sight
        self.reads.recording = over(2 * count, 2 * size, self.max_entries, self.max_bytes)
        return over(count, size, self.max_entries, self.max_bytes)

    def enforce(self) -> None:
        """Evict until the table is within its bounds (in the caller's thread)."""
        self._written = 0
        if not self.bounded:
            return
        self.flush_touches()
        evicted = self.store.evict(self.max_entries, self.max_bytes, self.now())
        with self._count_lock:  # the worker thread and a caller's sweep may both evict
            self.evictions += evicted

    def flush_touches(self) -> None:
        """Write the recorded reads (their keys' last-read times)."""
        keys = self.reads.take()
        if keys:
            self.store.touch(keys, self.now())

    def after_fork(self) -> None:
        """In a forked child: the parent's recorded reads and lock are not ours."""
        self._count_lock = threading.Lock()
        self.reads = ReadLog()
