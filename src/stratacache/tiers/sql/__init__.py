"""``SQLTier``: a shared, bounded tier in a SQL table (SQLite or PostgreSQL).

SQLite goes through the stdlib ``sqlite3`` module (one connection per thread, WAL,
``synchronous=NORMAL``, statements kept prepared); PostgreSQL through psycopg 3
directly (autocommit connections, server-side prepared statements). No ORM sits
in the data path.

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

Freshness: an entry records the namespace sequence number of its write (or of
its lease); a tag invalidation bumps the counter and stamps the tag's version
row. A read checks only the entry's own tags, by primary key, so its cost does
not depend on how many tags were ever invalidated. A leased set is refused when
the key, one of its tags or a prefix covering it moved past the lease.

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
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ...core.codec import MAX_POSTGRES_VALUE, MAX_SQLITE_VALUE, check_value_size
from ...core.entry import Entry
from ...core.errors import DeserializationError, TierError
from ...core.tier import TierContext
from . import _atomic
from ._common import (
    LEASE_HORIZON,
    MissLeases,
    Row,
    SQLLease,
    check_config,
    engine_url,
    on_fork,
    over,
    parse_url,
)
from ._readlog import ReadLog
from ._sqlite import SQLiteStore

__all__ = ["LEASE_HORIZON", "SQLLease", "SQLTier"]

T = TypeVar("T")
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

    Raises:
        ConfigError: a bad URL, table name or bound, or psycopg missing for PostgreSQL.
    """

    shared = True

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
        self.evictions = 0
        self._count_lock = threading.Lock()
        self.dialect = target.dialect
        self.store: Any
        if target.dialect == "sqlite":
            self.store = SQLiteStore(target.where, table)
        else:
            from ._postgres import PostgresStore

            self.store = PostgresStore(target.where, table, pool_size)
        self._inline = target.dialect == "sqlite"
        self._errors: tuple[type[BaseException], ...] = (*self.store.errors, OSError)
        self._bounded = max_entries is not None or max_bytes is not None
        self._reads = ReadLog()  # for the eviction order
        self._misses = MissLeases()
        self._written = 0
        self._inline_writes = 0
        self._last_len = 0
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._sweeper: asyncio.Task[None] | None = None
        self._context = TierContext(namespace="")
        on_fork(self, self._after_fork)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, context: TierContext) -> None:
        """Create the tables if needed and start the expiry sweeper (idempotent)."""
        self._context = context
        await self._offload("start", self.store.setup, context.namespace)
        self._ensure_sweeper()

    async def close(self) -> None:
        """Stop the sweeper, the worker thread and every connection (idempotent)."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None and not sweeper.get_loop().is_closed():
            sweeper.cancel()
            if sweeper.get_loop() is asyncio.get_running_loop():
                await asyncio.gather(sweeper, return_exceptions=True)
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)  # never block the loop
        await asyncio.to_thread(self.store.close)
        if hasattr(self.store, "aclose"):
            await self.store.aclose()

    def _after_fork(self) -> list[Any]:
        """In a forked child: new connections, a new worker thread, no inherited sweeper."""
        self._executor = None
        self._executor_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._sweeper = None
        self._reads = ReadLog()
        self._misses = MissLeases()
        return list(self.store.abandon())

    def _ensure_sweeper(self) -> None:
        if not self.sweep_interval:
            return
        loop = asyncio.get_running_loop()
        if self._sweeper is None or self._sweeper.done() or self._sweeper.get_loop() is not loop:
            self._sweeper = loop.create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except TierError as exc:
                log.warning("stratacache: sweep of tier %r failed: %s", self.name, exc)

    async def sweep(self) -> int:
        """Delete expired rows (and old tombstones/prefix rows); returns how many entries."""
        return await self._offload("sweep", self.sweep_sync)

    def sweep_sync(self) -> int:
        """``sweep`` in the caller's thread; also brings the table within its bounds."""
        now = self._now()
        done = int(self._guard("sweep", self.store.sweep, now))
        self._guard("evict", self._enforce)
        return done

    def __len__(self) -> int:
        """Live entries in the table (all namespaces); on PostgreSQL as of the last bound check
        or sweep, so that ``stats()`` never counts a large table on the event loop."""
        try:
            self._last_len = int(self._guard("stats", self.store.known_usage)[0])
        except TierError as exc:  # stats() must not fail with the database
            log.warning("stratacache: tier %r could not count its entries: %s", self.name, exc)
        return self._last_len

    def usage(self) -> tuple[int, int]:
        """``(live entries, bytes of their values)`` in the table."""
        count, size = self._guard("stats", self.store.usage)
        return int(count), int(size)

    # -- sync API ----------------------------------------------------------------------------
    def get_sync(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
        now = self._now()
        if not self._inline:
            return self._entry(key, self._guard("get", self.store.read_one, key, now), now)
        data, seq = self._guard("get", self.store.read_one_leased, key, now)
        entry = self._entry(key, data, now)
        if entry is None:
            self._misses.remember(key, seq)
        return entry

    def get_many_sync(self, keys: Sequence[str]) -> dict[str, Entry]:
        if not keys:
            return {}
        now = self._now()
        return self._entries(self._guard("get_many", self.store.read, keys, now), now)

    def lease_sync(self, key: str, tags: Sequence[str]) -> object | None:
        known = self._misses.take(key)
        return known if known is not None else SQLLease(self._guard("lease", self.store.counter))

    def set_sync(self, key: str, entry: Entry, lease: object | None = None) -> bool:
        row = self._row(key, entry)
        if row is None:
            return True  # already past its end: nothing worth storing
        seq = lease.seq if isinstance(lease, SQLLease) else None
        if seq is None:
            self._misses.forget(key)  # a lease from before this write would be refused
        return bool(self._guard("set", self._put, [row], seq))

    def set_many_sync(self, entries: Mapping[str, Entry]) -> None:
        rows = [r for k, e in entries.items() if (r := self._row(k, e)) is not None]
        if rows:
            self._misses.forget()
            self._guard("set_many", self._put, rows, None)

    def delete_many_sync(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        self._misses.forget()
        return int(self._guard("delete_many", self.store.delete_keys, keys, self._now()))

    def delete_prefix_sync(self, prefix: str) -> int:
        self._misses.forget()
        return int(self._guard("delete_prefix", self.store.delete_prefix, prefix, self._now()))

    def invalidate_tags_sync(self, tags: Sequence[str]) -> None:
        if tags:
            self._misses.forget()
            self._guard(
                "invalidate_tags", self.store.invalidate, self._tag_tokens(tags), self._now()
            )

    def clear_sync(self) -> None:
        self.delete_prefix_sync(self._context.namespace + ":")

    # -- async API ---------------------------------------------------------------------------
    async def get(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
        now = self._now()
        if not self._inline:
            return self._entry(key, await self._aguard("get", self.store.aread_one(key, now)), now)
        try:  # ``_here`` inlined: one coroutine less on every L1 miss
            data, seq = self.store.read_one_leased(key, now, True)
        except self._errors as exc:
            if not self.store.busy(exc):
                raise TierError(self.name, "get", exc) from exc
            data, seq = await self._offload("get", self.store.read_one_leased, key, now)
        entry = self._entry(key, data, now)
        if entry is None:
            self._misses.remember(key, seq)  # the load that follows leases with it
        return entry

    async def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        if not keys:
            return {}
        now = self._now()
        if not self._inline:
            return self._entries(await self._aguard("get_many", self.store.aread(keys, now)), now)
        return self._entries(await self._here("get_many", self.store.read, keys, now), now)

    async def lease(self, key: str, tags: Sequence[str]) -> object | None:
        known = self._misses.take(key)
        if known is not None:
            return known
        if not self._inline:
            return SQLLease(await self._aguard("lease", self.store.acounter()))
        return SQLLease(await self._here("lease", self.store.counter))

    async def set(self, key: str, entry: Entry, lease: object | None = None) -> bool:
        row = self._row(key, entry)
        if row is None:
            return True
        seq = lease.seq if isinstance(lease, SQLLease) else None
        if seq is None:
            self._misses.forget(key)
        self._ensure_sweeper()
        if self._inline:  # one small SQLite write: cheaper here than a thread hop, unless locked
            try:
                stored = self.store.put([row], self._now(), seq, True)
            except self._errors as exc:
                if not self.store.busy(exc):
                    raise TierError(self.name, "set", exc) from exc
            else:
                self._inline_writes += 1
                if self._inline_writes % _CHECKPOINT_EVERY == 0:
                    self._background(self.store.checkpoint)
                self._written += 1
                if self._bounded and self._written >= self.store.check_every:
                    self._written = 0
                    if self._over_bounds():  # a thread hop only when there is work for it
                        self._background(self._enforce)
                return bool(stored)
        return bool(await self._offload("set", self._put, [row], seq))

    async def set_many(self, entries: Mapping[str, Entry]) -> None:
        rows = [r for k, e in entries.items() if (r := self._row(k, e)) is not None]
        if rows:
            self._misses.forget()
            await self._offload("set_many", self._put, rows, None)

    async def delete_many(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        self._misses.forget()
        return int(await self._offload("delete_many", self.store.delete_keys, keys, self._now()))

    async def delete_prefix(self, prefix: str) -> int:
        self._misses.forget()
        now = self._now()
        return int(await self._offload("delete_prefix", self.store.delete_prefix, prefix, now))

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        if tags:
            self._misses.forget()
            unique = self._tag_tokens(tags)
            await self._offload("invalidate_tags", self.store.invalidate, unique, self._now())

    async def clear(self) -> None:
        await self.delete_prefix(self._context.namespace + ":")

    # -- atomic read-modify-write (``_atomic``; used by add/incr/touch) ------------------------
    def read_versioned_sync(self, key: str) -> tuple[Entry | None, object]:
        return self._guard("read_versioned", _atomic.read_versioned, self, key)

    def compare_and_set_sync(self, key: str, token: object, entry: Entry) -> bool:
        return bool(self._guard("cas", _atomic.compare_and_set, self, key, token, entry))

    async def read_versioned(self, key: str) -> tuple[Entry | None, object]:
        return await self._offload("read_versioned", _atomic.read_versioned, self, key)

    async def compare_and_set(self, key: str, token: object, entry: Entry) -> bool:
        return bool(await self._offload("cas", _atomic.compare_and_set, self, key, token, entry))

    async def scan_keys(self, prefix: str, cursor: str, count: int) -> tuple[list[str], str]:
        """A page of live keys in key order after ``cursor`` (see ``core.tier.KeyScanner``)."""
        keys = await self._offload("scan", self.store.scan, prefix, cursor, count + 1, self._now())
        return keys[:count], keys[count - 1] if len(keys) > count else ""

    # -- internals ---------------------------------------------------------------------------
    def _guard(self, op: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` with driver errors turned into ``TierError``."""
        try:
            return fn(*args)
        except self._errors as exc:
            raise TierError(self.name, op, exc) from exc

    async def _aguard(self, op: str, awaitable: Any) -> Any:
        try:
            return await awaitable
        except self._errors as exc:
            raise TierError(self.name, op, exc) from exc

    async def _here(self, op: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args, inline=True)`` on the event loop; if SQLite is locked by another
        connection, ``fn(*args)`` on the worker thread, which waits for the lock."""
        try:
            return fn(*args, True)
        except self._errors as exc:
            if not self.store.busy(exc):
                raise TierError(self.name, op, exc) from exc
        return await self._offload(op, fn, *args)

    async def _offload(self, op: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the tier's worker thread, driver errors as ``TierError``."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._worker(), fn, *args)
        except self._errors as exc:
            raise TierError(self.name, op, exc) from exc

    def _worker(self) -> ThreadPoolExecutor:
        """The one thread that runs this tier's async writes (started on first use)."""
        executor = self._executor
        if executor is None:
            with self._executor_lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="stratacache-sql")
                executor = self._executor
        return executor

    def _put(self, rows: list[Row], lease: int | None) -> bool:
        """Write ``rows`` and, every few writes, bring the table within its bounds."""
        stored = bool(self.store.put(rows, self._now(), lease))
        self._written += len(rows)
        if self._bounded and self._written >= self.store.check_every:
            self._enforce()
        return stored

    def _over_bounds(self) -> bool:
        """Whether the table exceeds a bound, read on the event loop (a one-row read); True
        when that read fails, so that the worker thread, which waits for locks, looks."""
        try:
            count, size = self.store.usage(True)
        except self._errors:
            return True
        # record reads for the eviction order only once eviction is in sight
        self._reads.recording = over(2 * count, 2 * size, self.max_entries, self.max_bytes)
        return over(count, size, self.max_entries, self.max_bytes)

    def _enforce(self) -> None:
        self._written = 0
        if not self._bounded:
            return
        self._flush_touches()
        evicted = self.store.evict(self.max_entries, self.max_bytes, self._now())
        with self._count_lock:  # the worker thread and a caller's sweep may both evict
            self.evictions += evicted

    def _now(self) -> float:
        return float(self._context.clock.time())

    def _tag_tokens(self, tags: Sequence[str]) -> list[str]:
        """The stored forms of ``tags`` (keyed digests under encryption), without repeats."""
        codec = self._context.codec
        return list(dict.fromkeys(x for t in tags for x in codec.tag_tokens(t)))

    def _row(self, key: str, entry: Entry) -> Row | None:
        """The row storing ``entry``, or None when it is already past its end."""
        now = self._now()
        remaining = entry.keep_for(now, self.ttl)
        if remaining is not None and remaining <= 0:
            return None
        expires_at = None if remaining is None else now + remaining
        codec = self._context.codec
        tags = tuple(codec.tag_token(t) for t in entry.tags)  # keyed digests under encryption
        return Row(key, codec.encode(entry, key=key), expires_at, tags)

    def _entry(self, key: str, data: bytes | None, now: float) -> Entry | None:
        if data is None:
            return None
        try:
            entry = self._context.codec.decode(bytes(data), key=key)
        except DeserializationError:
            self.decode_errors += 1
            return None
        if entry.is_gone(now):
            return None
        if self._bounded and self._reads.record(key, now):
            self._background(self._flush_touches)
        return entry

    def _flush_touches(self) -> None:
        keys = self._reads.take()
        if keys:
            self.store.touch(keys, self._now())

    def _background(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the worker thread without waiting; a failure is logged."""
        self._worker().submit(fn).add_done_callback(self._log_failure)

    def _log_failure(self, future: Any) -> None:
        exc = future.exception()
        if exc is not None:
            log.warning("stratacache: tier %r could not record reads: %r", self.name, exc)

    def _entries(self, rows: Sequence[Any], now: float) -> dict[str, Entry]:
        found = {}
        for key, data in rows:
            entry = self._entry(key, data, now)
            if entry is not None:
                found[key] = entry
        return found
