"""Which file a SQLite path names: noticing that the file a tier holds open was replaced.

Why: a process keeps the database file it opened even after that file is deleted or
replaced on disk; processes started later open a new file at the same path, and their
writes and invalidations never reach the old ones, which would serve stale values for
as long as they run. One ``os.stat`` of the path (device and inode) tells whether the
path still names the file that was opened.
"""

from __future__ import annotations

import os
import time

#: seconds between two looks at the path on the read and write paths
CHECK_EVERY = 0.25


def identity(path: str) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the file at ``path``; None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class FileWatch:
    """The identity of the file opened at ``path`` (None: nothing to watch, e.g. in memory)."""

    __slots__ = ("_due", "opened", "path")

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.opened: tuple[int, int] | None = None
        self._due = 0.0

    def record(self) -> None:
        """Note the file the connections just opened are on."""
        if self.path is not None:
            self.opened = identity(self.path)
            self._due = time.monotonic() + CHECK_EVERY

    def due(self) -> bool:
        """Whether ``CHECK_EVERY`` seconds passed since the last look (cheap: one clock read)."""
        return self.opened is not None and time.monotonic() >= self._due

    def replaced(self) -> bool:
        """Whether the path no longer names the file that was opened (one ``os.stat``)."""
        if self.path is None or self.opened is None:
            return False
        self._due = time.monotonic() + CHECK_EVERY
        return identity(self.path) != self.opened
