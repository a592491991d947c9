"""The PostgreSQL store: psycopg 3 directly, autocommit connections, prepared statements.

Sync callers (and the tier's worker thread) share a small pool of ``psycopg.Connection``;
async reads use ``psycopg.AsyncConnection`` from a pool private to the running event
loop (both in ``_pg_pool``). A read
is one round trip: the tag check looks up the entry's own tag rows by primary key
(``name = ANY(tags)``). Keys are ``COLLATE "C"`` so a prefix is a primary-key range.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
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
    voided,
)

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ConfigError(
        "SQLTier on PostgreSQL needs psycopg: pip install 'stratacache[sql]'"
    ) from exc

from ._pg_pool import PostgresPool


class PostgresStore:
    """The entries and versions tables in a PostgreSQL database."""

    dialect = "postgresql"
    mark = "%s"
    #: checking the size bound counts rows here: do it seldom
    check_every = 256
    errors: tuple[type[BaseException], ...] = (psycopg.Error,)

    def __init__(self, conninfo: str, table: str, pool_size: int) -> None:
        self.conninfo = conninfo
        self.table = table
        self.ns = ""
        #: the connections: sync ones shared, async ones per event loop
        self.pool = PostgresPool(conninfo, pool_size)
        self.last_usage: tuple[int, int] | None = None
        t, v = table, table + "_versions"
        check = (
            f"(tags IS NULL OR NOT EXISTS (SELECT 1 FROM {v} WHERE {v}.namespace = %s"
            f" AND {v}.name = ANY({t}.tags) AND {v}.seq > {t}.seq))"
        )
        live = "value IS NOT NULL AND (expires_at IS NULL OR expires_at > %s)"
        self._get = f"SELECT value FROM {t} WHERE key = %s AND {live} AND {check}"
        self._get_many = f"SELECT key, value FROM {t} WHERE key = ANY(%s) AND {live} AND {check}"
        self._counter = f"SELECT seq FROM {v} WHERE namespace = %s AND name = '{COUNTER}'"
        self._put = (
            f"INSERT INTO {t} AS e (key, value, expires_at, tags, seq, size, atime)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET"
            " value = excluded.value, expires_at = excluded.expires_at, tags = excluded.tags,"
            " seq = excluded.seq, size = excluded.size, atime = excluded.atime"
        )
        self._put_if = self._put + " WHERE e.value IS NOT DISTINCT FROM %s::bytea RETURNING e.key"
        self._bump = (
            f"INSERT INTO {v} AS v VALUES (%s, '{COUNTER}', 1, %s) ON CONFLICT (namespace, name)"
            " DO UPDATE SET seq = v.seq + 1, updated = excluded.updated RETURNING seq"
        )
        self._mark = (
            f"INSERT INTO {v} VALUES (%s, %s, %s, %s) ON CONFLICT (namespace, name)"
            " DO UPDATE SET seq = excluded.seq, updated = excluded.updated"
        )

    def connection(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """A pooled connection for the length of the block (see ``PostgresPool``)."""
        return self.pool.connection()

    def close(self) -> None:
        self.pool.close()

    async def aclose(self) -> None:
        """Close the running loop's async connections; end those of other loops."""
        await self.pool.aclose()

    def abandon(self) -> list[Any]:
        """After fork: forget the parent's connections without closing them."""
        return self.pool.abandon()

    @staticmethod
    def busy(exc: BaseException) -> bool:
        return False

    # -- schema ------------------------------------------------------------------------------
    def setup(self, namespace: str) -> None:
        """Create the tables (dropping a layout written by an older version of the tier)."""
        self.ns = namespace
        t, v = self.table, self.table + "_versions"
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (t,))
            cols = {
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_schema = current_schema() AND table_name = %s",
                    (t,),
                )
            }
            if cols and "atime" not in cols:
                conn.execute(f"DROP TABLE {t}")
                conn.execute(f"DROP TABLE IF EXISTS {v}")
                cols = set()
            found = conn.execute("SELECT to_regclass(%s)", (v,)).fetchone()
            # DDL locks the tables even when they exist: a process starting beside others
            # that are writing would deadlock with them, so create only what is missing
            ready = bool(cols) and found is not None and found[0] is not None
            for ddl in (
                ()
                if ready
                else (
                    f'CREATE TABLE IF NOT EXISTS {t} (key text COLLATE "C" PRIMARY KEY, value bytea,'
                    " expires_at double precision, tags text[], seq bigint NOT NULL DEFAULT 0,"
                    " size bigint NOT NULL DEFAULT 0, atime double precision NOT NULL DEFAULT 0)",
                    f"CREATE INDEX IF NOT EXISTS {t}_expires ON {t} (expires_at)",
                    f"CREATE INDEX IF NOT EXISTS {t}_atime ON {t} (atime)",
                    f"CREATE TABLE IF NOT EXISTS {v} (namespace text, name text, seq bigint NOT NULL,"
                    " updated double precision NOT NULL, PRIMARY KEY (namespace, name))",
                    f"CREATE INDEX IF NOT EXISTS {v}_seq ON {v} (namespace, seq)",
                )
            ):
                conn.execute(ddl)
            conn.execute(
                f"INSERT INTO {v} VALUES (%s, '{COUNTER}', 0, 0) ON CONFLICT DO NOTHING",
                (namespace,),
            )

    # -- reads -------------------------------------------------------------------------------
    def read_one(self, key: str, now: float, inline: bool = False) -> bytes | None:
        row = self.pool.query(self._get, (key, now, self.ns), False)
        return None if row is None else row[0]

    def read(self, keys: Sequence[str], now: float, inline: bool = False) -> list[Any]:
        return self.pool.query(self._get_many, (list(keys), now, self.ns), True)  # type: ignore[no-any-return]

    def scan(self, prefix: str, cursor: str, limit: int, now: float) -> list[str]:
        sql, args = scan_query(self.table, prefix, cursor, limit, now, "%s")
        return [str(r[0]) for r in self.pool.query(sql, args, True)]

    def counter(self, inline: bool = False) -> int:
        row = self.pool.query(self._counter, (self.ns,), False)
        return 0 if row is None else int(row[0])

    async def aread_one(self, key: str, now: float) -> bytes | None:
        row = await self.pool.aquery(self._get, (key, now, self.ns), False)
        return None if row is None else row[0]

    async def aread(self, keys: Sequence[str], now: float) -> list[Any]:
        return await self.pool.aquery(self._get_many, (list(keys), now, self.ns), True)  # type: ignore[no-any-return]

    async def acounter(self) -> int:
        row = await self.pool.aquery(self._counter, (self.ns,), False)
        return 0 if row is None else int(row[0])

    def usage(self) -> tuple[int, int]:
        """Live entries and their bytes (a count over the table)."""
        with self.pool.connection() as conn:
            row = conn.execute(
                f"SELECT count(*), coalesce(sum(size), 0) FROM {self.table} WHERE value IS NOT NULL"
            ).fetchone()
        self.last_usage = (0, 0) if row is None else (int(row[0]), int(row[1]))
        return self.last_usage

    def known_usage(self) -> tuple[int, int]:
        """``usage()`` as of the last bound check or sweep (a count is too slow for stats)."""
        return self.last_usage if self.last_usage is not None else self.usage()

    # -- writes ------------------------------------------------------------------------------
    def put(self, rows: Sequence[Row], now: float, lease: int | None = None) -> bool:
        """Store ``rows``; with ``lease``, refuse (False) if anything moved past it."""
        v = self.table + "_versions"
        with self.pool.connection() as conn, conn.transaction():
            if lease is None:
                # a plain write bumps the counter and stores the new number: a lease taken
                # before it (a load that began earlier) is refused, as a delete refuses it
                seq = self._bumped(conn, now)
                conn.cursor().executemany(self._put, [_params(r, seq, now) for r in rows])
                return True
            # a shared lock on the counter row orders this write with every bump
            conn.execute(self._counter + " FOR SHARE", (self.ns,)).fetchone()
            (row,) = rows
            names = [
                n
                for (n,) in conn.execute(
                    f"SELECT name FROM {v} WHERE namespace = %s AND seq > %s", (self.ns, lease)
                )
            ]
            if names and voided(row.key, row.tags, names):
                return False
            found = conn.execute(
                f"SELECT seq FROM {self.table} WHERE key = %s", (row.key,)
            ).fetchone()
            if found is not None and found[0] > lease:
                return False
            conn.execute(self._put, _params(row, lease, now))
        return True

    def raw_value(self, key: str) -> bytes | None:
        """The stored bytes of ``key`` whatever their freshness (None: no row or a tombstone)."""
        found = self.pool.query(f"SELECT value FROM {self.table} WHERE key = %s", (key,), False)
        return None if found is None or found[0] is None else bytes(found[0])

    def compare_and_set(self, key: str, token: bytes | None, row: Row | None, now: float) -> bool:
        """Store ``row`` (None: a tombstone) iff ``key`` still holds ``token``; PostgreSQL
        re-checks the condition on the newest row version, so this is atomic."""
        with self.pool.connection() as conn, conn.transaction():
            seq = self._bumped(conn, now)
            params = (
                _params(row, seq, now) if row is not None else (key, None, now, None, seq, 0, now)
            )
            done = conn.execute(self._put_if, (*params, token)).fetchone()
        return done is not None

    def _bumped(self, conn: psycopg.Connection[Any], now: float) -> int:
        row = conn.execute(self._bump, (self.ns, now)).fetchone()
        assert row is not None
        return int(row[0])

    def delete_keys(self, keys: Sequence[str], now: float) -> int:
        """Replace ``keys`` by tombstones (voiding their leases); returns how many were live."""
        t = self.table
        keys = sorted(set(keys))  # a fixed lock order between concurrent deletes
        with self.pool.connection() as conn, conn.transaction():
            seq = self._bumped(conn, now)
            row = conn.execute(
                f"SELECT count(*) FROM {t} WHERE key = ANY(%s) AND value IS NOT NULL", (keys,)
            ).fetchone()
            conn.execute(
                f"INSERT INTO {t} (key, value, expires_at, tags, seq, size, atime)"
                " SELECT k, NULL, %s, NULL, %s, 0, %s FROM unnest(%s::text[]) AS k"
                " ON CONFLICT (key) DO UPDATE SET value = NULL, expires_at = excluded.expires_at,"
                " tags = NULL, seq = excluded.seq, size = 0",
                (now + LEASE_HORIZON, seq, now, keys),
            )
        return 0 if row is None else int(row[0])

    def delete_prefix(self, prefix: str, now: float) -> int:
        """Delete the live rows under ``prefix`` and void leases on it; returns how many."""
        upper = prefix_upper(prefix)
        where = "key >= %s" + ("" if upper is None else " AND key < %s")
        args = (prefix,) if upper is None else (prefix, upper)
        with self.pool.connection() as conn, conn.transaction():
            seq = self._bumped(conn, now)
            conn.execute(self._mark, (self.ns, "p" + prefix, seq, now))
            cur = conn.execute(
                f"DELETE FROM {self.table} WHERE {where} AND value IS NOT NULL", args
            )
            return int(cur.rowcount)

    def invalidate(self, tags: Sequence[str], now: float) -> None:
        with self.pool.connection() as conn, conn.transaction():
            seq = self._bumped(conn, now)
            conn.cursor().executemany(self._mark, [(self.ns, "t" + t, seq, now) for t in tags])

    def touch(self, keys: Sequence[str], now: float) -> None:
        """Record reads for eviction order (only the access time changes)."""
        with self.pool.connection() as conn:
            conn.execute(
                f"UPDATE {self.table} SET atime = %s WHERE key = ANY(%s)", (now, list(keys))
            )

    def sweep(self, now: float) -> int:
        """Delete rows past their end and prefix rows past the lease horizon; returns live rows."""
        expired, marks = sweep_statements(self.table, "%s")
        with self.pool.connection() as conn, conn.transaction():
            gone = conn.execute(expired, (now,)).fetchall()
            conn.execute(marks, (now - LEASE_HORIZON,))
        return sum(1 for (live,) in gone if live)

    def evict(self, max_entries: int | None, max_bytes: int | None, now: float) -> int:
        """Bring live entries within the bounds: expired rows first, then least recently used."""
        count, size = self.usage()
        if not over(count, size, max_entries, max_bytes):
            return 0
        self.sweep(now)
        count, size = self.usage()
        with self.pool.connection() as conn, conn.transaction():
            with conn.cursor(name="stratacache_evict") as cur:  # server side: fetched as needed
                cur.execute(
                    f"SELECT key, size FROM {self.table} WHERE value IS NOT NULL ORDER BY atime"
                )
                doomed = victims(cur, count, size, max_entries, max_bytes)
            deleted = 0
            if doomed:
                done = conn.execute(f"DELETE FROM {self.table} WHERE key = ANY(%s)", (doomed,))
                deleted = done.rowcount
        self.last_usage = None
        return int(deleted)  # rows this call removed (a concurrent eviction may have raced it)


def _params(row: Row, seq: int, now: float) -> tuple[Any, ...]:
    names = ["t" + t for t in row.tags] if row.tags else None
    return (row.key, row.value, row.expires_at, names, seq, len(row.value), now)
