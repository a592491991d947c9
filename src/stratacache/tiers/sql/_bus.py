"""``SQLBus``: the invalidation bus over a SQL tier's own database (no Redis needed).

Why: processes that share only a SQL tier (the embedded default, memory above SQLite,
in several workers) must still drop their local copies when another process writes or
invalidates. Each process appends its messages to a log table (``tiers.sql._buslog``)
and a poller thread reads the others' every ``poll_interval`` seconds (woken at once by
``NOTIFY`` on PostgreSQL), so a remote write reaches this process's local tiers within
about one poll interval.

Failure model (as ``RedisBus``): the poller reports ``on_state(False)`` when a poll
fails (the engine then serves local entries only within its staleness bound) and
``on_state(True)`` once a poll succeeds again (the engine empties its local tiers once).
Rows pruned before this process read them (it stalled longer than ``retention``) are
answered with a conservative clear of the local tiers. A failed append raises to the
engine, which keeps the message and replays it; nothing raises into callers.

A process starts reading at the log's current end: it never replays old rows (its local
tiers start empty). In a child after ``fork`` the thread and connections are forgotten;
the engine restarts the bus on its next use.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from ...core.durations import check_duration
from ...core.errors import ConfigError
from ...core.fleet import Invalidation
from ...core.loops import on_fork
from ...fleet.wire import decode, encode
from ._buslog import BATCH, PG_IDLE_READ, BusLog
from ._common import TABLE_NAME, Target, parse_url
from ._lockwait import LOCK_TIMEOUT, LockWait

log = logging.getLogger("stratacache")

#: most seconds between two attempts while the database is unreachable
_RETRY_MAX = 1.0


class SQLBus:
    """Invalidation bus on an append-only log table in a SQL tier's database.

    ``SQLTier.fleet_bus()`` builds one on the tier's database; a cache with a SQL tier and
    no Redis tier runs it by default.

    Args:
        url: ``sqlite:///path.db`` or ``postgresql://...`` (the SQL tier's database).
        table: the log table (``<table>_meta`` beside it).
        poll_interval: seconds between two reads of the log (the bound on how late another
            process's write reaches this process's local tiers, plus the read itself). On
            PostgreSQL each append's ``NOTIFY`` wakes the readers at once, and they read
            without one only every ``max(poll_interval, 1)`` seconds.
        retention: seconds a row is kept; a process that could not read for longer drops
            its local tiers instead of replaying.
        lock_timeout: seconds an append waits for another connection's write lock on a
            SQLite file (default 0.25); then it fails and the engine keeps the message for
            replay. A wait that ran out makes the next appends not wait at all for a while
            (see ``SQLTier``). The bus ``SQLTier`` builds shares the tier's.
    """

    def __init__(
        self,
        url: str = "sqlite:///stratacache.db",
        *,
        table: str = "stratacache_bus",
        poll_interval: float = 0.1,
        retention: float = 60.0,
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        self.poll_interval = check_duration("SQLBus poll_interval", poll_interval)
        self.retention = check_duration("SQLBus retention", retention)
        if self.retention < 10 * self.poll_interval:
            raise ConfigError("SQLBus retention must be at least 10 poll intervals")
        if not isinstance(table, str) or not TABLE_NAME.fullmatch(table):
            raise ConfigError(f"SQLBus table must be a plain SQL identifier, not {table!r}")
        target = parse_url(url)
        where, uri = target.where, False
        if target.dialect == "sqlite" and where == ":memory:":
            raise ConfigError("SQLBus needs a database file (a private in-memory one is unshared)")
        if where.startswith("file:"):
            uri = True
        self.url = url
        self.log = BusLog(target.dialect, where, table, uri, LockWait(lock_timeout))
        #: seconds between two reads when nothing wakes the poller (``NOTIFY`` on PostgreSQL)
        self.idle_wait = self.poll_interval
        if target.dialect != "sqlite":
            self.idle_wait = max(self.poll_interval, PG_IDLE_READ)
        #: True while polls succeed; when False the engine bounds the age of what L1 serves
        self.connected = False
        #: counters: messages applied, own echoes skipped, published, failed polls, catch-ups
        self.received = 0
        self.echoes = 0
        self.published = 0
        self.drops = 0
        self.catchups = 0
        #: times the database file was found deleted or replaced (and reopened)
        self.reopens = 0
        #: called (on the poller thread) when the file was replaced, before L1 is dropped:
        #: the SQL tier reopens its own connections there
        self.on_replaced: Callable[[], object] = _ignore
        self.namespace = ""
        self._origin = ""
        self._cursor: int | None = None  # the last id applied (None: not read yet)
        self._marks: deque[tuple[float, int]] = deque()  # (when, log head) for pruning
        self._on_message: Callable[[Invalidation], None] = _ignore
        self._on_state: Callable[[bool], None] = _ignore
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._poll_conn: Any = None
        on_fork(self)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(
        self,
        namespace: str,
        origin: str,
        on_message: Callable[[Invalidation], None],
        on_state: Callable[[bool], None],
    ) -> None:
        """Create the log if needed, read its end, start polling; ``on_state(False)`` if the
        database cannot be read now (the poller keeps trying)."""
        if self.running:
            return
        self.namespace, self._origin = namespace, origin
        self._on_message, self._on_state = on_message, on_state
        self._stop = threading.Event()
        if not await asyncio.to_thread(self._first_poll):
            on_state(False)  # before the poller starts: its "back up" must come after
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name="stratacache-sqlbus", daemon=True
        )
        self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the poller thread is alive (``connected`` says whether polls succeed)."""
        return self._thread is not None and self._thread.is_alive()

    async def close(self) -> None:
        """Stop the poller and close every connection (never raises)."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            await asyncio.to_thread(thread.join, 5 + self.poll_interval)
        self._poll_conn = None
        await asyncio.to_thread(self.log.close)
        self.connected = False
        self._cursor = None

    def after_fork(self) -> None:
        """In a forked child: forget the parent's thread and connections (never share them)."""
        self._thread = self._poll_conn = self._cursor = None
        self._stop = threading.Event()
        self.connected = False
        self._marks.clear()
        _inherited.extend(self.log.abandon())

    # -- publishing ------------------------------------------------------------------------
    async def publish(self, message: Invalidation) -> None:
        """Append ``message`` to the log. On SQLite it is tried inline first (one small write
        is cheaper than a thread hop); whatever may wait (a lock, the network) runs on a
        worker thread, so the event loop never does.

        Raises:
            sqlite3.Error | psycopg.Error: the append failed (the engine keeps and replays it).
        """
        if self.log.dialect == "sqlite":
            try:
                self.publish_sync(message, inline=True)
                return
            except sqlite3.OperationalError as exc:
                if not _locked(exc):
                    raise
        await asyncio.to_thread(self.publish_sync, message)

    def publish_sync(self, message: Invalidation, inline: bool = False) -> None:
        """``publish`` in the caller's thread."""
        if not self.namespace:
            raise ConfigError("SQLBus.publish before start")
        at = message.at or time.time()
        self.log.append(self.namespace, message.origin, at, encode(message), inline)
        self.published += 1

    # -- the poller thread -------------------------------------------------------------------
    def _first_poll(self) -> bool:
        try:
            self._connect()
        except Exception as exc:  # whatever the database says, start() must not raise
            log.warning("stratacache: invalidation log unreadable at start (%r)", exc)
            self._poll_conn = None
            return False
        self.connected = True
        return True

    def _connect(self) -> None:
        """(Re)open the poll connection; the first time, start reading at the log's end."""
        if self._poll_conn is None:
            self.log.setup()
            conn = self.log.connect()
            self.log.listen(conn)
            self._poll_conn = conn
            head = self.log.head(conn)
            if self._cursor is not None and head < self._cursor:  # the log was recreated
                self._cursor = head
                self._catch_up()
        if self._cursor is None:
            self._cursor = self.log.head(self._poll_conn)

    def _run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                more = self._poll_once()
            except Exception as exc:  # a failing database must not end the poller
                if stop.is_set():
                    break  # closed under it: nothing to report
                failures += 1
                self._failed(exc)
                stop.wait(min(self.poll_interval * 2**failures, _RETRY_MAX))
                continue
            failures = 0
            if stop.is_set() or more:
                continue
            try:
                self.log.wait(self._poll_conn, self.idle_wait, stop)
            except Exception as exc:
                self._failed(exc)

    def _poll_once(self) -> bool:
        """Read and apply the next batch; True when more rows are waiting."""
        if self.log.watch.replaced():
            self._follow_file()
        self._connect()
        conn, after = self._poll_conn, self._cursor or 0
        rows, pruned = self.log.read(conn, self.namespace, after)
        cursor = int(rows[-1][0]) if rows else after
        self._cursor = max(cursor, pruned)
        if not self.connected:
            self.connected = True
            log.info("stratacache: invalidation log readable again")
            self._on_state(True)  # the engine empties local tiers once: nothing missed survives
        elif pruned > cursor:  # rows this process never read are gone
            self._catch_up()
        for _, origin, payload in rows:
            if origin == self._origin:
                self.echoes += 1
                continue
            self.received += 1
            self._deliver(decode(bytes(payload)))
        self._maybe_prune(conn)
        return len(rows) >= BATCH

    def _follow_file(self) -> None:
        """The database file was deleted or replaced: the tier reopens, the bus restarts at
        the new log's end, and L1 is dropped once (nothing written to the new file since
        it was created has reached this process)."""
        self.reopens += 1
        try:
            self.on_replaced()
        except Exception as exc:  # the tier retries on its own next look
            log.warning("stratacache: reopening the SQL tier's file failed: %r", exc)
        self._drop_poll_conn()
        self.log.forget()
        self._cursor = None
        self._marks.clear()
        self._connect()
        self._catch_up()

    def _drop_poll_conn(self) -> None:
        """Close the poll connection (the next poll opens a new one); a close that fails is moot."""
        conn, self._poll_conn = self._poll_conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:
                log.debug("stratacache: closing the poll connection failed: %r", exc)

    def _catch_up(self) -> None:
        """Rows this process never read are gone (pruned, or the log recreated): drop L1."""
        self.catchups += 1
        log.warning("stratacache: invalidation log rows missed by this process; dropping L1")
        self._deliver(Invalidation(clear=True, reason="bus catch-up"))

    def _deliver(self, message: Invalidation) -> None:
        try:
            self._on_message(message)
        except Exception as exc:  # the engine's handler must not kill the poller
            log.warning("stratacache: applying a bus message failed: %r", exc)

    def _failed(self, exc: BaseException) -> None:
        """A poll failed: distrust local tiers (once), reconnect on the next attempt."""
        self._drop_poll_conn()
        if self.connected:
            self.connected = False
            self.drops += 1
            log.warning("stratacache: invalidation log unreadable (%r)", exc)
            self._on_state(False)
        else:
            log.debug("stratacache: invalidation log still unreadable (%r)", exc)

    def _maybe_prune(self, conn: Any) -> None:
        """Every ``retention / 4`` seconds note the log's end; delete what ended ``retention`` ago."""
        now = time.monotonic()
        marks = self._marks
        if marks and now - marks[-1][0] < self.retention / 4:
            return
        marks.append((now, self.log.head(conn)))
        upto = 0
        while marks and now - marks[0][0] >= self.retention:
            upto = marks.popleft()[1]
        if upto:
            try:
                self.log.prune(conn, upto)
            except sqlite3.OperationalError as exc:
                if not _locked(exc):
                    raise
                # housekeeping, not a lost bus (the reads answer): the next mark prunes these
                log.debug("stratacache: invalidation log not pruned, the file is locked: %r", exc)


def tier_bus(
    target: Target,
    table: str,
    on_replaced: Callable[[], object] | None = None,
    lock: LockWait | None = None,
) -> SQLBus | None:
    """The bus of a ``SQLTier`` on ``target`` with entries table ``table`` (``<table>_bus``);
    None for a private in-memory SQLite database, which no other process can share.
    ``on_replaced``: the tier's reopening, called when the file is found replaced;
    ``lock``: the tier's wait for the file's write lock, shared by the bus's appends."""
    if target.dialect == "sqlite" and target.where == ":memory:":
        return None
    url = "sqlite:///" + quote(target.where) if target.dialect == "sqlite" else target.where
    bus = SQLBus(url, table=table + "_bus")
    if on_replaced is not None:
        bus.on_replaced = on_replaced
    if lock is not None:
        bus.log.lock = lock
    return bus


def _locked(exc: BaseException) -> bool:
    """Whether ``exc`` only says another connection holds the SQLite write lock."""
    return "locked" in str(exc) or "busy" in str(exc)


def _ignore(*_: Any) -> None:
    return None


#: connections inherited from a parent process: kept referenced, never closed
_inherited: list[Any] = []

__all__ = ["SQLBus", "tier_bus"]
