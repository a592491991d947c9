"""Read-through: serve fresh, serve-and-refresh, or load once per key (single-flight).

The freshness decision itself is ``policy.classify`` (shared with the sync
facade); this module adds the async I/O around it: background refreshes,
the in-flight table, stale-if-error and, when asked for, the fleet lock
(``lock.FleetLock``) so that one process across the fleet runs the loader
while the others wait for its value.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..core.entry import Entry
from ..core.fleet import FleetLock, Invalidation
from . import accounting, signals
from .flight import Flight
from .policy import EntryPolicy, Freshness, classify
from .signals import send as _send
from .stats import FunctionStats

if TYPE_CHECKING:
    from ..core.fleet import HotSet
    from .cache import Cache

log = logging.getLogger("stratacache")
Loader = Callable[[], Any]
_RETRY: Any = object()  # a shared read was cancelled: read again yourself
_HOLD_MIN = 0.1  # seconds the fast path keeps serving an entry whose refresh is running
_LOADED_MAX = 10_000


class ReadThrough:
    """The loading half of a ``Cache``: one in-flight load per key, background refreshes."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self._inflight: dict[str, Flight] = {}
        self._refreshing: set[str] = set()
        self._reading: dict[str, list[asyncio.Future[Entry | None]]] = {}
        self._loaded: dict[str, float] = {}  # when this process last loaded each key (bounded)
        self._background: set[asyncio.Task[Any]] = set()
        #: the fleet lock used by ``lock=True`` (None: only in-process single-flight)
        self.lock: FleetLock | None = None
        #: access-frequency tracker fed from the slow path (e.g. ``stratacache.HotKeys``)
        self.hot: HotSet | None = None
        #: warmers registered by front doors (``stratacache.warming`` runs them)
        self.warmers: list[Any] = []
        #: the XFetch draw; tests inject a fixed value
        self.random: Callable[[], float] = random.random

    async def close(self) -> None:
        """Cancel background work, wait for it to end, and release the fleet lock's connections."""
        loop = asyncio.get_running_loop()  # tasks of other (closed) loops cannot be awaited here
        flights = [f.task for f in self._inflight.values() if f.task is not None]
        pending = [t for t in (*self._background, *flights) if t.get_loop() is loop]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self.lock is not None:
            await self.lock.close()
        if self.hot is not None:
            await self.hot.close()

    def detach(self, message: Invalidation) -> None:
        """Stop new callers from joining loads and reads that began before ``message``.

        Those loads finish (their writes are refused by the tiers' leases) and their
        current waiters get their result, but anyone arriving after the invalidation
        starts afresh instead of receiving a value the invalidation outdated.
        """
        # list() copies in one step: the bus applies messages from its own thread
        for fkey in [k for k, f in list(self._inflight.items()) if matches(message, k, f.tags)]:
            self._inflight.pop(fkey, None)
        for fkey in [k for k in list(self._reading) if matches(message, k, None)]:
            self._reading.pop(fkey, None)

    def resolve_lock(self, lock: FleetLock | bool | None) -> FleetLock | None:
        """``lock=`` as callers give it (True: the cache's lock) as the lock to use, or None."""
        if lock is None or lock is False:
            return None
        if lock is True:
            if self.lock is None:
                from ..core.errors import ConfigError

                raise ConfigError(
                    "lock=True needs a fleet lock: this cache has no shared Redis tier to put one "
                    "on; add a RedisTier or pass Cache(lock=RedisLock(url))"
                )
            return self.lock
        return lock

    async def fetch(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None = None,
        lock: FleetLock | None = None,
    ) -> Entry:
        """Read-through on a full key: serve, serve-and-refresh, or load (single-flight)."""
        if self.hot is not None:
            self.hot.record(fkey, (loader, policy, tags, fstats, lock))
        held: dict[int, object | None] = {}
        entry = await self._read(fkey, tags, held)
        if entry is not None:
            state = classify(entry, self.cache.clock.time(), self.cache.beta, self.random())
            if state is Freshness.FRESH:
                if fstats is not None:
                    fstats.hits += 1
                return entry
            if state is not Freshness.EXPIRED:
                self._serve_and_refresh(fkey, loader, policy, tags, state, fstats, lock, entry)
                return entry
        if fstats is not None:
            fstats.misses += 1
        return await self.load(
            fkey, loader, policy, tags, entry, fstats, lock, held=None if entry else held
        )

    async def _read(
        self, fkey: str, tags: tuple[str, ...] = (), held: dict[int, object | None] | None = None
    ) -> Entry | None:
        """``TierStack.read``, shared by concurrent readers of one key (one round trip, not N).

        The first reader reads inline; only contended readers pay for a future. Only the
        first reader gets the leases the read took (in ``held``).
        """
        waiters = self._reading.get(fkey)
        if waiters is not None:
            fut: asyncio.Future[Entry | None] = asyncio.get_running_loop().create_future()
            waiters.append(fut)
            entry = await fut
            if entry is not _RETRY:
                return entry
            return await self.cache.tiers.read(fkey, self.cache.clock.time(), tags)
        self._reading[fkey] = waiters = []
        entry = _RETRY
        try:
            entry = await self.cache.tiers.read(fkey, self.cache.clock.time(), tags, held=held)
        finally:
            if self._reading.get(fkey) is waiters:  # not replaced after an invalidation
                self._reading.pop(fkey, None)
            for fut in waiters:
                if not fut.done():
                    fut.set_result(entry)  # _RETRY if we were cancelled: they read themselves
        return entry

    async def load(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        stale: Entry | None = None,
        fstats: FunctionStats | None = None,
        lock: FleetLock | None = None,
        previous: Entry | None = None,
        held: dict[int, object | None] | None = None,
    ) -> Entry:
        """Run ``loader`` once per key in this process however many callers wait for it.

        With ``lock``, once per key across the fleet: the other processes wait for the
        value the holder stores. ``previous`` is the entry being refreshed, if any: a
        value another process stored after it counts as the refresh. ``held``: leases
        (by tier index) the caller's read took just before; a miss needs no new ones.
        """
        flight = self._inflight.get(fkey)
        if flight is None:
            if lock is not None:
                base = previous if previous is not None else stale
                run = self._run_locked(fkey, loader, policy, tags, fstats, lock, base)
            else:
                run = self._run_loader(fkey, loader, policy, tags, fstats, held)
            flight = Flight(self._inflight, fkey, tags)
            waiter = flight.join()
            flight.start(run)
        else:
            self.cache.counters.coalesced += 1
            waiter = flight.join()
        try:
            return await waiter
        except Exception as exc:
            if stale is not None and not stale.is_gone(self.cache.clock.time()):
                accounting.stale_if_error(self.cache, fkey, fstats, exc)
                return stale
            raise

    async def _run_locked(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None,
        fleet: FleetLock,
        previous: Entry | None,
    ) -> Entry:
        """Load under the fleet lock, or wait for the holder's value (bounded, then load)."""
        counters = self.cache.counters
        loop = asyncio.get_running_loop()
        deadline = loop.time() + fleet.wait_timeout
        newer_than = previous.created if previous is not None else None
        waited = woken = False
        while True:
            try:
                attempt = await fleet.acquire(fkey)
            except Exception as exc:  # the lock is an optimisation: never fail the caller for it
                counters.lock_errors += 1
                return await self._fallback(fkey, loader, policy, tags, fstats, "error", exc)
            if attempt.owned:
                counters.lock_acquired += 1
                if waited and not woken:
                    counters.lock_takeovers += 1  # the previous holder's lease ran out
                try:
                    found = await self._reread(fkey, newer_than)
                    if found is not None:  # stored by a holder that released before we asked
                        return found
                    async with fleet.hold(fkey, attempt.token):
                        return await self._run_loader(fkey, loader, policy, tags, fstats)
                finally:
                    await self._release(fleet, fkey, attempt.token)
            if not waited:
                waited = True
                counters.lock_waits += 1
                if fstats is not None:
                    fstats.lock_waits += 1
                _send(signals.lock_wait, self.cache, key=fkey)
            woken = await fleet.wait(fkey, attempt, deadline - loop.time())
            found = await self._reread(fkey, newer_than)
            if found is not None:
                return found
            if loop.time() >= deadline:
                return await self._fallback(fkey, loader, policy, tags, fstats, "timeout", None)

    async def _fallback(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None,
        reason: str,
        error: BaseException | None,
    ) -> Entry:
        """Load without the lock: it is unreachable or the holder took too long."""
        accounting.lock_fallback(self.cache, fkey, fstats, reason, error)
        return await self._run_loader(fkey, loader, policy, tags, fstats)

    async def _release(self, fleet: FleetLock, fkey: str, token: str) -> None:
        try:
            await fleet.release(fkey, token)
        except Exception as exc:  # it expires on its own after the lease
            self.cache.counters.lock_errors += 1
            log.warning("stratacache: releasing the fleet lock on %r failed: %r", fkey, exc)

    async def backfill(self, fkey: str) -> Entry | None:
        """Copy ``fkey``'s unexpired entry from the first tier holding it into the tiers above."""
        return await self._reread(fkey, None)

    async def _reread(self, fkey: str, newer_than: float | None) -> Entry | None:
        """An unexpired entry (created after ``newer_than``) from any tier, backfilled above.

        Unlike a plain read this looks past an upper tier's older copy, so a waiter
        holding a stale L1 entry still finds the holder's new value below it.
        """
        now = self.cache.clock.time()
        return await self.cache.tiers.read(
            fkey, now, newer_than=-math.inf if newer_than is None else newer_than
        )

    async def _run_loader(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None,
        held: dict[int, object | None] | None = None,
    ) -> Entry:
        leases = await self.cache.tiers.leases(fkey, tags, held)
        started = time.perf_counter()
        try:
            value = loader()
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            accounting.load_failed(self.cache, fkey, fstats, exc)
            raise
        cost = time.perf_counter() - started
        accounting.loaded(self.cache, fkey, fstats, cost)
        self._loaded[fkey] = self.cache.clock.time()
        if len(self._loaded) > _LOADED_MAX:
            del self._loaded[next(iter(self._loaded))]
        value_bytes = self.cache.codec.dumps_value(value)
        entry = policy.make(value, self.cache.clock.time(), tags, cost, value_bytes)
        if not policy.stores(value):
            return entry
        if not await self.cache.tiers.write(fkey, entry, leases, self.cache.clock.time()):
            accounting.refused_set(self.cache, fkey)
        return entry

    def _serve_and_refresh(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        state: Freshness,
        fstats: FunctionStats | None,
        lock: FleetLock | None,
        entry: Entry,
    ) -> None:
        accounting.refresh_served(self.cache, fkey, fstats, state is Freshness.EARLY)
        if fstats is not None:
            fstats.hits += 1
        self.refresh_in_background(fkey, loader, policy, tags, fstats, lock, entry)
        self._hold(fkey, entry)

    def _hold(self, fkey: str, entry: Entry) -> None:
        """Let the fast path serve ``entry`` while its refresh runs (never past its hard TTL).

        Without this every read in the refresh window takes the slow path just to be told
        "refresh already running". Only the memory tier's live object is extended, and it
        is re-checked afterwards, so an entry removed meanwhile is never revived. If the
        refresh fails, the hold lapses after a short while and a reader retries it.
        """
        peek = getattr(self.cache.tiers.top, "peek", None)
        if peek is None or peek(fkey) is not entry or not entry.alive:
            return
        now = self.cache.clock.time()
        hold = now + max(_HOLD_MIN, 2 * entry.cost)
        if entry.expires is not None:
            hold = min(hold, entry.expires)
        if hold > entry.deadline:
            entry.deadline = hold
            if peek(fkey) is not entry:  # removed in between (another thread): stay dead
                entry.kill()

    def refresh_in_background(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None = None,
        lock: FleetLock | None = None,
        previous: Entry | None = None,
    ) -> bool:
        """Reload ``fkey`` in a background task (at most one per key at a time).

        Returns False when a load or refresh of ``fkey`` is already running.
        """
        if fkey in self._refreshing or fkey in self._inflight:
            return False
        if previous is not None and self._loaded.get(fkey, -math.inf) > previous.created:
            return False  # a newer value was loaded since ``previous`` was read
        self._refreshing.add(fkey)
        self.cache.counters.background_refreshes += 1

        async def refresh() -> None:
            try:
                await self.load(
                    fkey, loader, policy, tags, fstats=fstats, lock=lock, previous=previous
                )
            except Exception as exc:  # the stale value stays; the error is counted and logged
                log.warning("stratacache: background refresh of %r failed: %r", fkey, exc)
            finally:
                self._refreshing.discard(fkey)

        self.spawn(refresh())
        return True

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, keeping a reference until it ends; ``close`` cancels it."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task


def matches(message: Invalidation, fkey: str, tags: tuple[str, ...] | None) -> bool:
    """Could ``message`` outdate ``fkey`` (whose tags are ``tags``; None: unknown)?"""
    if message.clear or fkey in message.keys:
        return True
    if any(fkey.startswith(p) for p in message.prefixes):
        return True
    return bool(message.tags) and (tags is None or not set(message.tags).isdisjoint(tags))
