"""The SQLite store: the stdlib ``sqlite3`` module, one connection per thread, WAL.

Statements are plain SQL with positional parameters, so ``sqlite3``'s statement cache
keeps them prepared. A read is one statement: the entry's tags are checked against
their own version rows by primary key (``json_each`` over the entry's tag list), so its
cost does not grow with the number of tags ever invalidated. Live entry count and bytes
are kept exact by triggers in a one-row ``<table>_size`` table, as diskcache does.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from itertools import islice
from typing import Any

from ...core.errors import ConfigError
from ._common import (
    COUNTER,
    LEASE_HORIZON,
    Row,
    over,
    prefix_upper,
    scan_query,
    sweep_statements,
    victims,
)
from ._filewatch import FileWatch
from ._lockwait import LockWait, WaitingConnection, busy

log = logging.getLogger("stratacache.tiers.sql")

#: how long creating the tables (at start, or on a replaced file) waits for another
#: process's write lock: not a cache call, and the tier is unusable without them
SETUP_TIMEOUT = 10.0
#: rows a sweep or an eviction deletes per transaction (about 10 ms of holding the lock)
BATCH_ROWS = 1000
#: WAL pages past which a checkpoint that could not copy everything blocks writers to finish
WAL_RESTART_FRAMES = 2048
#: a lease carries the number of the file it was taken on above these bits (see ``follow_file``)
_EPOCH_SHIFT = 40


class SQLiteStore:
    """The entries and versions tables in one SQLite file."""

    dialect = "sqlite"
    mark = "?"
    #: checking the size bound is one primary-key read here: do it often
    check_every = 8
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def __init__(self, path: str, table: str, lock: LockWait | None = None) -> None:
        if sqlite3.sqlite_version_info < (3, 35):
            raise ConfigError(
                f"SQLTier needs SQLite 3.35 or later (RETURNING, JSON); this Python has"
                f" {sqlite3.sqlite_version}"
            )
        self.path = path
        self.table = table
        #: how long a write waits for another connection's write lock (``_lockwait``)
        self.lock = lock if lock is not None else LockWait()
        self.ns = ""
        self._uri = False
        if path == ":memory:":  # every thread must see the same private database
            self.path, self._uri = f"file:stratacache-{id(self)}?mode=memory&cache=shared", True
        self._local = threading.local()
        self._gen = 0
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        #: the file the connections are on; ``epoch`` counts the times it was reopened
        self.watch = FileWatch(None if self._uri else self.path)
        self.epoch = 0
        self._reopen_lock = threading.RLock()
        t, v = table, table + "_versions"
        check = (
            f"(tags IS NULL OR NOT EXISTS (SELECT 1 FROM json_each({t}.tags) j CROSS JOIN {v}"
            f" WHERE {v}.namespace = ? AND {v}.name = j.value AND {v}.seq > {t}.seq))"
        )
        live = "value IS NOT NULL AND (expires_at IS NULL OR expires_at > ?)"
        self._get = f"SELECT value FROM {t} WHERE key = ? AND {live} AND {check}"
        self._get_many = (
            f"SELECT key, value FROM {t} WHERE key IN (SELECT value FROM json_each(?))"
            f" AND {live} AND {check}"
        )
        self._counter = f"SELECT seq FROM {v} WHERE namespace = ? AND name = '{COUNTER}'"
        #: a read and the namespace counter in one statement: a miss's lease comes with it
        self._get_leased = f"SELECT ({self._get}), ({self._counter})"
        # a plain write stores a freshly bumped sequence number (see ``put``)
        self._put = (
            f"INSERT INTO {t} (key, value, expires_at, tags, seq, size, atime) VALUES"
            " (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
            " expires_at = excluded.expires_at, tags = excluded.tags, seq = excluded.seq,"
            " size = excluded.size, atime = excluded.atime"
        )
        self._put_if = (
            f"INSERT INTO {t} (key, value, expires_at, tags, seq, size, atime) VALUES"
            " (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
            " expires_at = excluded.expires_at, tags = excluded.tags, seq = excluded.seq,"
            f" size = excluded.size, atime = excluded.atime WHERE {t}.value IS ? RETURNING key"
        )
        # a leased set in one statement: refused (no row returned) when a tag of the row
        # (?4 holds them as version-row names) or a prefix of its key moved past the lease
        # (?5), or when the row itself did (deleted or written since)
        self._put_checked = (
            f"INSERT INTO {t} (key, value, expires_at, tags, seq, size, atime)"
            " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE NOT EXISTS (SELECT 1 FROM"
            f" {v} WHERE {v}.namespace = ?8 AND {v}.seq > ?5 AND ({v}.name IN"
            f" (SELECT value FROM json_each(?4)) OR (substr({v}.name, 1, 1) = 'p' AND"
            f" substr(?1, 1, length({v}.name) - 1) = substr({v}.name, 2))))"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
            " expires_at = excluded.expires_at, tags = excluded.tags, seq = excluded.seq,"
            f" size = excluded.size, atime = excluded.atime WHERE {t}.seq <= excluded.seq"
            " RETURNING key"
        )
        self._bump = (
            f"INSERT INTO {v} VALUES (?, '{COUNTER}', 1, ?) ON CONFLICT (namespace, name)"
            " DO UPDATE SET seq = seq + 1, updated = excluded.updated RETURNING seq"
        )
        self._mark = (
            f"INSERT INTO {v} VALUES (?, ?, ?, ?) ON CONFLICT (namespace, name)"
            " DO UPDATE SET seq = excluded.seq, updated = excluded.updated"
        )
        self._usage = f"SELECT count, bytes FROM {t}_size WHERE id = 0"

    # -- connections -------------------------------------------------------------------------
    def conn(self, inline: bool = False) -> WaitingConnection:
        """This thread's connection; ``inline`` ones never wait for a lock (they raise instead)."""
        if self.watch.due():
            self.follow_file()
        local = self._local
        attr = "inline" if inline else "conn"
        held = getattr(local, attr, None)
        if held is not None and held[0] == self._gen:
            return held[1]  # type: ignore[no-any-return]
        wait = 0.0 if inline else self.lock.timeout
        conn = sqlite3.connect(
            self.path,
            timeout=wait,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=512,
            uri=self._uri,
            factory=WaitingConnection,
        )
        conn.busy_ms = int(wait * 1000)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA mmap_size=67108864")
        if inline:  # a commit on the event loop never runs a checkpoint (fsync): see checkpoint()
            conn.execute("PRAGMA wal_autocheckpoint=0")
        with self._lock:
            self._conns.append(conn)
        setattr(local, attr, (self._gen, conn))
        return conn

    def follow_file(self) -> bool:
        """Reopen on the path when it no longer names the file open (deleted or replaced):
        True when it did. Calls in flight finish on their old connections, which are
        dropped rather than closed under them; leases taken on the old file are refused."""
        with self._reopen_lock:
            opened = self.watch.opened
            if not self.watch.replaced():
                return False
            log.warning("stratacache: SQLite file %r was replaced; reopening it", self.path)
            with self._lock:
                self._gen += 1
                self._conns = []
            self.epoch += 1
            self.watch.opened = None  # no look while the new file is set up
            try:
                self.setup(self.ns)
            except BaseException:
                self.watch.opened = opened  # look again (and retry) next time
                raise
            return True

    @contextmanager
    def connection(self) -> Iterator[WaitingConnection]:
        """This thread's connection (the same interface as the PostgreSQL store's pool)."""
        yield self.conn()

    def close(self) -> None:
        """Close every connection (threads reopen on next use)."""
        with self._lock:
            self._gen += 1
            conns, self._conns = self._conns, []
        for conn in conns:
            with suppress(sqlite3.Error):  # closing is best effort
                conn.close()

    def abandon(self) -> list[Any]:
        """After fork: forget the parent's connections without closing them."""
        self._gen += 1
        self._lock = threading.Lock()
        self._reopen_lock = threading.RLock()
        conns, self._conns = self._conns, []
        return list(conns)

    @contextmanager
    def _writing(self, inline: bool = False) -> Iterator[WaitingConnection]:
        """This thread's connection for one write statement, waiting for the write lock as
        long as ``lock`` says now (``inline``: not at all)."""
        conn = self.conn(inline)
        with self.lock.writing(conn, inline):
            yield conn

    @contextmanager
    def _write(self, inline: bool = False) -> Iterator[WaitingConnection]:
        """A write transaction (``BEGIN IMMEDIATE``: the lock is taken, or waited for, first)."""
        with self._writing(inline) as conn, _transaction(conn):
            yield conn

    #: whether an error only says another connection holds a lock (worth a retry elsewhere)
    busy = staticmethod(busy)

    # -- schema ------------------------------------------------------------------------------
    def setup(self, namespace: str) -> None:
        """Create the tables (dropping a layout written by an older version of the tier)."""
        self.ns = namespace
        conn = self.conn()
        conn.wait_for_lock(SETUP_TIMEOUT)
        try:
            self._create(conn)
        finally:  # the cache's own writes wait as ``lock`` says
            conn.wait_for_lock(self.lock.timeout)

    def _create(self, conn: WaitingConnection) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        if self.watch.opened is None:
            self.watch.record()
        t, v = self.table, self.table + "_versions"
        with _transaction(conn) as c:
            cols = {r[1] for r in c.execute(f"PRAGMA table_info({t})")}
            if cols and "atime" not in cols:
                log.warning("stratacache: dropping SQL cache table %r of an older layout", t)
                c.execute(f"DROP TABLE {t}")
                c.execute(f"DROP TABLE IF EXISTS {v}")
            for ddl in (
                f"CREATE TABLE IF NOT EXISTS {t} (key TEXT PRIMARY KEY, value BLOB, expires_at REAL,"
                " tags TEXT, seq INTEGER NOT NULL DEFAULT 0, size INTEGER NOT NULL DEFAULT 0,"
                " atime REAL NOT NULL DEFAULT 0)",
                f"CREATE INDEX IF NOT EXISTS {t}_expires ON {t} (expires_at)",
                f"CREATE INDEX IF NOT EXISTS {t}_atime ON {t} (atime)",
                f"CREATE TABLE IF NOT EXISTS {v} (namespace TEXT, name TEXT, seq INTEGER NOT NULL,"
                " updated REAL NOT NULL, PRIMARY KEY (namespace, name)) WITHOUT ROWID",
                f"CREATE INDEX IF NOT EXISTS {v}_seq ON {v} (namespace, seq)",
                f"CREATE TABLE IF NOT EXISTS {t}_size (id INTEGER PRIMARY KEY CHECK (id = 0),"
                " count INTEGER NOT NULL, bytes INTEGER NOT NULL)",
                f"INSERT OR IGNORE INTO {t}_size VALUES (0, (SELECT count(value) FROM {t}),"
                f" (SELECT total(size) FROM {t}))",
                f"CREATE TRIGGER IF NOT EXISTS {t}_ins AFTER INSERT ON {t} BEGIN UPDATE {t}_size"
                " SET count = count + (new.value IS NOT NULL), bytes = bytes + new.size"
                " WHERE id = 0; END",
                f"CREATE TRIGGER IF NOT EXISTS {t}_upd AFTER UPDATE OF value, size ON {t} BEGIN"
                f" UPDATE {t}_size SET count = count + (new.value IS NOT NULL)"
                " - (old.value IS NOT NULL), bytes = bytes + new.size - old.size WHERE id = 0; END",
                f"CREATE TRIGGER IF NOT EXISTS {t}_del AFTER DELETE ON {t} BEGIN UPDATE {t}_size"
                " SET count = count - (old.value IS NOT NULL), bytes = bytes - old.size"
                " WHERE id = 0; END",
            ):
                c.execute(ddl)

    # -- reads -------------------------------------------------------------------------------
    def read_one(self, key: str, now: float, inline: bool = False) -> bytes | None:
        row = self.conn(inline).execute(self._get, (key, now, self.ns)).fetchone()
        return None if row is None else row[0]

    def read_one_leased(
        self, key: str, now: float, inline: bool = False
    ) -> tuple[bytes | None, int]:
        """``read_one`` and the namespace counter (what ``counter`` returns), one statement."""
        row = self.conn(inline).execute(self._get_leased, (key, now, self.ns, self.ns)).fetchone()
        return row[0], (0 if row[1] is None else int(row[1])) | self.epoch << _EPOCH_SHIFT

    def read(self, keys: Sequence[str], now: float, inline: bool = False) -> list[Any]:
        params = (json.dumps(list(keys)), now, self.ns)
        return self.conn(inline).execute(self._get_many, params).fetchall()

    def scan(self, prefix: str, cursor: str, limit: int, now: float) -> list[str]:
        sql, args = scan_query(self.table, prefix, cursor, limit, now, "?")
        return [str(r[0]) for r in self.conn().execute(sql, args).fetchall()]

    def counter(self, inline: bool = False) -> int:
        row = self.conn(inline).execute(self._counter, (self.ns,)).fetchone()
        return (0 if row is None else int(row[0])) | self.epoch << _EPOCH_SHIFT

    def usage(self, inline: bool = False) -> tuple[int, int]:
        """Live entries and their bytes."""
        row = self.conn(inline).execute(self._usage).fetchone()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    known_usage = usage

    # -- writes ------------------------------------------------------------------------------
    def put(
        self, rows: Sequence[Row], now: float, lease: int | None = None, inline: bool = False
    ) -> bool:
        """Store ``rows``; with ``lease``, refuse (False) if anything moved past it.

        A plain write bumps the namespace counter and stores the new number, so a lease
        taken before it (a load that began earlier) is refused, as a delete refuses it.
        """
        if lease is None:
            with self._write(inline) as conn:
                seq = conn.execute(self._bump, (self.ns, now)).fetchone()[0]
                conn.executemany(self._put, [_params(r, seq, now) for r in rows])
            return True
        (row,) = rows
        if lease >> _EPOCH_SHIFT != self.epoch:
            return False  # taken on a file since replaced: its number means nothing here
        lease &= (1 << _EPOCH_SHIFT) - 1
        checked = (*_params(row, lease, now), self.ns)
        with self._writing(inline) as conn:
            return conn.execute(self._put_checked, checked).fetchone() is not None

    def raw_value(self, key: str) -> bytes | None:
        """The stored bytes of ``key`` whatever their freshness (None: no row or a tombstone)."""
        row = self.conn().execute(f"SELECT value FROM {self.table} WHERE key = ?", (key,))
        found = row.fetchone()
        return None if found is None or found[0] is None else bytes(found[0])

    def compare_and_set(self, key: str, token: bytes | None, row: Row | None, now: float) -> bool:
        """Store ``row`` (None: a tombstone) iff ``key`` still holds ``token``; one statement."""
        with self._write() as conn:
            seq = conn.execute(self._bump, (self.ns, now)).fetchone()[0]
            params = (
                _params(row, seq, now) if row is not None else (key, None, now, None, seq, 0, now)
            )
            done = conn.execute(self._put_if, (*params, token)).fetchone()
        return done is not None

    def checkpoint(self) -> None:
        """Copy the WAL back into the database; once all of it is copied, the next writer
        starts it over.

        PASSIVE first: it never blocks writers (RESTART holds them off for the whole copy
        and its fsync, and an inline write that finds the file locked waits on the worker
        thread, behind the checkpoint). A PASSIVE copy does not make writers start the WAL
        over, though: once it is longer than ``WAL_RESTART_FRAMES``, a RESTART follows, which
        blocks writers only briefly, as the PASSIVE one has copied nearly everything.
        """
        conn = self.conn()
        _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames > WAL_RESTART_FRAMES:
            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()

    def delete_keys(self, keys: Sequence[str], now: float) -> int:
        """Replace ``keys`` by tombstones (voiding their leases); returns how many were live."""
        t = self.table
        keys = list(dict.fromkeys(keys))
        with self._write() as conn:
            seq = conn.execute(self._bump, (self.ns, now)).fetchone()[0]
            live = conn.execute(
                f"SELECT count(*) FROM {t} WHERE key IN (SELECT value FROM json_each(?))"
                " AND value IS NOT NULL",
                (json.dumps(keys),),
            ).fetchone()[0]
            tomb = (now + LEASE_HORIZON, seq, now)
            conn.executemany(
                f"INSERT INTO {t} (key, value, expires_at, tags, seq, size, atime)"
                " VALUES (?, NULL, ?, NULL, ?, 0, ?) ON CONFLICT (key) DO UPDATE SET value = NULL,"
                " expires_at = excluded.expires_at, tags = NULL, seq = excluded.seq, size = 0",
                [(k, *tomb) for k in keys],
            )
        return int(live)

    def delete_prefix(self, prefix: str, now: float) -> int:
        """Delete the live rows under ``prefix`` and void leases on it; returns how many."""
        upper = prefix_upper(prefix)
        where = "key >= ?" + ("" if upper is None else " AND key < ?")
        args = (prefix,) if upper is None else (prefix, upper)
        with self._write() as conn:
            seq = conn.execute(self._bump, (self.ns, now)).fetchone()[0]
            conn.execute(self._mark, (self.ns, "p" + prefix, seq, now))
            cur = conn.execute(
                f"DELETE FROM {self.table} WHERE {where} AND value IS NOT NULL", args
            )
            return int(cur.rowcount)

    def invalidate(self, tags: Sequence[str], now: float) -> None:
        with self._write() as conn:
            seq = conn.execute(self._bump, (self.ns, now)).fetchone()[0]
            conn.executemany(self._mark, [(self.ns, "t" + t, seq, now) for t in tags])

    def touch(self, keys: Sequence[str], now: float) -> None:
        """Record reads for eviction order (only the access time changes)."""
        with self._writing() as conn:
            conn.execute(
                f"UPDATE {self.table} SET atime = ? WHERE key IN (SELECT value FROM json_each(?))",
                (now, json.dumps(list(keys))),
            )

    def sweep(self, now: float) -> int:
        """Delete rows past their end and prefix rows past the lease horizon; returns live rows.

        ``BATCH_ROWS`` rows per transaction: however many rows expired, the sweep never
        holds the write lock for longer than a few milliseconds at a time, well within what
        the cache's own writes wait for it (``lock_timeout``).
        """
        _, marks = sweep_statements(self.table, "?")
        t = self.table
        expired = (
            f"DELETE FROM {t} WHERE rowid IN (SELECT rowid FROM {t} WHERE expires_at <= ?"
            " LIMIT ?) RETURNING value IS NOT NULL"
        )
        live, first = 0, True
        while True:
            with self._write() as conn:
                if first:
                    conn.execute(marks, (now - LEASE_HORIZON,))
                    first = False
                gone = conn.execute(expired, (now, BATCH_ROWS)).fetchall()
            live += sum(1 for (alive,) in gone if alive)
            if len(gone) < BATCH_ROWS:
                return live

    def evict(self, max_entries: int | None, max_bytes: int | None, now: float) -> int:
        """Bring live entries within the bounds: expired rows first, then least recently used."""
        count, size = self.usage()
        if not over(count, size, max_entries, max_bytes):
            return 0
        self.sweep(now)
        deleted = 0
        while True:  # ``BATCH_ROWS`` rows per transaction, as ``sweep``
            with self._write() as conn:
                count, size = (int(x) for x in conn.execute(self._usage).fetchone())
                cur = conn.execute(
                    f"SELECT key, size FROM {self.table} WHERE value IS NOT NULL ORDER BY atime"
                )
                doomed = victims(islice(cur, BATCH_ROWS), count, size, max_entries, max_bytes)
                cur.close()
                if doomed:
                    deleted += conn.execute(
                        f"DELETE FROM {self.table} WHERE key IN (SELECT value FROM json_each(?))",
                        (json.dumps(doomed),),
                    ).rowcount
            if len(doomed) < BATCH_ROWS:
                return deleted  # rows this call removed (another process may have raced it)


@contextmanager
def _transaction(conn: WaitingConnection) -> Iterator[WaitingConnection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back if anything (the commit too) fails."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.Error):  # nothing to roll back if the failure ended it
            conn.execute("ROLLBACK")
        raise


def _params(row: Row, seq: Any, now: float) -> tuple[Any, ...]:
    names = json.dumps(["t" + t for t in row.tags]) if row.tags else None
    return (row.key, row.value, row.expires_at, names, seq, len(row.value), now)
