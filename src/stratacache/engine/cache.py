"""``Cache``: the async engine over an ordered stack of tiers.

A read walks the tiers top-down and stops at the first live entry, writing it
back into the tiers above (each capped by its own TTL). A miss in every tier
runs the loader once per key per process (single-flight). Writes go
bottom-up, so a write refused by the shared tier (its lease was voided by an
invalidation) never reaches the local ones; invalidations also go bottom-up,
so a concurrent reader cannot backfill an upper tier from a lower one that
still holds the old value.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from ..core.clock import Clock, SystemClock
from ..core.codec import EntryCodec
from ..core.entry import Entry
from ..core.envelope import Envelope
from ..core.errors import ConfigError
from ..core.keys import MAX_KEY_LENGTH, validate_key
from ..core.sentinel import MISS
from ..core.serializer import Serializer
from ..core.tier import Tier, TierContext
from . import signals
from .bus import Invalidation, InvalidationBus
from .policy import UNSET, EntryPolicy, Freshness, cap, classify
from .stack import TierStack
from .stats import CacheStats, FunctionStats

log = logging.getLogger("stratacache")
T = TypeVar("T")
Loader = Callable[[], Any]


class Cache:
    """A multi-level cache. See the module docstring for the read and write order.

    Args:
        tiers: storage levels, fastest first (e.g. ``[MemoryTier(), RedisTier(...)]``).
        namespace: prefix of every key; ``clear()`` removes only this namespace.
        default_ttl: seconds an entry lives when a call gives no ``ttl`` (None: forever).
        refresh_after: default soft TTL: past it, readers get the value and trigger a refresh.
        stale_ttl: default seconds an entry is kept past its TTL to serve when the loader fails.
        jitter: stretch each TTL by a random factor up to ``1 + jitter`` (spreads expiry).
        early_refresh_beta: XFetch weight; 0 turns probabilistic early refresh off.
        serializer: value serializer (msgpack with extension types by default).
        envelopes: byte transformations around stored entries (compression, signing, encryption).
        clock: time source for entry deadlines (inject ``ManualClock`` in tests).
        bus: invalidation bus keeping other processes' local tiers coherent.
        cache_none: whether a loader's ``None`` result is cached.
        breaker_threshold / breaker_reset: circuit breaker per tier.
    """

    def __init__(
        self,
        tiers: Sequence[Tier],
        *,
        namespace: str = "default",
        default_ttl: float | None = 300.0,
        refresh_after: float | None = None,
        stale_ttl: float = 0.0,
        jitter: float = 0.0,
        early_refresh_beta: float = 1.0,
        serializer: Serializer | None = None,
        envelopes: Sequence[Envelope] = (),
        clock: Clock | None = None,
        bus: InvalidationBus | None = None,
        cache_none: bool = True,
        max_key_length: int = MAX_KEY_LENGTH,
        breaker_threshold: int = 5,
        breaker_reset: float = 5.0,
    ) -> None:
        if not tiers:
            raise ConfigError("a Cache needs at least one tier, e.g. tiers=[MemoryTier()]")
        if not isinstance(namespace, str) or not namespace or ":" in namespace:
            raise ConfigError(f"namespace must be a non-empty string without ':', not {namespace!r}")
        if early_refresh_beta < 0:
            raise ConfigError("early_refresh_beta must be >= 0")
        self.namespace = namespace
        self.clock: Clock = clock or SystemClock()
        self.codec = EntryCodec(serializer, envelopes)
        self.policy = EntryPolicy(default_ttl, refresh_after, stale_ttl, jitter, cache_none)
        self.beta = early_refresh_beta
        self.cache_none = cache_none
        self.max_key_length = max_key_length
        self.origin = uuid.uuid4().hex
        self.bus = bus
        self.tiers = TierStack(tiers, breaker_threshold, breaker_reset, self._on_tier_error)
        self.counters = CacheStats()
        self.functions: dict[str, FunctionStats] = {}
        self._prefix = namespace + ":"
        self._inflight: dict[str, asyncio.Task[Entry]] = {}
        self._refreshing: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._started = False
        self._start_lock: asyncio.Lock | None = None
        self._sync: Any = None
        self.audit_hooks: list[Callable[[Invalidation], None]] = []

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every tier (and the bus). Called automatically on first use."""
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            context = TierContext(self.namespace, self.codec, self.clock)
            await self.tiers.start(context)
            if self.bus is not None:
                await self.bus.start(
                    self.namespace, self.origin, self._apply_remote, self._on_bus_state
                )
            self._started = True

    async def close(self) -> None:
        """Stop background work and release every connection."""
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self.bus is not None:
            await self.bus.close()
        await self.tiers.close()
        self._started = False

    async def __aenter__(self) -> Cache:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def sync(self) -> Any:
        """The same cache for synchronous code (``cache.sync.get("k")``)."""
        if self._sync is None:
            from .sync import SyncCache

            self._sync = SyncCache(self)
        return self._sync

    # -- keys ------------------------------------------------------------------------------------
    def full_key(self, key: str) -> str:
        """``namespace:key``, after checking that ``key`` is usable."""
        return self._prefix + validate_key(key, self.max_key_length)

    def entry_policy(
        self,
        ttl: Any = UNSET,
        refresh_after: Any = UNSET,
        stale_ttl: Any = UNSET,
        cache_none: bool | None = None,
    ) -> EntryPolicy:
        """The cache's default entry policy with any of its fields overridden."""
        base = self.policy
        if ttl is UNSET and refresh_after is UNSET and stale_ttl is UNSET and cache_none is None:
            return base
        return EntryPolicy(
            base.ttl if ttl is UNSET else ttl,
            base.refresh_after if refresh_after is UNSET else refresh_after,
            base.stale_ttl if stale_ttl is UNSET else stale_ttl,
            base.jitter,
            base.cache_none if cache_none is None else cache_none,
        )

    # -- reads -----------------------------------------------------------------------------------
    async def get(self, key: str, default: Any = None) -> Any:
        """The cached value of ``key`` (expired entries excluded), or ``default``."""
        entry = await self.get_entry(key)
        return default if entry is None else entry.value

    async def get_entry(self, key: str) -> Entry | None:
        """The live ``Entry`` of ``key`` with its metadata, or None."""
        await self.start()
        fkey = self.full_key(key)
        entry = await self.tiers.read(fkey, self.clock.time())
        if entry is None or entry.is_expired(self.clock.time()):
            _send(signals.miss, self, key=key)
            return None
        return entry

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """``{key: value}`` for the keys that are cached; one round trip per tier."""
        await self.start()
        wanted = {self.full_key(k): k for k in keys}
        found = await self.tiers.read_many(list(wanted), self.clock.time())
        now = self.clock.time()
        return {wanted[fk]: e.value for fk, e in found.items() if not e.is_expired(now)}

    async def get_or_set(
        self,
        key: str,
        loader: Loader,
        *,
        ttl: Any = UNSET,
        tags: Sequence[str] = (),
        refresh_after: Any = UNSET,
        stale_ttl: Any = UNSET,
    ) -> Any:
        """The cached value of ``key``, else ``loader()``'s result (stored; sync or async loader)."""
        await self.start()
        policy = self.entry_policy(ttl, refresh_after, stale_ttl)
        entry = await self.fetch(self.full_key(key), loader, policy, tuple(tags))
        return entry.value

    async def fetch(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None = None,
    ) -> Entry:
        """Read-through on a full key: serve, serve-and-refresh, or load (single-flight)."""
        entry = await self.tiers.read(fkey, self.clock.time())
        if entry is not None:
            state = classify(entry, self.clock.time(), self.beta)
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

    # -- loading ---------------------------------------------------------------------------------
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
            self.counters.coalesced += 1
        try:
            return await asyncio.shield(task)
        except Exception as exc:
            if stale is not None and not stale.is_gone(self.clock.time()):
                self.counters.stale_served += 1
                self.counters.stale_if_error += 1
                if fstats is not None:
                    fstats.stale_served += 1
                _send(signals.stale_served, self, key=fkey, reason="error")
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
        leases = await self.tiers.leases(fkey, tags)
        started = time.perf_counter()
        try:
            value = loader()
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            self.counters.load_errors += 1
            if fstats is not None:
                fstats.load_errors += 1
            _send(signals.load_failed, self, key=fkey, error=exc)
            raise
        cost = time.perf_counter() - started
        self.counters.loads += 1
        if fstats is not None:
            fstats.loads += 1
        _send(signals.loaded, self, key=fkey, duration=cost)
        value_bytes = self.codec.dumps_value(value)
        entry = policy.make(value, self.clock.time(), tags, cost, len(value_bytes))
        if value is None and not policy.cache_none:
            return entry
        if not await self.tiers.write(fkey, entry, leases, self.clock.time()):
            self.counters.refused_sets += 1
            _send(signals.refused_set, self, key=fkey)
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
            self.counters.early_refreshes += 1
            if fstats is not None:
                fstats.early_refreshes += 1
            _send(signals.early_refresh, self, key=fkey)
        else:
            self.counters.stale_served += 1
            if fstats is not None:
                fstats.stale_served += 1
            _send(signals.stale_served, self, key=fkey, reason="revalidate")
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
        self.counters.background_refreshes += 1

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

    # -- writes ----------------------------------------------------------------------------------
    async def set(
        self,
        key: str,
        value: Any,
        *,
        ttl: Any = UNSET,
        tags: Sequence[str] = (),
        refresh_after: Any = UNSET,
        stale_ttl: Any = UNSET,
    ) -> None:
        """Store ``value`` under ``key`` in every tier (nothing is written if it cannot encode)."""
        await self.start()
        fkey = self.full_key(key)
        entry = self._new_entry(value, self.entry_policy(ttl, refresh_after, stale_ttl), tags)
        await self.tiers.write(fkey, entry, None, self.clock.time())
        _send(signals.set_, self, key=key, tags=entry.tags)
        await self._publish(Invalidation(keys=(fkey,), reason="overwrite", origin=self.origin))

    async def set_many(
        self, items: Mapping[str, Any], *, ttl: Any = UNSET, tags: Sequence[str] = ()
    ) -> None:
        """Store several values; one round trip per tier. All are checked before any is written."""
        await self.start()
        policy = self.entry_policy(ttl)
        entries = {self.full_key(k): self._new_entry(v, policy, tags) for k, v in items.items()}
        await self.tiers.write_many(entries, self.clock.time())
        await self._publish(
            Invalidation(keys=tuple(entries), reason="overwrite", origin=self.origin)
        )

    def _new_entry(self, value: Any, policy: EntryPolicy, tags: Sequence[str]) -> Entry:
        if isinstance(tags, str):
            raise ConfigError("tags must be a list of strings, not a single string")
        size = len(self.codec.dumps_value(value))  # raises SerializationError before any write
        return policy.make(value, self.clock.time(), tuple(tags), size=size)

    # -- invalidation ----------------------------------------------------------------------------
    async def delete(self, key: str) -> None:
        """Remove ``key`` from every tier (and from other processes' local tiers)."""
        await self.invalidate(keys=[key])

    async def invalidate(
        self,
        keys: Iterable[str] = (),
        tags: Iterable[str] = (),
        prefix: str | Iterable[str] | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        """Outdate keys, tagged entries and key prefixes everywhere before returning."""
        await self.start()
        message = self.invalidation(keys, tags, prefix, reason)
        await self.tiers.invalidate(message, local_only=False)
        await self._publish(message)
        self._announce(message, "local")

    def invalidation(
        self,
        keys: Iterable[str],
        tags: Iterable[str],
        prefix: str | Iterable[str] | None,
        reason: str | None,
    ) -> Invalidation:
        """Check the arguments of ``invalidate`` and build the message (full keys)."""
        if isinstance(keys, str) or isinstance(tags, str):
            raise ConfigError("keys and tags take lists of strings, not a single string")
        prefixes = [prefix] if isinstance(prefix, str) else list(prefix or ())
        self.counters.invalidations += 1
        return Invalidation(
            keys=tuple(self.full_key(k) for k in keys),
            tags=tuple(validate_key(t, self.max_key_length) for t in tags),
            prefixes=tuple(self._prefix + p for p in prefixes),
            reason=reason,
            origin=self.origin,
        )

    async def clear(self) -> None:
        """Remove every entry of this namespace from every tier."""
        await self.start()
        await self.tiers.clear(local_only=False)
        await self._publish(Invalidation(clear=True, origin=self.origin))
        _send(signals.cleared, self, origin="local")

    async def _publish(self, message: Invalidation) -> None:
        if self.bus is not None:
            try:
                await self.bus.publish(message)
            except Exception as exc:
                log.warning("stratacache: invalidation bus publish failed: %r", exc)

    def _announce(self, message: Invalidation, origin: str) -> None:
        _send(
            signals.invalidated,
            self,
            keys=message.keys,
            tags=message.tags,
            prefixes=message.prefixes,
            reason=message.reason,
            origin=origin,
        )
        for hook in self.audit_hooks:
            try:
                hook(message)
            except Exception as exc:
                log.warning("stratacache: audit hook failed: %r", exc)

    def _apply_remote(self, message: Invalidation) -> None:
        """Apply another process's invalidation to this process's local tiers."""
        if message.origin == self.origin:
            return
        if message.clear:
            self.tiers.clear_local_now()
            _send(signals.cleared, self, origin="remote")
            return
        self.tiers.invalidate_local_now(message)
        if message.reason != "overwrite":
            self._announce(message, "remote")

    def _on_bus_state(self, connected: bool) -> None:
        """Distrust local tiers while the bus is down; they may have missed messages."""
        self.tiers.clear_local_now()
        self.tiers.local_trusted = connected
        _send(signals.bus_state, self, connected=connected)

    def _on_tier_error(self, tier: str, operation: str, exc: BaseException) -> None:
        log.warning("stratacache: tier %r failed during %s: %r", tier, operation, exc)
        _send(signals.tier_error, self, tier=tier, operation=operation, error=exc)

    # -- front doors -------------------------------------------------------------------------------
    #: set by ``stratacache.decorators`` on import, so the engine never imports a front door
    decorator_factory: Callable[..., Any] | None = None

    def cached(self, **options: Any) -> Any:
        """Decorate a sync or async function to cache its results (see ``stratacache.decorators``)."""
        factory = type(self).decorator_factory
        if factory is None:
            raise ConfigError("import stratacache (or stratacache.decorators) to use cache.cached")
        return factory(self, **options)

    # -- stats -----------------------------------------------------------------------------------
    def register_function(self, name: str) -> FunctionStats:
        """Counters for one decorated function (shared by functions of the same name)."""
        return self.functions.setdefault(name, FunctionStats())

    def stats(self) -> dict[str, Any]:
        """Counters per tier, per decorated function and for the engine, with hit rates."""
        fast_hits = sum(f.fast_hits for f in self.functions.values())
        return {
            "namespace": self.namespace,
            "tiers": self.tiers.stats(fast_hits),
            "functions": {name: f.as_dict() for name, f in self.functions.items()},
            "engine": self.counters.as_dict(),
        }


def _send(signal: Any, sender: Any, **payload: Any) -> None:
    """Send a blinker signal only when someone listens (free otherwise)."""
    if signal.receivers:
        signal.send(sender, **payload)


__all__ = ["MISS", "Cache", "cap"]
