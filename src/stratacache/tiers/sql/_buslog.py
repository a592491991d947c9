"""The invalidation log of ``SQLBus``: an append-only table in the SQL tier's own database.

Why: processes sharing a SQL tier have no channel but that database; each appends its
invalidations as rows and reads the others' in id order. A reader keeps a cursor (the
last id it applied); it never reads rows older than where it started, so a process that
(re)starts replays nothing.

Ids are handed out in commit order, so a reader that has seen id ``n`` never later finds
a smaller id committed: SQLite serialises writers; on PostgreSQL an append takes a
transaction-scoped advisory lock before its id is drawn (ids drawn by a sequence in
concurrent transactions would commit out of order). An append also sends a ``NOTIFY``
there, which wakes the readers ``LISTEN``-ing at once.

Old rows are pruned by id; each namespace's highest pruned id is kept in ``<log>_meta``,
so a reader whose cursor lies below it knows it may have missed rows of its namespace
(and drops its local tiers).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

from ._filewatch import FileWatch
from ._lockwait import LockWait, WaitingConnection

#: rows read per poll (a longer backlog is read in several polls, without waiting)
BATCH = 512
#: seconds a SQLite poll connection waits for a lock (a read in WAL mode rarely does; an
#: append or prune waits as the ``LockWait`` shared with the SQL tier says)
SQLITE_BUSY_TIMEOUT = 2.0
#: seconds a PostgreSQL connect may take (libpq counts whole seconds, at least 2)
PG_CONNECT_TIMEOUT = 2
#: seconds between two reads without a notification on PostgreSQL (the fallback)
PG_IDLE_READ = 1.0
#: seconds a PostgreSQL wait goes without looking whether the bus is closing
STOP_CHECK = 0.1


class BusLog:
    """The log and meta tables; blocking calls, one connection per thread on SQLite.

    Args:
        dialect: ``"sqlite"`` or ``"postgresql"``.
        where: the SQLite path (or shared-memory URI) or the libpq URI.
        table: the log table's name (``<table>_meta`` beside it).
        uri: ``where`` is a SQLite URI.
        lock: how long a SQLite append waits for the write lock (shared with the SQL tier
            on the same file, so that a lock one of them found held costs the other no wait).
    """

    def __init__(
        self,
        dialect: str,
        where: str,
        table: str,
        uri: bool = False,
        lock: LockWait | None = None,
    ) -> None:
        self.dialect = dialect
        self.lock = lock if lock is not None else LockWait()
        self.where = where
        self.table = table
        self.channel = table  # the NOTIFY channel (PostgreSQL)
        self._uri = uri
        self._local = threading.local()
        self._gen = 0
        self._conns: list[Any] = []
        self._lock = threading.Lock()
        self._pg_lock = threading.Lock()  # PostgreSQL appends share one connection
        #: the SQLite file the log was opened on (``SQLBus`` follows a replaced one)
        self.watch = FileWatch(where if dialect == "sqlite" and not uri else None)
        m = "?" if dialect == "sqlite" else "%s"
        t = table
        self._read = (
            f"SELECT id, origin, payload FROM {t} WHERE namespace = {m} AND id > {m}"
            f" ORDER BY id LIMIT {BATCH}"
        )
        self._pruned = f"SELECT pruned FROM {t}_meta WHERE namespace = {m}"
        self._head = f"SELECT COALESCE(MAX(id), 0) FROM {t}"
        if dialect == "sqlite":
            self.errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
            self._append = f"INSERT INTO {t} (namespace, origin, at, payload) VALUES (?, ?, ?, ?)"
        else:
            import psycopg

            self.errors = (psycopg.Error,)
            # the lock is taken before the id is drawn and held until commit: commit order
            self._append = (
                "WITH held AS (SELECT pg_advisory_xact_lock(hashtext(%s)))"
                f" , row AS (INSERT INTO {t} (namespace, origin, at, payload)"
                " SELECT %s, %s, %s, %s FROM held RETURNING id)"
                " SELECT pg_notify(%s, '') FROM row"
            )

    # -- connections -------------------------------------------------------------------------
    def conn(self, inline: bool = False) -> Any:
        """This thread's connection (SQLite; ``inline`` ones never wait for a lock nor
        checkpoint) or the shared append connection (PostgreSQL)."""
        key = ("inline" if inline else "conn") if self.dialect == "sqlite" else "shared"
        holder = self._local if self.dialect == "sqlite" else self
        held = getattr(holder, "_held_" + key, None)
        if held is not None and held[0] == self._gen:
            return held[1]
        conn = self.connect(inline)
        setattr(holder, "_held_" + key, (self._gen, conn))
        return conn

    def connect(self, inline: bool = False) -> Any:
        """A new connection (autocommit); closed by ``close``."""
        conn: Any
        if self.dialect == "sqlite":
            wait = 0.0 if inline else SQLITE_BUSY_TIMEOUT
            conn = sqlite3.connect(
                self.where,
                timeout=wait,
                isolation_level=None,
                check_same_thread=False,
                uri=self._uri,
                factory=WaitingConnection,
            )
            conn.busy_ms = int(wait * 1000)
            conn.execute("PRAGMA synchronous=NORMAL")
            if inline:  # a commit on an event loop never runs a checkpoint (an fsync)
                conn.execute("PRAGMA wal_autocheckpoint=0")
        else:
            import psycopg

            conn = psycopg.connect(
                self.where,
                autocommit=True,
                connect_timeout=PG_CONNECT_TIMEOUT,
                tcp_user_timeout=2000,  # a dead peer fails a statement instead of hanging it
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=1,
                keepalives_count=2,
            )
        with self._lock:
            self._conns.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection (they reopen on next use)."""
        with self._lock:
            self._gen += 1
            conns, self._conns = self._conns, []
        for conn in conns:
            with suppress(Exception):  # closing is best effort
                conn.close()

    def forget(self) -> None:
        """Drop every connection without closing it (a call in flight finishes on its own);
        the next use opens new ones, on the file the path names then."""
        with self._lock:
            self._gen += 1
            self._conns = []
        self.watch.opened = None

    def abandon(self) -> list[Any]:
        """After fork: forget the parent's connections without closing them."""
        self._gen += 1
        self._lock = threading.Lock()
        self._pg_lock = threading.Lock()
        conns, self._conns = self._conns, []
        return conns

    # -- statements --------------------------------------------------------------------------
    def setup(self) -> None:
        """Create the log and meta tables if needed."""
        t = self.table
        if self.dialect == "sqlite":
            conn = self.conn()
            conn.execute("PRAGMA journal_mode=WAL")
            if self.watch.opened is None:
                self.watch.record()
            ddl = [
                f"CREATE TABLE IF NOT EXISTS {t} (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " namespace TEXT NOT NULL, origin TEXT NOT NULL, at REAL NOT NULL,"
                " payload BLOB NOT NULL)",
                f"CREATE INDEX IF NOT EXISTS {t}_ns ON {t} (namespace, id)",
                f"CREATE TABLE IF NOT EXISTS {t}_meta (namespace TEXT PRIMARY KEY,"
                " pruned INTEGER NOT NULL)",
            ]
            for statement in ddl:
                conn.execute(statement)
            return
        with self._pg_lock:
            try:
                self._create_pg(self.conn())
            except self.errors:
                self._drop_shared()
                raise

    def _create_pg(self, conn: Any) -> None:
        """Create the PostgreSQL tables (one creator at a time)."""
        t = self.table
        with conn.transaction():  # concurrent first starts: one creates, the others wait
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (t,))
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t} (id BIGSERIAL PRIMARY KEY,"
                " namespace TEXT NOT NULL, origin TEXT NOT NULL,"
                " at DOUBLE PRECISION NOT NULL, payload BYTEA NOT NULL)"
            )
            conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_ns ON {t} (namespace, id)")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t}_meta (namespace TEXT PRIMARY KEY,"
                " pruned BIGINT NOT NULL)"
            )

    def append(
        self, namespace: str, origin: str, at: float, payload: bytes, inline: bool = False
    ) -> None:
        """Append one message (committed when this returns); ``inline`` (SQLite): raise
        ``sqlite3.OperationalError`` at once rather than wait for another writer."""
        if self.dialect == "sqlite":
            conn = self.conn(inline)
            with self.lock.writing(conn, inline):
                conn.execute(self._append, (namespace, origin, at, payload))
            return
        with self._pg_lock:
            try:
                self.conn().execute(
                    self._append, (self.table, namespace, origin, at, payload, self.channel)
                )
            except self.errors:
                self._drop_shared()  # a broken connection: the next append opens a new one
                raise

    def _drop_shared(self) -> None:
        held = getattr(self, "_held_shared", None)
        self._held_shared = None
        if held is not None:
            with suppress(Exception):
                held[1].close()

    def head(self, conn: Any) -> int:
        """The highest id in the log (0 when empty)."""
        return int(conn.execute(self._head).fetchone()[0])

    def read(self, conn: Any, namespace: str, after: int) -> tuple[Sequence[Any], int]:
        """``(rows after id `after` of `namespace`, highest pruned id of `namespace`)``, read in
        this order (a row pruned after the first read was read, or is past the last row)."""
        rows = conn.execute(self._read, (namespace, after)).fetchall()
        pruned = conn.execute(self._pruned, (namespace,)).fetchone()
        return rows, int(pruned[0]) if pruned else 0

    def prune(self, conn: Any, upto: int) -> None:
        """Delete rows with ids up to ``upto``; record each namespace's highest deleted id."""
        t = self.table
        if self.dialect == "sqlite":
            try:
                with self.lock.writing(conn):
                    self._prune_sqlite(conn, upto)
            finally:  # the poll connection's reads wait as before
                conn.wait_for_lock(SQLITE_BUSY_TIMEOUT)
            return
        with conn.transaction():
            conn.execute(
                f"INSERT INTO {t}_meta (namespace, pruned) SELECT namespace, MAX(id) FROM {t}"
                " WHERE id <= %s GROUP BY namespace ON CONFLICT (namespace)"
                f" DO UPDATE SET pruned = GREATEST({t}_meta.pruned, excluded.pruned)",
                (upto,),
            )
            conn.execute(f"DELETE FROM {t} WHERE id <= %s", (upto,))

    def _prune_sqlite(self, conn: Any, upto: int) -> None:
        t = self.table
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                f"INSERT INTO {t}_meta (namespace, pruned) SELECT namespace, MAX(id) FROM {t}"
                " WHERE id <= ? GROUP BY namespace ON CONFLICT (namespace)"
                " DO UPDATE SET pruned = MAX(pruned, excluded.pruned)",
                (upto,),
            )
            conn.execute(f"DELETE FROM {t} WHERE id <= ?", (upto,))
            conn.execute("COMMIT")
        except BaseException:
            with suppress(sqlite3.Error):  # nothing to roll back if the failure ended it
                conn.execute("ROLLBACK")
            raise

    def listen(self, conn: Any) -> None:
        """Have ``conn`` receive this log's notifications (PostgreSQL; nothing on SQLite)."""
        if self.dialect != "sqlite":
            conn.execute(f'LISTEN "{self.channel}"')

    def wait(self, conn: Any, timeout: float, stop: threading.Event) -> None:
        """Wait up to ``timeout`` seconds, less if a notification (or ``stop``) comes first.

        On PostgreSQL a notification is never lost while the connection lives (one that
        came during a read is kept for the next wait), so the wait can be long: it
        checks ``stop`` every ``STOP_CHECK`` seconds only.
        """
        if self.dialect == "sqlite":
            stop.wait(timeout)
            return
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if any(True for _ in conn.notifies(timeout=min(left, STOP_CHECK), stop_after=1)):
                return


__all__ = ["BATCH", "PG_IDLE_READ", "BusLog"]
