"""``SyncCache``: the same cache for synchronous code (``cache.sync``).

Tiers that offer the ``SyncTier`` methods (memory, Redis through its own
blocking client, SQL) are called directly in the caller's thread: no
event-loop hop. Anything async-only (an aiocache backend, the bus) runs on a
private event-loop thread (the *portal*). Every decision is the async
client's: the tier paths are ``engine.plans``, read-through is
``engine.loading``, invalidation is ``Invalidator.flow``; this module only
supplies blocking I/O, so both clients send the same counters, signals and
audit records.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, Protocol

from ..core.clock import Clock
from ..core.entry import Entry
from ..core.errors import ConfigError
from ..core.fleet import Invalidation, InvalidationBus, SyncFleetLock
from ..core.portal import Portal
from ..core.sentinel import Unset
from . import signals
from .accounting import Recorder
from .entries import Entries, check_tags
from .invalidation import APPLY, Flow, Invalidator
from .keyspace import KeySpace
from .loading import Loads
from .plans import live_values
from .policy import UNSET, EntryPolicy, store_predicate
from .primitives import SyncPrimitives
from .stack import TierStack
from .stats import FunctionStats, StatsReport
from .sync_readthrough import SyncReadThrough
from .sync_stack import SyncStack

log = logging.getLogger("stratacache")


class AsyncTwin(Protocol):
    """What ``SyncCache`` uses of the async ``Cache`` it mirrors: its parts and lifecycle."""

    keys: KeySpace
    entries: Entries
    tiers: TierStack
    loads: Loads
    rec: Recorder
    clock: Clock
    invalidator: Invalidator
    bus: InvalidationBus | None

    @property
    def started(self) -> bool: ...

    @property
    def home_loop(self) -> asyncio.AbstractEventLoop | None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def flush_namespace(
        self, *, reason: str | None = None, actor: str | None = None
    ) -> int: ...

    def stats(self) -> StatsReport: ...

    def spawn(self, coro: Any) -> Any: ...


class SyncCache(SyncPrimitives):
    """Blocking twin of ``Cache``'s public API (reach it as ``cache.sync``)."""

    def __init__(self, cache: AsyncTwin) -> None:
        self.cache = cache
        self.portal = Portal()
        self.io = SyncStack(cache.tiers, self.portal)
        #: read-through (``fetch``/``load``) with blocking I/O
        self.loading = SyncReadThrough(cache.loads, self.io, self.portal)
        self.loading.announce = self._announce

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the cache's tiers (done automatically on first use)."""
        if not self.cache.started:
            self.portal.run(self.cache.start())

    def close(self) -> None:
        """Close the cache and stop background threads."""
        self.loading.close()
        if self.cache.started:
            self._on_home_loop(self.cache.close())
        self.portal.stop()

    def __enter__(self) -> SyncCache:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads -----------------------------------------------------------------------------------
    def get(self, key: str, default: Any = None, *, tags: Sequence[str] | None = None) -> Any:
        """The cached value of ``key``, or ``default`` (``tags``: see ``Cache.get``)."""
        entry = self.get_entry(key, tags=tags)
        return default if entry is None else entry.value

    def get_entry(self, key: str, *, tags: Sequence[str] | None = None) -> Entry | None:
        """The live ``Entry`` of ``key``, or None."""
        self.start()
        cache = self.cache
        entry = self.io.read(cache.keys.full_key(key), cache.clock.time(), tags)
        if entry is None or entry.is_expired(cache.clock.time()):
            cache.rec.signal(signals.miss, key=key)
            return None
        return entry

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """``{key: value}`` for the cached keys; one ``get_many`` per tier."""
        if isinstance(keys, str):
            raise ConfigError("keys must be a list of strings, not a single string")
        self.start()
        wanted = self.cache.keys.full_keys(keys)
        found = self.io.read_many(list(wanted), self.cache.clock.time())
        return live_values(wanted, found, self.cache.clock.time())

    def get_or_set(
        self,
        key: str,
        loader: Callable[[], Any],
        *,
        ttl: float | Unset | None = UNSET,
        tags: Sequence[str] = (),
        refresh_after: float | Unset | None = UNSET,
        stale_ttl: float | Unset | None = UNSET,
        lock: SyncFleetLock | bool | None = None,
        condition: Callable[[Any], bool] | None = None,
        unless: Callable[[Any], bool] | None = None,
    ) -> Any:
        """The cached value of ``key``, else ``loader()``'s (sync or async), stored.

        ``lock=True`` (or a ``SyncFleetLock``) runs the loader once across the fleet on a miss;
        ``condition``/``unless``: see ``Cache.get_or_set``.
        """
        self.start()
        store_if = store_predicate(condition, unless)
        policy = self.cache.entries.entry_policy(ttl, refresh_after, stale_ttl, store_if=store_if)
        fleet = self.loading.resolve_lock(lock)
        fkey = self.cache.keys.full_key(key)
        return self.loading.fetch(fkey, loader, policy, check_tags(tags), None, fleet).value

    # -- extension surface for front doors (see docs/extending.md) ----------------------------
    def resolve_lock(self, lock: Any) -> SyncFleetLock | None:
        """``lock=`` as callers give it (True: the cache's lock) as a blocking lock, or None."""
        return self.loading.resolve_lock(lock)

    def fetch(
        self,
        fkey: str,
        loader: Callable[[], Any],
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None = None,
        lock: SyncFleetLock | None = None,
    ) -> Entry:
        """Read-through on a full key (``Cache.fetch`` for threads)."""
        return self.loading.fetch(fkey, loader, policy, tags, fstats, lock)

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
        forced: bool = False,
    ) -> Entry:
        """Run ``loader`` once per key across this process's threads (``Cache.load``)."""
        return self.loading.load(
            fkey, loader, policy, tags, stale, fstats, lock, previous, forced=forced
        )

    # -- writes and invalidation -----------------------------------------------------------------
    def set(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | Unset | None = UNSET,
        tags: Sequence[str] = (),
        refresh_after: float | Unset | None = UNSET,
        stale_ttl: float | Unset | None = UNSET,
    ) -> None:
        """Store ``value`` in every tier (nothing is written if it cannot encode)."""
        self.start()
        cache = self.cache
        fkey = cache.keys.full_key(key)
        entries = cache.entries
        entry = entries.new_entry(value, entries.entry_policy(ttl, refresh_after, stale_ttl), tags)
        errors_before = cache.tiers.shared_errors()
        self.io.write(fkey, entry, None, cache.clock.time(), overwrite=True)
        cache.invalidator.settle_write((fkey,), errors_before)
        cache.rec.signal(signals.set_, key=key, tags=entry.tags)
        self.publish(cache.invalidator.overwrite((fkey,)))

    def set_many(
        self,
        items: Mapping[str, Any],
        *,
        ttl: float | Unset | None = UNSET,
        tags: Sequence[str] = (),
        loaded: bool = False,
    ) -> None:
        """Store several values; all are checked before any is written (``loaded``: see
        ``Cache.set_many``)."""
        self.start()
        cache = self.cache
        policy = cache.entries.entry_policy(ttl)
        entries = {
            cache.keys.full_key(k): cache.entries.new_entry(v, policy, tags)
            for k, v in items.items()
        }
        errors_before = cache.tiers.shared_errors()
        self.io.write_many(entries, cache.clock.time(), overwrite=not loaded)
        cache.invalidator.settle_write(tuple(entries), errors_before)
        for key, entry in zip(items, entries.values(), strict=True):
            cache.rec.signal(signals.set_, key=key, tags=entry.tags)
        self.publish(cache.invalidator.overwrite(tuple(entries)))

    def delete(self, key: str) -> None:
        """Remove ``key`` everywhere."""
        self.invalidate(keys=[key])

    def invalidate(
        self,
        keys: Iterable[str] | None = (),
        tags: Iterable[str] | None = (),
        prefix: str | Iterable[str] | None = None,
        *,
        reason: str | None = None,
        actor: str | None = None,
    ) -> None:
        """Outdate keys, tags and prefixes in every tier before returning (``Cache.invalidate``)."""
        self.start()
        invalidator = self.cache.invalidator
        self._drive(invalidator.flow(invalidator.message(keys, tags, prefix, reason, actor)))

    def clear(self, *, reason: str | None = None, actor: str | None = None) -> None:
        """Remove every entry of the namespace (``Cache.clear``)."""
        self.start()
        invalidator = self.cache.invalidator
        self._drive(invalidator.flow(invalidator.clear_message(reason, actor)))

    def flush_namespace(self, *, reason: str | None = None, actor: str | None = None) -> int:
        """Outdate the whole namespace in O(1) (see ``Cache.flush_namespace``)."""
        self.start()
        return self.portal.run(self.cache.flush_namespace(reason=reason, actor=actor))

    def stats(self) -> StatsReport:
        """The same counters as ``Cache.stats()``."""
        return self.cache.stats()

    def _drive(self, flow: Flow) -> None:
        for step, message in flow:
            if step is APPLY:
                self.io.invalidate(message)
            else:
                self.publish(message)

    def _announce(self, fkey: str) -> None:
        """Tell the other processes that ``fkey`` was overwritten (a refresh's value)."""
        self.publish(self.cache.invalidator.overwrite((fkey,)))

    def publish(self, message: Invalidation) -> None:
        """Send ``message`` on the bus from this thread (``Invalidator.publish``'s twin)."""
        bus = self.cache.bus
        if bus is None:
            return
        publish_sync = getattr(bus, "publish_sync", None)
        if publish_sync is None:
            self._on_home_loop(self.cache.invalidator.publish(message))
            return
        try:  # a bus that can publish from this thread: no event-loop hop
            publish_sync(message)
        except Exception as exc:
            self.cache.invalidator.publish_failed(message, exc)

    def _on_home_loop(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` on the loop the cache was started on (its async clients live there).

        From a thread of its own, wait for it; from inside that loop (sync code called by
        async code) it cannot be awaited, so it is scheduled to run right after.
        """
        home = self.cache.home_loop
        if home is None or self.portal.owns(home) or not home.is_running():
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


__all__ = ["AsyncTwin", "SyncCache"]
