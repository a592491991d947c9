"""``Cache``: the async engine over an ordered stack of tiers.

This is the engine core: the public ``stratacache.Cache`` (``stratacache.client``)
subclasses it and adds the front doors (``cached``, ``warm``, ``invalidate_on``,
``from_url``/``from_env``/``from_dict``); front doors that take a cache accept this class.

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
import functools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from ..core.clock import Clock, SystemClock
from ..core.codec import EntryCodec
from ..core.durations import check_duration, check_fraction, check_optional
from ..core.entry import Entry
from ..core.envelope import Envelope
from ..core.errors import CacheKeyError, ConfigError, StratacacheError, TierError
from ..core.fleet import FleetLock, GenerationStore, Invalidation, InvalidationBus
from ..core.keys import MAX_KEY_LENGTH, check_text
from ..core.loops import PerLoop, on_fork
from ..core.sentinel import MISS, Unset
from ..core.serializer import Serializer
from ..core.tier import Tier
from . import signals
from .accounting import Recorder
from .defaults import AUTO, AutoType, default_bus, default_lock
from .degradation import STALENESS_BOUND
from .entries import Entries, check_plugins, check_tags
from .invalidation import APPLY, Flow, Invalidator, TagExpander
from .keyspace import KeySpace
from .loading import Loads
from .plans import live_values
from .policy import UNSET, EntryPolicy, store_predicate
from .primitives import AsyncPrimitives
from .readthrough import ReadThrough
from .replay import Replay
from .runtime import CacheRuntime, drop, new_origin
from .stack import TierStack
from .stats import CacheStats, FunctionStats

log = logging.getLogger("stratacache")
T = TypeVar("T")
#: the largest XFetch weight accepted (beyond it every read would refresh early)
MAX_BETA = 1000.0
Loader = Callable[[], Any]


class Cache(CacheRuntime, AsyncPrimitives):
    """A multi-level cache. See the module docstring for the read and write order.

    Args:
        tiers: storage levels, fastest first (e.g. ``[MemoryTier(), RedisTier(...)]``).
        namespace: prefix of every key; ``clear()`` removes only this namespace.
        default_ttl: seconds an entry lives when a call gives no ``ttl`` (None: forever).
        refresh_after: default soft TTL: past it, readers get the value and trigger a refresh.
        stale_ttl: default seconds an entry is kept past its TTL to serve when the loader fails
            (0 or None: off).
        jitter: stretch each TTL by a random factor up to ``1 + jitter``, ``0 <= jitter <= 1``.
        early_refresh_beta: XFetch weight, 0 to 1000; 0 turns probabilistic early refresh off.
        serializer: value serializer (msgpack with extension types by default).
        envelopes: byte transformations around stored entries (compression, signing, encryption).
        clock: time source for entry deadlines (inject ``ManualClock`` in tests).
        bus: invalidation bus keeping other processes' local tiers coherent. By default a
            local tier above a shared Redis tier gets a ``RedisBus`` on that Redis;
            ``bus=True`` asks for that default explicitly (a ``ConfigError`` without a shared
            Redis tier); ``bus=False`` turns it off, and then other processes' invalidations
            reach this process's local tier only when its copy expires (its TTL is the bound).
        lock: fleet-wide recompute lock used by ``lock=True`` calls. By default a
            ``RedisLock`` on the cache's shared Redis tier (``lock=True`` here asks for it
            explicitly: a ``ConfigError`` without a shared Redis tier); ``False``: none
            (``lock=True`` on a call is then a ``ConfigError`` where it is written).
        cache_none: whether a loader's ``None`` result is cached.
        breaker_threshold / breaker_reset: circuit breaker per tier: consecutive failures that
            open it; while open a background probe (every ~0.25 s, jittered) closes it as soon
            as the tier answers. ``breaker_reset``: seconds before a caller's call goes through
            instead, for tiers that cannot be probed in the background (async-only ones).
        staleness_bound: seconds a local entry may still be served while the invalidation bus
            is down (default 1 s): entries older than that are misses until the bus is back.
            0: serve nothing from local tiers while the bus is down.
        tag_rules: expands the tags of every invalidation (e.g. ``stratacache.events.TagRules``:
            a callable from a tuple of tags to the tuple of tags they imply).

    Durations here and in every call are checked by ``core.durations`` (``ConfigError``).
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
        bus: InvalidationBus | bool | AutoType | None = AUTO,
        cache_none: bool = True,
        max_key_length: int = MAX_KEY_LENGTH,
        breaker_threshold: int = 5,
        breaker_reset: float = 5.0,
        staleness_bound: float = STALENESS_BOUND,
        lock: FleetLock | bool | AutoType | None = AUTO,
        tag_rules: TagExpander | None = None,
    ) -> None:
        if not tiers:
            raise ConfigError("a Cache needs at least one tier, e.g. tiers=[MemoryTier()]")
        if not isinstance(namespace, str) or not namespace or ":" in namespace:
            raise ConfigError(
                f"namespace must be a non-empty string without ':', not {namespace!r}"
            )
        try:  # a namespace is configuration: refused where the cache is built
            check_text(namespace, "a namespace")
        except CacheKeyError as exc:
            raise ConfigError(str(exc)) from None
        if tag_rules is not None and not callable(tag_rules):
            raise ConfigError(f"tag_rules must be callable (e.g. TagRules()), not {tag_rules!r}")
        beta = check_fraction("early_refresh_beta", early_refresh_beta, maximum=MAX_BETA)
        breaker_reset = check_duration("breaker_reset", breaker_reset)
        #: seconds a local entry may be served while the bus is down (``engine.degradation``)
        self.staleness_bound = check_duration("staleness_bound", staleness_bound, zero_ok=True)
        self.namespace = namespace
        self.keys = KeySpace(namespace, max_key_length)
        self.clock: Clock = clock or SystemClock()
        check_plugins(serializer, envelopes, clock)
        self.codec = EntryCodec(serializer, envelopes)
        self.codec.limit_to(tiers)  # too big for a tier: SerializationError at set, nothing written
        policy = EntryPolicy(
            check_optional("default_ttl", default_ttl), refresh_after, stale_ttl, jitter, cache_none
        )
        self.entries = Entries(policy, self.codec, self.clock)
        self.beta = beta
        self.counters = CacheStats()
        self.functions: dict[str, FunctionStats] = {}
        self.rec = Recorder(self.counters, self)
        self.bus = default_bus(tiers, bus)
        self.tiers = TierStack(
            tiers, breaker_threshold, breaker_reset, self._on_tier_error, self, beta
        )
        self.tiers.clock = self.clock
        for slot in self.tiers.slots:
            if slot.local and hasattr(slot.tier, "on_evict"):
                slot.tier.on_evict = functools.partial(self._on_evict, slot.name)
        self.loads = Loads(self.rec, self.clock, self.codec, beta, self.tiers.top)
        self.loads.lock = default_lock(tiers, lock)
        self.readthrough = ReadThrough(self.loads, self.tiers)
        #: invalidations waiting for Redis, replayed in order when it is back
        self.replay = Replay(self.tiers, self.bus, self.readthrough.spawn, lambda: self._loop)
        self.tiers.replay = self.replay
        self.invalidator = Invalidator(
            self.keys, self.tiers, self.rec, self.clock, self.bus, self.replay,
            self.staleness_bound, tag_rules,
        )  # fmt: skip
        self.invalidator.origin = new_origin()
        self.invalidator.detachers.append(self.readthrough.detach)
        self.readthrough.announce = self._announce
        self.replay.on_generation = self.invalidator.set_generation
        self.replay.origin = lambda: self.invalidator.origin
        self._started = False
        self._ran = False  # started at least once (a restart must not trust old local copies)
        #: the loop of the last operation; a change detaches in-flight loads of the old one
        self._loop: asyncio.AbstractEventLoop | None = None
        #: plain callbacks run by ``close`` (front doors stop their threads with these)
        self.closers: list[Callable[[], None]] = []
        self._start_locks: PerLoop[asyncio.Lock] = PerLoop(asyncio.Lock, drop)
        self._sync = None
        on_fork(self)

    # -- reads -----------------------------------------------------------------------------------
    async def get(self, key: str, default: Any = None, *, tags: Sequence[str] | None = None) -> Any:
        """The cached value of ``key`` (expired entries excluded), or ``default``.

        ``tags``: the tags the entry was written with, if known; lets a remote tier check
        them in the same round trip as the value (otherwise a tagged entry costs two).
        """
        entry = await self.get_entry(key, tags=tags)
        return default if entry is None else entry.value

    async def get_entry(self, key: str, *, tags: Sequence[str] | None = None) -> Entry | None:
        """The live ``Entry`` of ``key`` with its metadata, or None."""
        if not self._started:  # the tiers keep their own per-loop clients: no loop check here
            await self.start()
        fkey = self.keys.full_key(key)
        entry = await self.tiers.read(fkey, self.clock.time(), tags)
        if entry is None or entry.is_expired(self.clock.time()):
            self.rec.signal(signals.miss, key=key)
            return None
        return entry

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """``{key: value}`` for the keys that are cached; one round trip per tier."""
        if isinstance(keys, str):
            raise ConfigError("keys must be a list of strings, not a single string")
        await self.start()
        wanted = self.keys.full_keys(keys)
        found = await self.tiers.read_many(list(wanted), self.clock.time())
        return live_values(wanted, found, self.clock.time())

    async def get_or_set(
        self,
        key: str,
        loader: Loader,
        *,
        ttl: float | Unset | None = UNSET,
        tags: Sequence[str] = (),
        refresh_after: float | Unset | None = UNSET,
        stale_ttl: float | Unset | None = UNSET,
        lock: FleetLock | bool | None = None,
        condition: Callable[[Any], bool] | None = None,
        unless: Callable[[Any], bool] | None = None,
    ) -> Any:
        """The cached value of ``key``, else ``loader()``'s result (stored; sync or async loader).

        ``lock=True`` (or a ``FleetLock``) runs the loader once across the fleet on a miss.
        ``condition``/``unless``: predicates on the loaded value: store it only when
        ``condition(value)`` is true and ``unless(value)`` is false (it is returned either way).
        """
        await self.start()
        store_if = store_predicate(condition, unless)
        policy = self.entries.entry_policy(ttl, refresh_after, stale_ttl, store_if=store_if)
        fleet = self.loads.resolve_lock(lock)
        fkey = self.keys.full_key(key)
        entry = await self.readthrough.fetch(fkey, loader, policy, check_tags(tags), None, fleet)
        return entry.value

    # -- writes ----------------------------------------------------------------------------------
    async def set(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | Unset | None = UNSET,
        tags: Sequence[str] = (),
        refresh_after: float | Unset | None = UNSET,
        stale_ttl: float | Unset | None = UNSET,
    ) -> None:
        """Store ``value`` under ``key`` in every tier (nothing is written if it cannot encode)."""
        await self.start()
        fkey = self.keys.full_key(key)
        entries = self.entries
        entry = entries.new_entry(value, entries.entry_policy(ttl, refresh_after, stale_ttl), tags)
        errors_before = self.tiers.shared_errors()
        await self.tiers.write(fkey, entry, None, self.clock.time(), overwrite=True)
        self.invalidator.settle_write((fkey,), errors_before)
        self.rec.signal(signals.set_, key=key, tags=entry.tags)
        await self.invalidator.publish(self.invalidator.overwrite((fkey,)))

    async def set_many(
        self,
        items: Mapping[str, Any],
        *,
        ttl: float | Unset | None = UNSET,
        tags: Sequence[str] = (),
        loaded: bool = False,
    ) -> None:
        """Store several values; one round trip per tier. All are checked before any is written.

        ``loaded=True``: the values were just loaded for a miss (the HTTP middleware stores a
        response so): a shared tier whose circuit breaker is open is passed over, as the
        write of a ``get_or_set`` load passes over it, rather than waited on. By default an
        explicit write reaches every shared tier even then, so that an older value there
        cannot come back when it recovers.
        """
        await self.start()
        policy = self.entries.entry_policy(ttl)
        entries = {
            self.keys.full_key(k): self.entries.new_entry(v, policy, tags) for k, v in items.items()
        }
        errors_before = self.tiers.shared_errors()
        await self.tiers.write_many(entries, self.clock.time(), overwrite=not loaded)
        self.invalidator.settle_write(tuple(entries), errors_before)
        for key, entry in zip(items, entries.values(), strict=True):
            self.rec.signal(signals.set_, key=key, tags=entry.tags)
        await self.invalidator.publish(self.invalidator.overwrite(tuple(entries)))

    # -- invalidation (decisions in engine.invalidation) ---------------------------------------
    async def delete(self, key: str) -> None:
        """Remove ``key`` from every tier (and from other processes' local tiers)."""
        await self.invalidate(keys=[key])

    async def invalidate(
        self,
        keys: Iterable[str] | None = (),
        tags: Iterable[str] | None = (),
        prefix: str | Iterable[str] | None = None,
        *,
        reason: str | None = None,
        actor: str | None = None,
    ) -> None:
        """Outdate keys, tagged entries (and the tags they imply) and key prefixes everywhere.

        When this returns, no tier of this process serves the old values and the bus
        message telling other processes to drop their local copies has been sent.
        ``keys``, ``tags`` and ``prefix`` may each be None (not given); a single string
        where a list belongs is a ``ConfigError``. ``reason`` and ``actor`` go to the
        ``invalidated`` signal and the audit hooks.
        """
        await self.start()
        message = self.invalidator.message(keys, tags, prefix, reason, actor)
        await self._drive(self.invalidator.flow(message))

    async def clear(self, *, reason: str | None = None, actor: str | None = None) -> None:
        """Remove every entry of this namespace from every tier (cost grows with the entries)."""
        await self.start()
        await self._drive(self.invalidator.flow(self.invalidator.clear_message(reason, actor)))

    async def flush_namespace(self, *, reason: str | None = None, actor: str | None = None) -> int:
        """Outdate every entry of the namespace in O(1) by moving to a new generation.

        Needs a bus that keeps the generation (``RedisBus``) when a tier is shared;
        without one it falls back to ``clear()``. Returns the new generation.

        Raises:
            TierError: the bus could not store the new generation (Redis down): nothing
                was flushed, in this process or any other.
        """
        await self.start()
        store = self.bus if isinstance(self.bus, GenerationStore) else None
        if store is None and any(not slot.local for slot in self.tiers.slots):
            # Other processes could not learn a private generation: remove the entries instead.
            log.info("stratacache: flush_namespace without a generation-keeping bus clears tiers")
            await self.clear(reason=reason, actor=actor)
            return self.keys.generation
        generation = await _bumped(store) if store else self.keys.generation + 1
        await self._drive(self.invalidator.flushed(generation, reason, actor))
        return generation

    async def _announce(self, fkey: str) -> None:
        """Tell the other processes that ``fkey`` was overwritten (a refresh's value)."""
        await self.invalidator.publish(self.invalidator.overwrite((fkey,)))

    async def _drive(self, flow: Flow) -> None:
        for step, message in flow:
            if step is APPLY:
                await self.tiers.invalidate(message, local_only=False)
            else:
                await self.invalidator.publish(message)

    @property
    def audit_hooks(self) -> list[Callable[[Invalidation], None]]:
        """Callables receiving every invalidation, local and remote (see ``events.audit``)."""
        return self.invalidator.audit_hooks

    @property
    def tag_rules(self) -> TagExpander | None:
        """The tag expander of every invalidation (``Cache(tag_rules=...)``), or None."""
        return self.invalidator.tag_expander

    @tag_rules.setter
    def tag_rules(self, rules: TagExpander | None) -> None:
        self.invalidator.tag_expander = rules


async def _bumped(store: GenerationStore) -> int:
    """The new generation ``store`` keeps; its driver's failure becomes a ``TierError``."""
    try:
        return await store.bump_generation()
    except StratacacheError:
        raise
    except Exception as exc:  # the store's driver error (redis-py's, …) never leaks
        raise TierError("bus", "flush_namespace", exc) from exc


__all__ = ["MISS", "Cache"]
