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
from . import signals, sync_lock
from .bus import Invalidation
from .lock import SyncFleetLock
from .policy import UNSET, EntryPolicy, Freshness, cap, classify
from .readthrough import matches
from .signals import send
from .stack import TierSlot, _newer
from .stats import FunctionStats

if TYPE_CHECKING:
    from .cache import Cache

T = TypeVar("T")
log = logging.getLogger("stratacache")
_OPERATIONS = (
    "get",
    "get_many",
    "lease",
    "set",
    "set_many",
    "delete_many",
    "delete_prefix",
    "invalidate_tags",
    "clear",
)
_SYNC_NAMES = {name: name + "_sync" for name in _OPERATIONS}


class Portal:
    """An event loop on a daemon thread, for running coroutines from sync code."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the portal loop and wait for its result."""
        if self._loop is not None and threading.current_thread() is self._thread:
            coro.close()
            raise ConfigError(
                "cache.sync was called from the cache's own event-loop thread (e.g. a signal "
                "receiver or audit hook); use the async API there"
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=loop.run_forever, name="stratacache-portal", daemon=True
                )
                self._thread.start()
                self._loop = loop
            return self._loop

    def stop(self) -> None:
        """Stop the loop and its thread (a later ``run`` starts a new one)."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=5)
            loop.close()


class SyncCache:
    """Blocking twin of ``Cache``'s public API (reach it as ``cache.sync``)."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.stack = cache.tiers
        self.portal = Portal()
        self._inflight: dict[str, concurrent.futures.Future[Entry]] = {}
        self._inflight_tags: dict[str, tuple[str, ...]] = {}
        self._inflight_lock = threading.Lock()
        self._refresher: concurrent.futures.ThreadPoolExecutor | None = None
        self._refreshing: set[str] = set()

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

    def __enter__(self) -> SyncCache:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tier access -----------------------------------------------------------------------------
    def _call(self, slot: TierSlot, operation: str, fallback: Any, *args: Any) -> Any:
        """Call ``operation`` on a tier (its ``_sync`` method, else the async one via the portal);
        any error is counted and gives ``fallback``."""
        tier: Any = slot.tier
        try:
            if slot.sync:
                result = getattr(tier, _SYNC_NAMES[operation])(*args)
            else:
                result = self.portal.run(getattr(tier, operation)(*args))
        except Exception as exc:
            self.stack.failed(slot, operation, exc)
            return fallback
        slot.breaker.success()
        return result

    def _read(
        self, fkey: str, tags: Sequence[str] | None = None, newer_than: float | None = None
    ) -> Entry | None:
        """``TierStack.read`` with blocking calls: every tier above is leased before a lower read."""
        now = self.cache.clock.time()
        leases: dict[int, Any] = {}
        visited: list[int] = []
        for index, slot in enumerate(self.stack.slots):
            if not self.stack.usable(slot):
                continue
            for upper in visited:
                if upper not in leases:
                    leases[upper] = self._call(
                        self.stack.slots[upper], "lease", None, fkey, tags or ()
                    )
            entry: Entry | None = self._call(slot, "get", None, fkey, tags)
            if entry is None or entry.is_gone(now) or not _newer(entry, newer_than, now):
                slot.stats.misses += 1
                visited.append(index)
                continue
            slot.stats.hits += 1
            for upper in visited:
                above = self.stack.slots[upper]
                copy = cap(entry, above.tier.ttl, now, above.local)
                self._call(above, "set", False, fkey, copy, leases.get(upper))
            return entry
        return None

    def _write(
        self, fkey: str, entry: Entry, leases: list[Any] | None, overwrite: bool = False
    ) -> bool:
        now = self.cache.clock.time()
        for index in range(len(self.stack.slots) - 1, -1, -1):
            slot = self.stack.slots[index]
            if not self.stack.writable(slot, overwrite):
                continue
            lease = leases[index] if leases else None
            if not self._call(
                slot, "set", True, fkey, cap(entry, slot.tier.ttl, now, slot.local), lease
            ):
                return False
            slot.stats.sets += 1
        return True

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
        self.start()
        wanted = {self.cache.full_key(k): k for k in keys}
        now = self.cache.clock.time()
        found: dict[str, Entry] = {}
        missing = list(wanted)
        leases: dict[int, dict[str, Any]] = {}
        for index, slot in enumerate(self.stack.slots):
            if not missing:
                break
            if not self.stack.usable(slot):
                continue
            if slot.local:  # lease before reading below, as TierStack.read_many does
                leases[index] = {k: self._call(slot, "lease", None, k, ()) for k in missing}
            got = self._call(slot, "get_many", {}, missing)
            live = {k: e for k, e in got.items() if not e.is_gone(now)}
            slot.stats.hits += len(live)
            slot.stats.misses += len(missing) - len(live)
            for upper, above in enumerate(self.stack.slots[:index]):
                if not live or not self.stack.usable(above):
                    continue
                if above.local:
                    held = leases.get(upper, {})
                    for k, e in live.items():
                        self._call(
                            above, "set", False, k, cap(e, above.tier.ttl, now, True), held.get(k)
                        )
                else:
                    copies = {k: cap(e, above.tier.ttl, now) for k, e in live.items()}
                    self._call(above, "set_many", None, copies)
            found.update(live)
            missing = [k for k in missing if k not in live]
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
    ) -> Any:
        """The cached value of ``key``, else ``loader()``'s (a sync callable), stored.

        ``lock=True`` (or a ``SyncFleetLock``) runs the loader once across the fleet on a miss.
        """
        self.start()
        policy = self.cache.entry_policy(ttl, refresh_after, stale_ttl)
        fleet = self.resolve_lock(lock)
        return self.fetch(self.cache.full_key(key), loader, policy, tuple(tags), None, fleet).value

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
                    self._count_refresh(state, fstats)
                    self.refresh_in_background(fkey, loader, policy, tags, fstats, lock, entry)
                return entry
        if fstats is not None:
            fstats.misses += 1
        return self.load(fkey, loader, policy, tags, entry, fstats, lock)

    def _count_refresh(self, state: Freshness, fstats: FunctionStats | None) -> None:
        counters = self.cache.counters
        if state is Freshness.EARLY:
            counters.early_refreshes += 1
            if fstats is not None:
                fstats.early_refreshes += 1
        else:
            counters.stale_served += 1
            if fstats is not None:
                fstats.stale_served += 1

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
                self.cache.counters.stale_served += 1
                self.cache.counters.stale_if_error += 1
                if fstats is not None:
                    fstats.stale_served += 1
                log.warning("stratacache: serving stale %r, the loader failed: %r", fkey, exc)
                return stale
            raise

    def _run_loader(
        self,
        fkey: str,
        loader: Callable[[], Any],
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None,
    ) -> Entry:
        cache = self.cache
        leases = [
            self._call(s, "lease", None, fkey, tags) if self.stack.usable(s) else None
            for s in self.stack.slots
        ]
        started = time.perf_counter()
        try:
            value = loader()
            if inspect.isawaitable(value):
                value = self.portal.run(_await(value))
        except Exception as exc:
            cache.counters.load_errors += 1
            if fstats is not None:
                fstats.load_errors += 1
            send(signals.load_failed, cache, key=fkey, error=exc)
            raise
        cost = time.perf_counter() - started
        cache.counters.loads += 1
        send(signals.loaded, cache, key=fkey, duration=cost)
        if fstats is not None:
            fstats.loads += 1
        payload = cache.codec.dumps_value(value)
        entry = policy.make(value, cache.clock.time(), tags, cost, payload)
        if (value is not None or policy.cache_none) and not self._write(fkey, entry, leases):
            cache.counters.refused_sets += 1
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
        self._write(fkey, self.cache._new_entry(value, policy, tags), None, overwrite=True)
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
        for slot in reversed(self.stack.slots):
            if self.stack.writable(slot, True):
                capped = {k: cap(e, slot.tier.ttl, now, slot.local) for k, e in entries.items()}
                self._call(slot, "set_many", None, capped)
                slot.stats.sets += len(entries)
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
        # Open breakers are not honoured: see TierStack.invalidate.
        for slot in reversed(self.stack.slots):
            if message.keys:
                self._call(slot, "delete_many", 0, list(message.keys))
                slot.stats.deletes += len(message.keys)
            if message.tags:
                self._call(slot, "invalidate_tags", None, list(message.tags))
            for fprefix in message.prefixes:
                self._call(slot, "delete_prefix", 0, fprefix)
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
        if self.cache.bus is not None:
            self._on_home_loop(self.cache._publish(message))

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


async def _await(awaitable: Any) -> Any:
    return await awaitable
