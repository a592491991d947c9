"""Read-through, async driver: serve fresh, serve-and-refresh, or load once per key.

The decisions are ``loading.Loads``' and ``loading.locked_load``'s (shared with
``cache.sync``); this module adds the asyncio I/O around them: the in-flight
table (single-flight), shared reads, background refresh tasks, stale-if-error
and the fleet lock's awaits.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.entry import Entry
from ..core.fleet import FleetLock, Invalidation
from . import accounting
from .flight import UNLOADED, Flight
from .loading import Loads, LockStep, locked_load, matches
from .policy import EntryPolicy, Freshness, check_loader
from .stack import Leases, TierStack
from .stats import FunctionStats

log = logging.getLogger("stratacache")
Loader = Callable[[], Any]
_RETRY: Any = object()  # a shared read was cancelled: read again yourself


class ReadThrough:
    """The loading half of a ``Cache``: one in-flight load per key, background refreshes."""

    def __init__(self, loads: Loads, tiers: TierStack) -> None:
        self.loads = loads
        self.tiers = tiers
        self.rec = loads.rec
        self.clock = loads.clock
        self._inflight: dict[str, Flight] = {}
        self._reading: dict[str, list[asyncio.Future[Entry | None]]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._refreshing = loads.refreshing  # the shared set, under its former name
        #: tells the other processes a key was overwritten (set by ``Cache``: the bus)
        self.announce: Callable[[str], Awaitable[None]] | None = None

    def idle(self) -> bool:
        """No load and no background refresh of any key is running in this process."""
        return not self._inflight and not self.loads.refreshing

    def loading(self, fkey: str) -> bool:
        """Is a load of ``fkey`` in flight (callers arriving now join it)?"""
        return fkey in self._inflight

    # the shared state, reachable here as before (``cache.readthrough.lock = ...`` keeps working)
    @property
    def lock(self) -> FleetLock | None:
        """The fleet lock used by ``lock=True`` (None: only in-process single-flight)."""
        return self.loads.lock

    @lock.setter
    def lock(self, value: FleetLock | None) -> None:
        self.loads.lock = value

    @property
    def hot(self) -> Any:
        """The access-frequency tracker fed from the slow path, if any."""
        return self.loads.hot

    @hot.setter
    def hot(self, value: Any) -> None:
        self.loads.hot = value

    @property
    def random(self) -> Callable[[], float]:
        """The XFetch draw (tests inject a fixed value)."""
        return self.loads.random

    @random.setter
    def random(self, value: Callable[[], float]) -> None:
        self.loads.random = value

    @property
    def warmers(self) -> list[Any]:
        """Functions and argument sources registered for ``cache.warm()``."""
        return self.loads.warmers

    def resolve_lock(self, lock: FleetLock | bool | None) -> FleetLock | None:
        """``lock=`` as callers give it (True: the cache's lock) as the lock to use, or None."""
        return self.loads.resolve_lock(lock)  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Cancel background work, wait for it to end, and release the fleet lock's connections."""
        loop = asyncio.get_running_loop()  # tasks of other (closed) loops cannot be awaited here
        flights = [f.task for f in self._inflight.values() if f.task is not None]
        pending = [t for t in (*self._background, *flights) if t.get_loop() is loop]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self.loads.lock is not None:
            await self.loads.lock.close()
        if self.loads.hot is not None:
            await self.loads.hot.close()

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

    def claim(
        self, fkeys: list[str], tags: tuple[str, ...]
    ) -> tuple[dict[str, Flight], dict[str, asyncio.Future[Entry]]]:
        """A batch load's keys: ``(flights it now runs, waiters on loads already in flight)``.

        Its own keys are registered as in flight, so a single-key load arriving meanwhile
        joins the batch (one load per key in this process, whichever API asked first); the
        batch ends them with ``Flight.settle``.
        """
        own: dict[str, Flight] = {}
        joined: dict[str, asyncio.Future[Entry]] = {}
        for fkey in fkeys:
            flight = self._inflight.get(fkey)
            if flight is None:
                own[fkey] = Flight(self._inflight, fkey, tags)
            else:
                self.rec.counters.coalesced += 1
                joined[fkey] = flight.join()
        return own, joined

    async def fetch(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None = None,
        lock: FleetLock | None = None,
    ) -> Entry:
        """Read-through on a full key: serve, serve-and-refresh, or load (single-flight).

        Concurrent readers of one key share the first one's read (one round trip, not N):
        the first reads inline (only contended readers pay for a future) and tells the
        load after a miss which tiers its read could not reach.
        """
        check_loader(loader)
        loads = self.loads
        if loads.hot is not None:
            loads.hot.record(fkey, (loader, policy, tags, fstats, lock))
        held: Leases = {}
        if fkey in self._reading:
            entry = await self._join_read(fkey, tags)  # the leases stay with the first reader
        else:  # inlined: a coroutine layer less on every L1 miss
            waiters: list[asyncio.Future[Entry | None]] = []
            self._reading[fkey] = waiters
            entry = _RETRY
            try:
                entry = await self.tiers.read(fkey, self.clock.time(), tags, held=held)
            finally:
                if self._reading.get(fkey) is waiters:  # not replaced after an invalidation
                    del self._reading[fkey]
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(entry)  # _RETRY if we were cancelled: they read themselves
        if entry is None:
            if fstats is not None:
                fstats.misses += 1
            return await self.load(fkey, loader, policy, tags, None, fstats, lock, held=held)
        state = loads.judge(fkey, entry, fstats)
        if state is Freshness.FRESH:
            return entry
        if state is Freshness.EXPIRED:
            return await self.load(fkey, loader, policy, tags, entry, fstats, lock)
        self.refresh_in_background(fkey, loader, policy, tags, fstats, lock, entry)
        loads.hold(fkey, entry)
        return entry

    async def _join_read(self, fkey: str, tags: tuple[str, ...]) -> Entry | None:
        """Wait for the read of ``fkey`` in progress; read again if it was cancelled."""
        fut: asyncio.Future[Entry | None] = asyncio.get_running_loop().create_future()
        self._reading[fkey].append(fut)
        entry = await fut
        if entry is not _RETRY:
            return entry
        return await self.tiers.read(fkey, self.clock.time(), tags)

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
        held: Leases | None = None,
        forced: bool = False,
    ) -> Entry:
        """Run ``loader`` once per key in this process however many callers wait for it.

        With ``lock``, once per key across the fleet: the other processes wait for the
        value the holder stores. ``previous`` is the entry being refreshed, if any: a
        value another process stored after it counts as the refresh. ``held``: leases
        (by tier index) the caller's read took just before; tiers it could not reach are
        not written (the others are leased again, bottom-up: ``plans.lease_plan``).
        ``forced``: an explicit refresh. A load that replaces a value is announced on the
        bus (``Loads.replaces``).
        """
        flight = self._inflight.get(fkey)
        if flight is None:
            if lock is not None:
                base = self.loads.base_of(stale, previous)
                run = self._run_locked(fkey, loader, policy, tags, fstats, lock, base)
            else:
                run = self._run_loader(fkey, loader, policy, tags, fstats, held)
            if self.announce is not None and self.loads.replaces(stale, previous, forced):
                run = self._announced(fkey, run, self.announce)
            flight = Flight(self._inflight, fkey, tags)
            waiter = flight.join()
            flight.start(run)
        else:
            self.rec.counters.coalesced += 1
            waiter = flight.join()
        try:
            entry = await waiter
        except Exception as exc:
            return self.loads.stale_if_error(fkey, stale, fstats, exc)
        if entry is UNLOADED:  # joined a batch whose loader left this key out
            return await self.load(
                fkey, loader, policy, tags, stale, fstats, lock, previous, None, forced
            )
        return entry

    @staticmethod
    async def _announced(
        fkey: str, run: Awaitable[Entry], announce: Callable[[str], Awaitable[None]]
    ) -> Entry:
        """``run``, then tell the other processes that ``fkey`` was overwritten."""
        entry = await run
        await announce(fkey)
        return entry

    async def _run_locked(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None,
        fleet: FleetLock,
        base: Entry | None,
    ) -> Entry:
        """Drive ``loading.locked_load`` with awaits."""
        usable = functools.partial(self.tiers.lock_usable, fleet)
        flow = locked_load(self.rec, fkey, fleet.wait_timeout, base, fstats, usable)
        step, arg = next(flow)
        while True:
            try:
                if step is LockStep.ACQUIRE:
                    result: Any = await fleet.acquire(fkey)
                elif step is LockStep.REREAD:
                    result = await self._reread(fkey, arg)
                elif step is LockStep.LOAD_HELD:
                    async with fleet.hold(fkey, arg):
                        result = await self._run_loader(fkey, loader, policy, tags, fstats)
                elif step is LockStep.LOAD:
                    result = await self._run_loader(fkey, loader, policy, tags, fstats)
                elif step is LockStep.RELEASE:
                    result = await fleet.release(fkey, arg)
                else:
                    result = await fleet.wait(fkey, *arg)
            except BaseException as exc:
                try:
                    step, arg = flow.throw(exc)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                continue
            try:
                step, arg = flow.send(result)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]

    async def backfill(self, fkey: str) -> Entry | None:
        """Copy ``fkey``'s unexpired entry from the first tier holding it into the tiers above."""
        return await self._reread(fkey, -math.inf)

    async def _reread(self, fkey: str, newer_than: float) -> Entry | None:
        """An unexpired entry (created after ``newer_than``) from any tier, backfilled above.

        Unlike a plain read this looks past an upper tier's older copy, so a waiter
        holding a stale L1 entry still finds the holder's new value below it.
        """
        return await self.tiers.read(fkey, self.clock.time(), newer_than=newer_than)

    async def _run_loader(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None,
        held: Leases | None = None,
    ) -> Entry:
        tiers = self.tiers
        leases = await tiers.leases(fkey, tags, held)
        started = time.perf_counter()
        try:
            value = loader()
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            accounting.load_failed(self.rec, fkey, fstats, exc)
            raise
        entry = self.loads.loaded(fkey, value, started, policy, tags, fstats)
        if policy.stores(value) and not await tiers.write(fkey, entry, leases, self.clock.time()):
            accounting.refused_set(self.rec, fkey)
        return entry

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
        loads = self.loads
        if not loads.may_refresh(fkey, previous, fkey in self._inflight):
            return False

        async def refresh() -> None:
            try:
                await self.load(
                    fkey, loader, policy, tags, fstats=fstats, lock=lock, previous=previous
                )
            except Exception as exc:  # the stale value stays; the error is counted and logged
                log.warning("stratacache: background refresh of %r failed: %r", fkey, exc)
            finally:
                loads.refreshing.discard(fkey)

        self.spawn(refresh())
        return True

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, keeping a reference until it ends; ``close`` cancels it."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task


__all__ = ["ReadThrough", "matches"]
