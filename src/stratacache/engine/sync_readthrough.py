"""Read-through, blocking driver: the same decisions as ``engine.readthrough`` for threads.

``loading.Loads`` decides (freshness with the XFetch draw, refresh claims, the
newer-load guard, the fast-path hold, how a value becomes an entry) and
``loading.locked_load`` runs the fleet-lock loop; this module supplies the
blocking I/O: one in-flight load per key across threads (a
``concurrent.futures.Future`` per load), refresh worker threads, and the
blocking fleet lock's calls.
"""

from __future__ import annotations

import concurrent.futures
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..core.entry import Entry
from ..core.errors import ConfigError
from ..core.fleet import Invalidation, SyncFleetLock
from ..core.loops import on_fork
from ..core.portal import Portal, await_any
from . import accounting
from .flight import UNLOADED
from .loading import Loads, LockStep, locked_load, matches
from .policy import EntryPolicy, Freshness, check_loader
from .stack_slots import Leases
from .stats import FunctionStats
from .sync_stack import SyncStack

log = logging.getLogger("stratacache")
Loader = Callable[[], Any]


class SyncReadThrough:
    """The loading half of ``cache.sync``: one load per key across this process's threads."""

    def __init__(self, loads: Loads, io: SyncStack, portal: Portal) -> None:
        self.loads = loads
        self.io = io
        self.portal = portal
        self.rec = loads.rec
        self.clock = loads.clock
        self._inflight: dict[str, concurrent.futures.Future[Entry]] = {}
        self._inflight_tags: dict[str, tuple[str, ...]] = {}
        self._inflight_lock = threading.Lock()
        self._refresher: concurrent.futures.ThreadPoolExecutor | None = None
        #: tells the other processes a key was overwritten (set by ``cache.sync``: the bus)
        self.announce: Callable[[str], None] | None = None
        on_fork(self)

    def close(self) -> None:
        """Wait for the refresh threads to end."""
        if self._refresher is not None:
            self._refresher.shutdown(wait=True)
            self._refresher = None

    def after_fork(self) -> None:
        """In a forked child: the parent's loads and refresh threads do not exist here."""
        self._inflight_lock = threading.Lock()
        self._inflight.clear()
        self._inflight_tags.clear()
        self._refresher = None

    def detach(self, message: Invalidation) -> None:
        """New callers must not join loads that began before ``message`` (see ReadThrough)."""
        with self._inflight_lock:
            for fkey in [
                k for k in self._inflight if matches(message, k, self._inflight_tags.get(k))
            ]:
                del self._inflight[fkey]
                self._inflight_tags.pop(fkey, None)

    def claim(
        self, fkeys: list[str], tags: tuple[str, ...]
    ) -> tuple[
        dict[str, concurrent.futures.Future[Entry]], dict[str, concurrent.futures.Future[Entry]]
    ]:
        """A batch load's keys: ``(futures it now owns, loads already in flight)`` (as
        ``ReadThrough.claim``); the batch ends its own with ``settle``."""
        own: dict[str, concurrent.futures.Future[Entry]] = {}
        joined: dict[str, concurrent.futures.Future[Entry]] = {}
        with self._inflight_lock:
            for fkey in fkeys:
                future = self._inflight.get(fkey)
                if future is None:
                    own[fkey] = self._inflight[fkey] = concurrent.futures.Future()
                    self._inflight_tags[fkey] = tags
                else:
                    self.rec.counters.coalesced += 1
                    joined[fkey] = future
        return own, joined

    def settle(
        self,
        fkey: str,
        future: concurrent.futures.Future[Entry],
        entry: Any,
        exc: BaseException | None = None,
    ) -> None:
        """End a batch's load of ``fkey``: ``entry`` (``UNLOADED``: load it yourself) or ``exc``."""
        with self._inflight_lock:
            if self._inflight.get(fkey) is future:  # not detached by an invalidation
                del self._inflight[fkey]
                self._inflight_tags.pop(fkey, None)
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(entry)

    def resolve_lock(self, lock: Any) -> SyncFleetLock | None:
        """``lock=`` as callers give it (True: the cache's lock) as a blocking lock, or None."""
        fleet = self.loads.resolve_lock(lock)
        if fleet is not None and not isinstance(fleet, SyncFleetLock):
            raise ConfigError(
                f"{fleet!r} has no blocking methods: sync callers need e.g. RedisLock"
            )
        return fleet

    def fetch(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None = None,
        lock: SyncFleetLock | None = None,
    ) -> Entry:
        """Read-through on a full key: serve, serve-and-refresh, or load (single-flight)."""
        check_loader(loader)
        loads = self.loads
        if loads.hot is not None:  # counted, but not refreshed by the tracker: its refreshes
            loads.hot.record(fkey)  # run on the event loop, where a blocking loader must not
        held: Leases = {}
        entry = self.io.read(fkey, self.clock.time(), tags, held=held)
        if entry is None:
            if fstats is not None:
                fstats.misses += 1
            return self.load(fkey, loader, policy, tags, None, fstats, lock, held=held)
        state = loads.judge(fkey, entry, fstats)
        if state is Freshness.FRESH:
            return entry
        if state is Freshness.EXPIRED:
            return self.load(fkey, loader, policy, tags, entry, fstats, lock)
        self.refresh_in_background(fkey, loader, policy, tags, fstats, lock, entry)
        loads.hold(fkey, entry)
        return entry

    def load(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        stale: Entry | None = None,
        fstats: FunctionStats | None = None,
        lock: SyncFleetLock | None = None,
        previous: Entry | None = None,
        held: Leases | None = None,
        forced: bool = False,
    ) -> Entry:
        """Run ``loader`` once per key across this process's threads (``ReadThrough.load``)."""
        with self._inflight_lock:
            future = self._inflight.get(fkey)
            leader = future is None
            if future is None:
                future = concurrent.futures.Future()
                self._inflight[fkey] = future
                self._inflight_tags[fkey] = tags
            else:
                self.rec.counters.coalesced += 1
        if leader:
            try:
                if lock is None:
                    entry = self._run_loader(fkey, loader, policy, tags, fstats, held)
                else:
                    base = self.loads.base_of(stale, previous)
                    entry = self._run_locked(fkey, loader, policy, tags, fstats, lock, base)
                if self.announce is not None and self.loads.replaces(stale, previous, forced):
                    self.announce(fkey)
                future.set_result(entry)
            except BaseException as exc:
                future.set_exception(exc)
            finally:
                with self._inflight_lock:
                    if self._inflight.get(fkey) is future:  # not detached by an invalidation
                        del self._inflight[fkey]
                        self._inflight_tags.pop(fkey, None)
        try:
            entry = future.result()
        except Exception as exc:
            return self.loads.stale_if_error(fkey, stale, fstats, exc)
        if entry is UNLOADED:  # joined a batch whose loader left this key out
            return self.load(
                fkey, loader, policy, tags, stale, fstats, lock, previous, None, forced
            )
        return entry

    def _run_locked(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None,
        fleet: SyncFleetLock,
        base: Entry | None,
    ) -> Entry:
        """Drive ``loading.locked_load`` with blocking calls."""
        usable = functools.partial(self.io.view.lock_usable, fleet)
        flow = locked_load(self.rec, fkey, fleet.wait_timeout, base, fstats, usable)
        step, arg = next(flow)
        while True:
            try:
                if step is LockStep.ACQUIRE:
                    result: Any = fleet.acquire_sync(fkey)
                elif step is LockStep.REREAD:
                    result = self.io.read(fkey, self.clock.time(), None, arg)
                elif step is LockStep.LOAD_HELD:
                    with fleet.hold_sync(fkey, arg):
                        result = self._run_loader(fkey, loader, policy, tags, fstats)
                elif step is LockStep.LOAD:
                    result = self._run_loader(fkey, loader, policy, tags, fstats)
                elif step is LockStep.RELEASE:
                    result = fleet.release_sync(fkey, arg)
                else:
                    result = fleet.wait_sync(fkey, *arg)
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

    def _run_loader(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None,
        held: Leases | None = None,
    ) -> Entry:
        io = self.io
        leases = io.leases(fkey, tags, held)
        started = time.perf_counter()
        try:
            value = self.call(loader)
        except Exception as exc:
            accounting.load_failed(self.rec, fkey, fstats, exc)
            raise
        entry = self.loads.loaded(fkey, value, started, policy, tags, fstats)
        if policy.stores(value) and not io.write(fkey, entry, leases, self.clock.time()):
            accounting.refused_set(self.rec, fkey)
        return entry

    def call(self, loader: Callable[..., Any], *args: Any) -> Any:
        """``loader(*args)``'s value. An awaitable result (an async loader's) is run to its end
        on the portal loop, as the async engine awaits it: every loader either client takes
        (``get_or_set``, ``get_or_set_many``) may be sync or async, in both."""
        value = loader(*args)
        if inspect.isawaitable(value):
            value = self.portal.run(await_any(value))
        return value

    def refresh_in_background(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None = None,
        lock: SyncFleetLock | None = None,
        previous: Entry | None = None,
    ) -> bool:
        """Reload ``fkey`` on a worker thread, at most one refresh per key at a time."""
        loads = self.loads
        with self._inflight_lock:
            if not loads.may_refresh(fkey, previous, fkey in self._inflight):
                return False
            if self._refresher is None:
                self._refresher = concurrent.futures.ThreadPoolExecutor(
                    max_workers=4, thread_name_prefix="stratacache-refresh"
                )

        def refresh() -> None:
            try:
                self.load(fkey, loader, policy, tags, None, fstats, lock, previous)
            except Exception as exc:
                log.warning("stratacache: background refresh of %r failed: %r", fkey, exc)
            finally:
                loads.refreshing.discard(fkey)

        self._refresher.submit(refresh)
        return True


__all__ = ["SyncReadThrough"]
