"""``SyncCache``: the same cache for synchronous code.

Tiers that offer the ``SyncTier`` methods (memory, Redis through its own
blocking client, SQL) are called directly in the caller's thread: no
event-loop hop. Anything async-only (an aiocache backend, the bus) runs on a
private event-loop thread (the *portal*). The freshness policy is the one the
async engine uses (``engine.policy``); only the I/O loops differ.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.entry import Entry
from ..core.errors import ConfigError
from ..core.fleet import Invalidation, SyncFleetLock
from ..core.loops import on_fork
from . import accounting, sync_lock
from .policy import UNSET, EntryPolicy, Freshness, classify, store_predicate
from .portal import Portal, _await
from .primitives import SyncPrimitives, check_tags
from .readthrough import matches
from .stack import TierSlot
from .stats import FunctionStats
from .sync_stack import SyncStack

if TYPE_CHECKING:
    from .cache import Cache

T = TypeVar("T")
log = logging.getLogger("stratacache")


class SyncCache(SyncPrimitives):
    """Blocking twin of ``Cache``'s public API (reach it as ``cache.sync``)."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.stack = cache.tiers
        self.portal = Portal()
        self.io = SyncStack(cache.tiers, self.portal)
        self._inflight: dict[str, concurrent.futures.Future[Entry]] = {}
        self._inflight_tags: dict[str, tuple[str, ...]] = {}
        self._inflight_lock = threading.Lock()
        self._refresher: concurrent.futures.ThreadPoolExecutor | None = None
        self._refreshing: set[str] = set()
        on_fork(self)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the cache's tiers (done automatically on first use)."""
        if not self.cache._started:
            self.portal.run(self.cache.start())

    def close(self) -> None:
        """Close the cache and stop background threads."""
        if self._refresher is not None:
            self._refresher.shutdown(wait=True)
            self._refresher = None
        if self.cache._started:
            self._on_home_loop(self.cache.close())
        self.portal.stop()

    def after_fork(self) -> None:
        """In a forked child: the parent's loads and refresh threads do not exist here."""
        self._inflight_lock = threading.Lock()
        self._inflight.clear()
        self._inflight_tags.clear()
        self._refreshing.clear()
        self._refresher = None

    def __enter__(self) -> SyncCache:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tier access (delegated) ---------------------------------------------------------------
    def _call(self, slot: TierSlot, operation: str, fallback: Any, *args: Any) -> Any:
        return self.io.call(slot, operation, fallback, *args)

    def _read(
        self, fkey: str, tags: Sequence[str] | None = None, newer_than: float | None = None
    ) -> Entry | None:
        return self.io.read(fkey, self.cache.clock.time(), tags, newer_than)

    def _write(
        self, fkey: str, entry: Entry, leases: list[Any] | None, overwrite: bool = False
    ) -> bool:
        return self.io.write(fkey, entry, leases, self.cache.clock.time(), overwrite)

    def detach(self, message: Invalidation) -> None:
        """New callers must not join loads that began before ``message`` (see ReadThrough)."""
        with self._inflight_lock:
            for fkey in [
                k for k in self._inflight if matches(message, k, self._inflight_tags.get(k))
            ]:
                del self._inflight[fkey]
                self._inflight_tags.pop(fkey, None)

    # -- reads -----------------------------------------------------------------------------------
    def get(self, key: str, default: Any = None, *, tags: Sequence[str] | None = None) -> Any:
        """The cached value of ``key``, or ``default`` (``tags``: see ``Cache.get``)."""
        entry = self.get_entry(key, tags=tags)
        return default if entry is None else entry.value

    def get_entry(self, key: str, *, tags: Sequence[str] | None = None) -> Entry | None:
        """The live ``Entry`` of ``key``, or None."""
        self.start()
        entry = self._read(self.cache.full_key(key), tags)
        if entry is None or entry.is_expired(self.cache.clock.time()):
            return None
        return entry

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """``{key: value}`` for the cached keys; one ``get_many`` per tier."""
        if isinstance(keys, str):
            raise ConfigError("keys must be a list of strings, not a single string")
        self.start()
        wanted = {self.cache.full_key(k): k for k in keys}
        now = self.cache.clock.time()
        found = self.io.read_many(list(wanted), now)
        return {wanted[k]: e.value for k, e in found.items() if not e.is_expired(now)}

    def get_or_set(
        self,
        key: str,
        loader: Callable[[], Any],
        *,
        ttl: Any = UNSET,
        tags: Sequence[str] = (),
        refresh_after: Any = UNSET,
        stale_ttl: Any = UNSET,
        lock: Any = None,
        condition: Callable[[Any], bool] | None = None,
        unless: Callable[[Any], bool] | None = None,
    ) -> Any:
        """The cached value of ``key``, else ``loader()``'s (a sync callable), stored.

        ``lock=True`` (or a ``SyncFleetLock``) runs the loader once across the fleet on a miss;
        ``condition``/``unless``: see ``Cache.get_or_set``.
        """
        self.start()
        store_if = store_predicate(condition, unless)
        policy = self.cache.entry_policy(ttl, refresh_after, stale_ttl, store_if=store_if)
        fleet = self.resolve_lock(lock)
        fkey = self.cache.full_key(key)
        return self.fetch(fkey, loader, policy, check_tags(tags), None, fleet).value

    def resolve_lock(self, lock: Any) -> SyncFleetLock | None:
        """``lock=`` as callers give it (True: the cache's lock) as a blocking lock, or None."""
        return sync_lock.resolve(self.cache, lock)

    def fetch(
        self,
        fkey: str,
        loader: Callable[[], Any],
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None = None,
        lock: SyncFleetLock | None = None,
    ) -> Entry:
        """Read-through on a full key with the engine's freshness rules."""
        entry = self._read(fkey, tags)
        if entry is not None:
            state = classify(entry, self.cache.clock.time(), self.cache.beta)
            if state is not Freshness.EXPIRED:
                if fstats is not None:
                    fstats.hits += 1
                if state is not Freshness.FRESH:
                    accounting.refresh_served(self.cache, fkey, fstats, state is Freshness.EARLY)
                    self.refresh_in_background(fkey, loader, policy, tags, fstats, lock, entry)
                return entry
        if fstats is not None:
            fstats.misses += 1
        return self.load(fkey, loader, policy, tags, entry, fstats, lock)

    # -- loading ---------------------------------------------------------------------------------
    def load(
        self,
        fkey: str,
        loader: Callable[[], Any],
        policy: EntryPolicy,
        tags: tuple[str, ...],
        stale: Entry | None = None,
        fstats: FunctionStats | None = None,
        lock: SyncFleetLock | None = None,
        previous: Entry | None = None,
    ) -> Entry:
        """Run ``loader`` once per key across this process's threads.

        With ``lock``, once per key across the fleet (see ``engine.sync_lock``); ``previous``
        is the entry being refreshed, if any.
        """
        with self._inflight_lock:
            future = self._inflight.get(fkey)
            leader = future is None
            if future is None:
                future = concurrent.futures.Future()
                self._inflight[fkey] = future
                self._inflight_tags[fkey] = tags
            else:
                self.cache.counters.coalesced += 1
        if leader:
            try:
                if lock is None:
                    entry = self._run_loader(fkey, loader, policy, tags, fstats)
                else:
                    base = previous if previous is not None else stale
                    entry = sync_lock.run_locked(
                        self, fkey, loader, policy, tags, fstats, lock, base
                    )
                future.set_result(entry)
            except BaseException as exc:
                future.set_exception(exc)
            finally:
                with self._inflight_lock:
                    if self._inflight.get(fkey) is future:  # not detached by an invalidation
                        del self._inflight[fkey]
                        self._inflight_tags.pop(fkey, None)
        try:
            return future.result()
        except Exception as exc:
            if stale is not None and not stale.is_gone(self.cache.clock.time()):
                accounting.stale_if_error(self.cache, fkey, fstats, exc)
                return stale
            raise

    def leases(self, fkey: str, tags: tuple[str, ...]) -> list[Any]:
        """Every usable tier's lease on ``fkey``, taken before a loader runs."""
        return [
            self._call(s, "lease", None, fkey, tags) if self.stack.usable(s) else None
            for s in self.stack.slots
        ]

    def _run_loader(
        self,
        fkey: str,
        loader: Callable[[], Any],
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None,
    ) -> Entry:
        cache = self.cache
        leases = self.leases(fkey, tags)
        started = time.perf_counter()
        try:
            value = loader()
            if inspect.isawaitable(value):
                value = self.portal.run(_await(value))
        except Exception as exc:
            accounting.load_failed(cache, fkey, fstats, exc)
            raise
        cost = time.perf_counter() - started
        accounting.loaded(cache, fkey, fstats, cost)
        payload = cache.codec.dumps_value(value)
        entry = policy.make(value, cache.clock.time(), tags, cost, payload)
        if policy.stores(value) and not self._write(fkey, entry, leases):
            accounting.refused_set(cache, fkey)
        return entry

    def refresh_in_background(
        self,
        fkey: str,
        loader: Callable[[], Any],
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None = None,
        lock: SyncFleetLock | None = None,
        previous: Entry | None = None,
    ) -> None:
        """Reload ``fkey`` on a worker thread, at most one refresh per key at a time."""
        with self._inflight_lock:
            if fkey in self._refreshing or fkey in self._inflight:
                return
            self._refreshing.add(fkey)
            if self._refresher is None:
                self._refresher = concurrent.futures.ThreadPoolExecutor(
                    max_workers=4, thread_name_prefix="stratacache-refresh"
                )
        self.cache.counters.background_refreshes += 1

        def refresh() -> None:
            try:
                self.load(fkey, loader, policy, tags, None, fstats, lock, previous)
            except Exception as exc:
                log.warning("stratacache: background refresh of %r failed: %r", fkey, exc)
            finally:
                with self._inflight_lock:
                    self._refreshing.discard(fkey)

        self._refresher.submit(refresh)

    # -- writes and invalidation -----------------------------------------------------------------
    def set(
        self,
        key: str,
        value: Any,
        *,
        ttl: Any = UNSET,
        tags: Sequence[str] = (),
        refresh_after: Any = UNSET,
        stale_ttl: Any = UNSET,
    ) -> None:
        """Store ``value`` in every tier (nothing is written if it cannot encode)."""
        self.start()
        fkey = self.cache.full_key(key)
        policy = self.cache.entry_policy(ttl, refresh_after, stale_ttl)
        entry = self.cache._new_entry(value, policy, tags)
        errors_before = self.stack.shared_errors()
        self._write(fkey, entry, None, overwrite=True)
        self.cache.settle_write((fkey,), errors_before)
        self._publish(Invalidation(keys=(fkey,), reason="overwrite", origin=self.cache.origin))

    def set_many(
        self, items: Mapping[str, Any], *, ttl: Any = UNSET, tags: Sequence[str] = ()
    ) -> None:
        """Store several values; all are checked before any is written."""
        self.start()
        policy = self.cache.entry_policy(ttl)
        entries = {
            self.cache.full_key(k): self.cache._new_entry(v, policy, tags) for k, v in items.items()
        }
        now = self.cache.clock.time()
        errors_before = self.stack.shared_errors()
        for slot in reversed(self.stack.slots):
            if self.stack.writable(slot, True):
                capped = {k: self.stack.copy_for(slot, e, now) for k, e in entries.items()}
                self._call(slot, "set_many", None, capped)
                slot.stats.sets += len(entries)
        self.cache.settle_write(tuple(entries), errors_before)
        self._publish(
            Invalidation(keys=tuple(entries), reason="overwrite", origin=self.cache.origin)
        )

    def delete(self, key: str) -> None:
        """Remove ``key`` everywhere."""
        self.invalidate(keys=[key])

    def invalidate(
        self,
        keys: Iterable[str] = (),
        tags: Iterable[str] = (),
        prefix: str | Iterable[str] | None = None,
        *,
        reason: str | None = None,
        actor: str | None = None,
    ) -> None:
        """Outdate keys, tags and prefixes in every tier before returning."""
        self.start()
        message = self.cache.invalidation(keys, tags, prefix, reason, actor)
        errors = self.stack.shared_errors()
        # Open breakers are not honoured: see TierStack.invalidate.
        for slot in reversed(self.stack.slots):
            if message.keys:
                self._call(slot, "delete_many", 0, list(message.keys))
                slot.stats.deletes += len(message.keys)
            if message.tags:
                self._call(slot, "invalidate_tags", None, list(message.tags))
            for fprefix in message.prefixes:
                self._call(slot, "delete_prefix", 0, fprefix)
        self.cache.invalidator.settle(message, errors)  # kept for replay if Redis failed
        self.cache.invalidator.detach(message)
        self._publish(message)
        self.cache._announce(message, "local")

    def clear(self) -> None:
        """Remove every entry of the namespace."""
        self.start()
        for slot in reversed(self.stack.slots):
            self._call(slot, "clear", None)
        message = Invalidation(clear=True, origin=self.cache.origin)
        self.cache.invalidator.detach(message)
        self._publish(message)

    def flush_namespace(self, *, reason: str | None = None, actor: str | None = None) -> int:
        """Outdate the whole namespace in O(1) (see ``Cache.flush_namespace``)."""
        self.start()
        return self.portal.run(self.cache.flush_namespace(reason=reason, actor=actor))

    def stats(self) -> dict[str, Any]:
        """The same counters as ``Cache.stats()``."""
        return self.cache.stats()

    def _publish(self, message: Invalidation) -> None:
        bus = self.cache.bus
        if bus is None:
            return
        publish_sync = getattr(bus, "publish_sync", None)
        if publish_sync is None:
            self._on_home_loop(self.cache._publish(message))
            return
        try:  # a bus that can publish from this thread: no event-loop hop
            publish_sync(message)
        except Exception as exc:
            self.cache.invalidator.publish_failures += 1
            log.warning("stratacache: invalidation bus publish failed: %r", exc)
            self.cache.replay.keep(message)

    def _on_home_loop(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` on the loop the cache was started on (its async clients live there).

        From a thread of its own, wait for it; from inside that loop (sync code called by
        async code) it cannot be awaited, so it is scheduled to run right after.
        """
        home = self.cache._loop
        if home is None or home is self.portal._loop or not home.is_running():
            self.portal.run(coro)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is home:
            self.cache.spawn(coro)
        else:
            asyncio.run_coroutine_threadsafe(coro, home).result()
