"""Read-through: serve fresh, serve-and-refresh, or load once per key (single-flight).

The freshness decision itself is ``policy.classify`` (shared with the sync
facade); this module adds the async I/O around it: background refreshes,
the in-flight table and stale-if-error.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..core.entry import Entry
from . import signals
from .policy import EntryPolicy, Freshness, classify
from .signals import send as _send
from .stats import FunctionStats

if TYPE_CHECKING:
    from .cache import Cache

log = logging.getLogger("stratacache")
Loader = Callable[[], Any]


class ReadThrough:
    """The loading half of a ``Cache``: one in-flight load per key, background refreshes."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self._inflight: dict[str, asyncio.Task[Entry]] = {}
        self._refreshing: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()

    async def close(self) -> None:
        """Cancel background refreshes and wait for them to end."""
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def fetch(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None = None,
    ) -> Entry:
        """Read-through on a full key: serve, serve-and-refresh, or load (single-flight)."""
        entry = await self.cache.tiers.read(fkey, self.cache.clock.time())
        if entry is not None:
            state = classify(entry, self.cache.clock.time(), self.cache.beta)
            if state is Freshness.FRESH:
                if fstats is not None:
                    fstats.hits += 1
                return entry
            if state is not Freshness.EXPIRED:
                self._serve_and_refresh(fkey, loader, policy, tags, state, fstats)
                return entry
        if fstats is not None:
            fstats.misses += 1
        return await self.load(fkey, loader, policy, tags, stale=entry, fstats=fstats)

    async def load(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        stale: Entry | None = None,
        fstats: FunctionStats | None = None,
    ) -> Entry:
        """Run ``loader`` once per key in this process however many callers wait for it."""
        task = self._inflight.get(fkey)
        if task is None:
            task = asyncio.ensure_future(self._run_loader(fkey, loader, policy, tags, fstats))
            self._inflight[fkey] = task
            task.add_done_callback(lambda _t: self._inflight.pop(fkey, None))
        else:
            self.cache.counters.coalesced += 1
        try:
            return await asyncio.shield(task)
        except Exception as exc:
            if stale is not None and not stale.is_gone(self.cache.clock.time()):
                self.cache.counters.stale_served += 1
                self.cache.counters.stale_if_error += 1
                if fstats is not None:
                    fstats.stale_served += 1
                _send(signals.stale_served, self.cache, key=fkey, reason="error")
                log.warning("stratacache: serving stale %r, the loader failed: %r", fkey, exc)
                return stale
            raise

    async def _run_loader(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None,
    ) -> Entry:
        leases = await self.cache.tiers.leases(fkey, tags)
        started = time.perf_counter()
        try:
            value = loader()
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            self.cache.counters.load_errors += 1
            if fstats is not None:
                fstats.load_errors += 1
            _send(signals.load_failed, self.cache, key=fkey, error=exc)
            raise
        cost = time.perf_counter() - started
        self.cache.counters.loads += 1
        if fstats is not None:
            fstats.loads += 1
        _send(signals.loaded, self.cache, key=fkey, duration=cost)
        value_bytes = self.cache.codec.dumps_value(value)
        entry = policy.make(value, self.cache.clock.time(), tags, cost, value_bytes)
        if value is None and not policy.cache_none:
            return entry
        if not await self.cache.tiers.write(fkey, entry, leases, self.cache.clock.time()):
            self.cache.counters.refused_sets += 1
            _send(signals.refused_set, self.cache, key=fkey)
        return entry

    def _serve_and_refresh(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        state: Freshness,
        fstats: FunctionStats | None,
    ) -> None:
        if state is Freshness.EARLY:
            self.cache.counters.early_refreshes += 1
            if fstats is not None:
                fstats.early_refreshes += 1
            _send(signals.early_refresh, self.cache, key=fkey)
        else:
            self.cache.counters.stale_served += 1
            if fstats is not None:
                fstats.stale_served += 1
            _send(signals.stale_served, self.cache, key=fkey, reason="revalidate")
        if fstats is not None:
            fstats.hits += 1
        self.refresh_in_background(fkey, loader, policy, tags, fstats)

    def refresh_in_background(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None = None,
    ) -> None:
        """Reload ``fkey`` in a background task (at most one per key at a time)."""
        if fkey in self._refreshing or fkey in self._inflight:
            return
        self._refreshing.add(fkey)
        self.cache.counters.background_refreshes += 1

        async def refresh() -> None:
            try:
                await self.load(fkey, loader, policy, tags, fstats=fstats)
            except Exception as exc:  # the stale value stays; the error is counted and logged
                log.warning("stratacache: background refresh of %r failed: %r", fkey, exc)
            finally:
                self._refreshing.discard(fkey)

        self.spawn(refresh())

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, keeping a reference until it ends; ``close`` cancels it."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task
