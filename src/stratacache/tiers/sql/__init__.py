"""``SQLTier``: a shared, bounded tier in a SQL table (SQLite or PostgreSQL).

SQLite goes through the stdlib ``sqlite3`` module (one connection per thread, WAL,
``synchronous=NORMAL``, statements kept prepared); PostgreSQL through psycopg 3
directly (autocommit connections, server-side prepared statements). No ORM sits
in the data path.

Where the calls run (the caller's thread, inline on the loop, the worker) is ``_runner``'s job.

Freshness: a plain write bumps the namespace sequence number and records the new
one in its rows; a leased write records its lease's. A tag invalidation bumps the
counter and stamps the tag's version row. A read checks only the entry's own tags, by primary key, so its cost does
not depend on how many tags were ever invalidated. A leased set is refused when
the key (written, deleted), one of its tags or a prefix covering it moved past the
lease.

Bounds: ``max_entries`` and ``max_bytes`` (codec bytes; default 1 GiB) are
checked every few writes; when exceeded, expired rows go first, then the least
recently used ones (reads are recorded in batches, and a process records at most one
read of a key every ten seconds, so the order is approximate to that). While the
table is less than half full (as last seen by an event-loop write), reads are not
recorded at all: nothing will be evicted soon, and the order that matters is made by the
reads recorded from then on.
Expired rows are also swept every ``sweep_interval`` seconds. Tombstones of
deleted keys and prefix rows are kept for a day (``LEASE_HORIZON``) to void
leases, and count in neither bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ...core.codec import MAX_POSTGRES_VALUE, MAX_SQLITE_VALUE, check_value_size
from ...core.entry import Entry
from ...core.errors import DeserializationError, TierError
from ...core.tier import TierContext
from . import _atomic
from ._bounds import Bounds
from ._bus import SQLBus, tier_bus
from ._common import (
    LEASE_HORIZON,
    MissLeases,
    Row,
    SQLLease,
    check_config,
    engine_url,
    make_row,
    on_fork,
    parse_url,
    tag_tokens,
)
from ._lockwait import LOCK_TIMEOUT, LockWait
from ._runner import Runner
from ._sqlite import SQLiteStore

__all__ = ["LEASE_HORIZON", "SQLBus", "SQLLease", "SQLTier"]

log = logging.getLogger("stratacache.tiers.sql")

#: SQLite writes made on the event loop between two checkpoints on the worker thread
_CHECKPOINT_EVERY = 250


class SQLTier:
    """A tier in a SQL table; rows expire at their entry's end, capped by ``ttl``.

    Args:
        url: ``sqlite:///path.db`` or ``postgresql+psycopg://user@host/db`` (any
            ``postgresql[+driver]://`` URL; the driver part is ignored).
        engine: a SQLAlchemy ``Engine`` whose URL to use instead of ``url``.
        table: name of the entries table; ``<table>_versions`` (and on SQLite
            ``<table>_size``) beside it.
        ttl: upper bound in seconds on how long an entry is kept.
        max_entries: most live entries kept (None: no bound on the count).
        max_bytes: most bytes of stored values kept (None: no bound on bytes).
        sweep_interval: seconds between background deletions of expired rows (0: none).
        name: name in stats and logs.
        pool_size: PostgreSQL connections kept per event loop and for sync callers.
        max_value_size: bytes one stored entry may take (default: what the database keeps in
            one value, 1e9 bytes on SQLite, 1 GiB on PostgreSQL); a larger value is refused
            at ``set`` with ``SerializationError``.
        lock_timeout: seconds a write (``set``, ``delete``, ``invalidate``, a load's store)
            waits for another connection's write lock on a SQLite file (default 0.25: many
            times the tier's own longest routine write, and no more than a Redis command may
            take). Then the operation fails as a tier failure: the caller still gets its
            value, and an overwrite or invalidation is kept and replayed. After a wait ran
            out, writes (and the tier's bus appends) do not wait at all until one gets the
            lock, except one per second. 0: never wait. Ignored on PostgreSQL.

    Raises:
        ConfigError: a bad URL, table name or bound, or psycopg missing for PostgreSQL.
    """

    shared = True
    #: builds a bus (``SQLBus``) but no fleet lock: a Redis tier of the same cache goes first
    offers_lock = False

    def __init__(
        self,
        url: str = "sqlite:///stratacache.db",
        *,
        engine: Any = None,
        table: str = "stratacache_entries",
        ttl: float | None = None,
        max_entries: int | None = None,
        max_bytes: int | None = 2**30,
        sweep_interval: float = 60.0,
        name: str = "sql",
        pool_size: int = 8,
        max_value_size: int | None = None,
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        check_config(ttl, sweep_interval, max_entries, max_bytes, table, pool_size)
        target = parse_url(engine_url(engine) if engine is not None else url)
        if max_value_size is None:
            sqlite = target.dialect == "sqlite"
            max_value_size = MAX_SQLITE_VALUE if sqlite else MAX_POSTGRES_VALUE
        self.max_value_size = check_value_size("SQLTier max_value_size", max_value_size)
        self.name = name
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.sweep_interval = sweep_interval
        self.decode_errors = 0
        self.dialect = target.dialect
        self._target = target
        self._table = table
        #: the wait for a SQLite file's write lock (``_lockwait``), shared with the tier's bus
        self.lock = LockWait(lock_timeout)
        self.store: Any
        if target.dialect == "sqlite":
            self.store = SQLiteStore(target.where, table, self.lock)
        else:
            from ._postgres import PostgresStore

            self.store = PostgresStore(target.where, table, pool_size)
        self._inline = target.dialect == "sqlite"
        self._errors: tuple[type[BaseException], ...] = (*self.store.errors, OSError)
        self._runner = Runner(name, self._errors, self.store.busy)
        #: bound keeping: write counts, evictions, reads recorded for the eviction order
        self.bounds = Bounds(self.store, max_entries, max_bytes, self._now)
        self._misses = MissLeases()
        self._inline_writes = 0
        self._last_len = 0
        self.context = TierContext(namespace="")
        on_fork(self, self._after_fork)

    @property
    def evictions(self) -> int:
        """Entries evicted so far to stay within the bounds."""
        return self.bounds.evictions

    @property
    def lock_timeouts(self) -> int:
        """Waits for another connection's write lock on the SQLite file that ran out."""
        return self.lock.timeouts

    # -- fleet services (``core.fleet.FleetSource``) ----------------------------------------
    def fleet_bus(self) -> SQLBus | None:
        """A new invalidation bus on this tier's database (``<table>_bus``; ``_bus.tier_bus``)."""
        follow = getattr(self.store, "follow_file", None)  # SQLite: reopen a replaced file
        return tier_bus(self._target, self._table, follow, self.lock)

    def fleet_lock(self) -> None:
        """No fleet lock over SQL (``lock=True`` needs a Redis tier)."""
        return None

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, context: TierContext) -> None:
        """Create the tables if needed and start the expiry sweeper (idempotent)."""
        self.context = context
        await self._runner.offload("start", self.store.setup, context.namespace)
        self._runner.keep_sweeping(self.sweep_interval, self.sweep)

    async def close(self) -> None:
        """Stop the sweeper, the worker thread and every connection (idempotent)."""
        await self._runner.close()
        await asyncio.to_thread(self.store.close)
        if hasattr(self.store, "aclose"):
            await self.store.aclose()

    def _after_fork(self) -> list[Any]:
        """In a forked child: new connections, a new worker thread, no inherited sweeper."""
        self._runner.after_fork()
        self.bounds.after_fork()
        self._misses = MissLeases()
        return list(self.store.abandon())

    async def sweep(self) -> int:
        """Delete expired rows (and old tombstones/prefix rows); returns how many entries."""
        return await self._runner.offload("sweep", self.sweep_sync)

    def sweep_sync(self) -> int:
        """``sweep`` in the caller's thread; also brings the table within its bounds."""
        now = self._now()
        done = int(self._runner.guard("sweep", self.store.sweep, now))
        self._runner.guard("evict", self.bounds.enforce)
        return done

    def __len__(self) -> int:
        """Live entries in the table (all namespaces); on PostgreSQL as of the last bound check
        or sweep, so that ``stats()`` never counts a large table on the event loop."""
        try:
            self._last_len = int(self._runner.guard("stats", self.store.known_usage)[0])
        except TierError as exc:  # stats() must not fail with the database
            log.warning("stratacache: tier %r could not count its entries: %s", self.name, exc)
        return self._last_len

    def usage(self) -> tuple[int, int]:
        """``(live entries, bytes of their values)`` in the table."""
        count, size = self._runner.guard("stats", self.store.usage)
        return int(count), int(size)

    # -- sync API ----------------------------------------------------------------------------
    def get_sync(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
        now = self._now()
        if not self._inline:
            return self._entry(key, self._runner.guard("get", self.store.read_one, key, now), now)
        data, seq = self._runner.guard("get", self.store.read_one_leased, key, now)
        entry = self._entry(key, data, now)
        if entry is None:
            self._misses.remember(key, seq)
        return entry

    def get_many_sync(self, keys: Sequence[str]) -> dict[str, Entry]:
        if not keys:
            return {}
        now = self._now()
        return self._entries(self._runner.guard("get_many", self.store.read, keys, now), now)

    def lease_sync(self, key: str, tags: Sequence[str]) -> object | None:
        known = self._misses.take(key)
        return (
            known
            if known is not None
            else SQLLease(self._runner.guard("lease", self.store.counter))
        )

    def set_sync(self, key: str, entry: Entry, lease: object | None = None) -> bool:
        row = make_row(self.context.codec, key, entry, self._now(), self.ttl)
        if row is None:
            return True  # already past its end: nothing worth storing
        seq = lease.seq if isinstance(lease, SQLLease) else None
        if seq is None:
            self._misses.forget(key)  # a lease from before this write would be refused
        return bool(self._runner.guard("set", self._put, [row], seq))

    def set_many_sync(self, entries: Mapping[str, Entry]) -> None:
        codec, now = self.context.codec, self._now()
        made = (make_row(codec, k, e, now, self.ttl) for k, e in entries.items())
        rows = [r for r in made if r is not None]
        if rows:
            self._misses.forget()
            self._runner.guard("set_many", self._put, rows, None)

    def delete_many_sync(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        self._misses.forget()
        return int(self._runner.guard("delete_many", self.store.delete_keys, keys, self._now()))

    def delete_prefix_sync(self, prefix: str) -> int:
        self._misses.forget()
        return int(
            self._runner.guard("delete_prefix", self.store.delete_prefix, prefix, self._now())
        )

    def invalidate_tags_sync(self, tags: Sequence[str]) -> None:
        if tags:
            self._misses.forget()
            self._runner.guard(
                "invalidate_tags",
                self.store.invalidate,
                tag_tokens(self.context.codec, tags),
                self._now(),
            )

    def clear_sync(self) -> None:
        self.delete_prefix_sync(self.context.namespace + ":")

    # -- async API ---------------------------------------------------------------------------
    async def get(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
        now = self._now()
        if not self._inline:
            return self._entry(
                key, await self._runner.aguard("get", self.store.aread_one(key, now)), now
            )
        try:  # ``Runner.here`` inlined: one coroutine less on every L1 miss
            data, seq = self.store.read_one_leased(key, now, True)
        except self._errors as exc:
            if not self.store.busy(exc):
                raise TierError(self.name, "get", exc) from exc
            data, seq = await self._runner.offload("get", self.store.read_one_leased, key, now)
        entry = self._entry(key, data, now)
        if entry is None:
            self._misses.remember(key, seq)  # the load that follows leases with it
        return entry

    async def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        if not keys:
            return {}
        now = self._now()
        if not self._inline:
            return self._entries(
                await self._runner.aguard("get_many", self.store.aread(keys, now)), now
            )
        return self._entries(await self._runner.here("get_many", self.store.read, keys, now), now)

    async def lease(self, key: str, tags: Sequence[str]) -> object | None:
        known = self._misses.take(key)
        if known is not None:
            return known
        if not self._inline:
            return SQLLease(await self._runner.aguard("lease", self.store.acounter()))
        return SQLLease(await self._runner.here("lease", self.store.counter))

    async def set(self, key: str, entry: Entry, lease: object | None = None) -> bool:
        row = make_row(self.context.codec, key, entry, self._now(), self.ttl)
        if row is None:
            return True
        seq = lease.seq if isinstance(lease, SQLLease) else None
        if seq is None:
            self._misses.forget(key)
        self._runner.keep_sweeping(self.sweep_interval, self.sweep)
        if self._inline:  # one small SQLite write: cheaper here than a thread hop, unless locked
            try:
                stored = self.store.put([row], self._now(), seq, True)
            except self._errors as exc:
                if not self.store.busy(exc):
                    raise TierError(self.name, "set", exc) from exc
            else:
                self._inline_writes += 1
                if self._inline_writes % _CHECKPOINT_EVERY == 0:
                    self._runner.background(self.store.checkpoint)
                # a thread hop only when there is work for it
                if self.bounds.wrote(1) and self.bounds.over_bounds(self._errors):
                    self._runner.background(self.bounds.enforce)
                return bool(stored)
        return bool(await self._runner.offload("set", self._put, [row], seq))

    async def set_many(self, entries: Mapping[str, Entry]) -> None:
        codec, now = self.context.codec, self._now()
        made = (make_row(codec, k, e, now, self.ttl) for k, e in entries.items())
        rows = [r for r in made if r is not None]
        if rows:
            self._misses.forget()
            await self._runner.offload("set_many", self._put, rows, None)

    async def delete_many(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        self._misses.forget()
        return int(
            await self._runner.offload("delete_many", self.store.delete_keys, keys, self._now())
        )

    async def delete_prefix(self, prefix: str) -> int:
        self._misses.forget()
        now = self._now()
        return int(
            await self._runner.offload("delete_prefix", self.store.delete_prefix, prefix, now)
        )

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        if tags:
            self._misses.forget()
            unique = tag_tokens(self.context.codec, tags)
            await self._runner.offload(
                "invalidate_tags", self.store.invalidate, unique, self._now()
            )

    async def clear(self) -> None:
        await self.delete_prefix(self.context.namespace + ":")

    # -- atomic read-modify-write (``_atomic``; used by add/incr/touch) ------------------------
    def read_versioned_sync(self, key: str) -> tuple[Entry | None, object]:
        return self._runner.guard("read_versioned", _atomic.read_versioned, self, key)

    def compare_and_set_sync(self, key: str, token: object, entry: Entry) -> bool:
        return bool(self._runner.guard("cas", _atomic.compare_and_set, self, key, token, entry))

    async def read_versioned(self, key: str) -> tuple[Entry | None, object]:
        return await self._runner.offload("read_versioned", _atomic.read_versioned, self, key)

    async def compare_and_set(self, key: str, token: object, entry: Entry) -> bool:
        return bool(
            await self._runner.offload("cas", _atomic.compare_and_set, self, key, token, entry)
        )

    async def scan_keys(self, prefix: str, cursor: str, count: int) -> tuple[list[str], str]:
        """A page of live keys in key order after ``cursor`` (see ``core.tier.KeyScanner``)."""
        keys = await self._runner.offload(
            "scan", self.store.scan, prefix, cursor, count + 1, self._now()
        )
        return keys[:count], keys[count - 1] if len(keys) > count else ""

    # -- internals ---------------------------------------------------------------------------
    def _put(self, rows: list[Row], lease: int | None) -> bool:
        """Write ``rows`` and, every few writes, bring the table within its bounds."""
        stored = bool(self.store.put(rows, self._now(), lease))
        if self.bounds.wrote(len(rows)):
            self.bounds.enforce()
        return stored

    def _now(self) -> float:
        return float(self.context.clock.time())

    def _entry(self, key: str, data: bytes | None, now: float) -> Entry | None:
        if data is None:
            return None
        try:
            entry = self.context.codec.decode(bytes(data), key=key)
        except DeserializationError:
            self.decode_errors += 1
            return None
        if entry.is_gone(now):
            return None
        bounds = self.bounds
        if bounds.bounded and bounds.reads.record(key, now):
            self._runner.background(bounds.flush_touches)
        return entry

    def _entries(self, rows: Sequence[Any], now: float) -> dict[str, Entry]:
        found = {}
        for key, data in rows:
            entry = self._entry(key, data, now)
            if entry is not None:
                found[key] = entry
        return found
