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
import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from ..core.clock import Clock, SystemClock
from ..core.codec import EntryCodec
from ..core.durations import check_duration, check_fraction, check_optional
from ..core.entry import Entry
from ..core.envelope import Envelope
from ..core.errors import ConfigError
from ..core.fleet import FleetLock, HotSet, Invalidation, InvalidationBus
from ..core.keys import MAX_KEY_LENGTH, validate_key
from ..core.loops import PerLoop, on_fork
from ..core.sentinel import MISS
from ..core.serializer import Serializer
from ..core.tier import Tier, TierContext
from . import hotkeys, signals
from .defaults import AUTO, AutoType, default_bus, default_lock
from .degradation import STALENESS_BOUND
from .invalidation import Invalidator, check_relative
from .policy import UNSET, EntryPolicy, store_predicate
from .primitives import AsyncPrimitives, check_tags
from .readthrough import ReadThrough
from .replay import Replay
from .signals import send as _send
from .stack import TierStack
from .stats import CacheStats, FunctionStats

log = logging.getLogger("stratacache")
T = TypeVar("T")
#: the largest XFetch weight accepted (beyond it every read would refresh early)
MAX_BETA = 1000.0
#: seconds ``close()`` gives invalidations still waiting for Redis to get through
REPLAY_AT_CLOSE = 2.0
Loader = Callable[[], Any]


class Cache(AsyncPrimitives):
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
            ``bus=False`` turns it off, and then other processes' invalidations reach this
            process's local tier only when its copy expires (its TTL is the staleness bound).
        lock: fleet-wide recompute lock used by ``lock=True`` calls. By default a
            ``RedisLock`` on the cache's shared Redis tier; ``False``: none (``lock=True`` is
            then a ``ConfigError`` where it is written).
        cache_none: whether a loader's ``None`` result is cached.
        breaker_threshold / breaker_reset: circuit breaker per tier: consecutive failures that
            open it; while open a background probe (every ~0.25 s, jittered) closes it as soon
            as the tier answers. ``breaker_reset``: seconds before a caller's call goes through
            instead, for tiers that cannot be probed in the background (async-only ones).
        staleness_bound: seconds a local entry may still be served while the invalidation bus
            is down (default 1 s): entries older than that are misses until the bus is back.
            0: serve nothing from local tiers while the bus is down.

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
    ) -> None:
        if not tiers:
            raise ConfigError("a Cache needs at least one tier, e.g. tiers=[MemoryTier()]")
        if not isinstance(namespace, str) or not namespace or ":" in namespace:
            raise ConfigError(
                f"namespace must be a non-empty string without ':', not {namespace!r}"
            )
        early_refresh_beta = check_fraction(
            "early_refresh_beta", early_refresh_beta, maximum=MAX_BETA
        )
        breaker_reset = check_duration("breaker_reset", breaker_reset)
        #: seconds a local entry may be served while the bus is down (``engine.degradation``)
        self.staleness_bound = check_duration("staleness_bound", staleness_bound, zero_ok=True)
        self.namespace = namespace
        self.clock: Clock = clock or SystemClock()
        _check_plugins(serializer, envelopes, clock)
        self.codec = EntryCodec(serializer, envelopes)
        self.codec.limit_to(tiers)  # too big for a tier: SerializationError at set, nothing written
        self.policy = EntryPolicy(
            check_optional("default_ttl", default_ttl), refresh_after, stale_ttl, jitter, cache_none
        )
        self.beta = early_refresh_beta
        self.max_key_length = max_key_length
        self.origin = uuid.uuid4().hex
        self.bus = default_bus(tiers, bus)
        self.tiers = TierStack(tiers, breaker_threshold, breaker_reset, self._on_tier_error)
        self.tiers.sender = self
        self.tiers.beta = early_refresh_beta
        for slot in self.tiers.slots:
            if slot.local and hasattr(slot.tier, "on_evict"):
                slot.tier.on_evict = functools.partial(self._on_evict, slot.name)
        self.counters = CacheStats()
        self.functions: dict[str, FunctionStats] = {}
        self._prefix = namespace + ":"
        self.readthrough = ReadThrough(self)
        #: read-through on a full key (used by the decorators and front doors)
        self.fetch = self.readthrough.fetch
        #: run a loader once per key in this process and store its result
        self.load = self.readthrough.load
        #: reload a key in the background, at most once at a time
        self.refresh_in_background = self.readthrough.refresh_in_background
        #: run a coroutine in the background until it ends or the cache closes
        self.spawn = self.readthrough.spawn
        self.readthrough.lock = default_lock(tiers, lock)
        self._started = False
        self._ran = False  # started at least once (a restart must not trust old local copies)
        #: the loop of the last operation; a change detaches in-flight loads of the old one
        self._loop: asyncio.AbstractEventLoop | None = None
        #: plain callbacks run by ``close`` (front doors stop their threads with these)
        self.closers: list[Callable[[], None]] = []
        self._start_locks: PerLoop[asyncio.Lock] = PerLoop(asyncio.Lock, _drop)
        self._sync: Any = None
        self.invalidator = Invalidator(self)
        on_fork(self)
        #: invalidations waiting for Redis, replayed in order when it is back
        self.replay = Replay(self)
        self.tiers.replay = self.replay

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every tier (and the bus). Called automatically on first use.

        A started cache works from any event loop: per-loop clients are built on first use
        in each loop, and the bus reads on a thread of its own. A restart (after ``close``
        or in a child after ``fork``) drops the local tiers first when there is a bus: they
        may hold values outdated by messages sent while nobody was listening.
        """
        loop = asyncio.get_running_loop()
        if self._started and self._loop is loop:
            return
        async with self._start_locks.get():
            if self._started:
                if self._loop is not loop:
                    # loads begun on another loop cannot be awaited from this one
                    self.readthrough.detach(Invalidation(clear=True))
                    self._loop = loop
                return
            context = TierContext(self.namespace, self.codec, self.clock)
            await self.tiers.start(context)
            if self.bus is not None and self._ran:
                self.tiers.local_trusted = False
                self.tiers.clear_local_now()
            self.tiers.local_trusted = True  # a bus that is down now says so in start()
            self.tiers.degraded_bound = None
            if self.bus is not None:
                await self.bus.start(
                    self.namespace, self.origin, self._apply_remote, self._on_bus_state
                )
            self._loop = loop
            self._started = self._ran = True

    async def close(self) -> None:
        """Stop background work and release every connection (from any event loop)."""
        for closer in self.closers:
            closer()
        await self.replay.flush(REPLAY_AT_CLOSE)
        await self.readthrough.close()
        if self.bus is not None:
            await self.bus.close()
        await self.tiers.close()
        self._started = False
        self._loop = None
        if self.bus is not None:
            # nobody hears the bus until a restart: empty the local tiers now, so that
            # nothing (the decorators' memo included) answers from them meanwhile
            self.tiers.clear_local_now()

    def after_fork(self) -> None:
        """In a forked child: start again on next use; drop and distrust local tiers."""
        # a process of its own: with the parent's origin its bus would skip the messages of
        # its siblings (forked workers) as its own
        self.origin = uuid.uuid4().hex
        self._started = False
        self._loop = None
        self._start_locks.after_fork()
        self.readthrough.detach(Invalidation(clear=True))  # the parent's loads, never finishing
        for slot in self.tiers.slots:  # a parent thread may have held a local tier's lock
            reset = getattr(slot.tier, "after_fork", None) if slot.local else None
            if reset is not None:
                reset()
        if self.bus is not None:
            self.tiers.local_trusted = False  # no bus runs in the child until it restarts
            self.tiers.clear_local_now()  # and the memo must not answer from them either

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
        """``namespace:key`` (with the namespace generation once flushed), after checking ``key``."""
        return self._prefix + check_relative(validate_key(key, self.max_key_length))

    def relative_key(self, fkey: str) -> str:
        """The key ``invalidate`` takes for a full key (generation-qualified if it was flushed)."""
        return fkey[len(self.namespace) + 1 :]

    def entry_policy(
        self,
        ttl: Any = UNSET,
        refresh_after: Any = UNSET,
        stale_ttl: Any = UNSET,
        cache_none: bool | None = None,
        store_if: Callable[[Any], bool] | None = None,
    ) -> EntryPolicy:
        """The cache's default entry policy with any of its fields overridden."""
        base = self.policy
        if (
            ttl is UNSET
            and refresh_after is UNSET
            and stale_ttl is UNSET
            and cache_none is None
            and store_if is None
        ):
            return base
        return EntryPolicy(
            base.ttl if ttl is UNSET else ttl,
            base.refresh_after if refresh_after is UNSET else refresh_after,
            base.stale_ttl if stale_ttl is UNSET else stale_ttl,
            base.jitter,
            base.cache_none if cache_none is None else cache_none,
            store_if,
        )

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
        fkey = self.full_key(key)
        entry = await self.tiers.read(fkey, self.clock.time(), tags)
        if entry is None or entry.is_expired(self.clock.time()):
            _send(signals.miss, self, key=key)
            return None
        return entry

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """``{key: value}`` for the keys that are cached; one round trip per tier."""
        if isinstance(keys, str):
            raise ConfigError("keys must be a list of strings, not a single string")
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
        lock: Any = None,
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
        policy = self.entry_policy(ttl, refresh_after, stale_ttl, store_if=store_if)
        fleet = self.readthrough.resolve_lock(lock)
        entry = await self.fetch(self.full_key(key), loader, policy, check_tags(tags), None, fleet)
        return entry.value

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
        errors_before = self.tiers.shared_errors()
        await self.tiers.write(fkey, entry, None, self.clock.time(), overwrite=True)
        self.settle_write((fkey,), errors_before)
        _send(signals.set_, self, key=key, tags=entry.tags)
        await self._publish(Invalidation(keys=(fkey,), reason="overwrite", origin=self.origin))

    async def set_many(
        self, items: Mapping[str, Any], *, ttl: Any = UNSET, tags: Sequence[str] = ()
    ) -> None:
        """Store several values; one round trip per tier. All are checked before any is written."""
        await self.start()
        policy = self.entry_policy(ttl)
        entries = {self.full_key(k): self._new_entry(v, policy, tags) for k, v in items.items()}
        errors_before = self.tiers.shared_errors()
        await self.tiers.write_many(entries, self.clock.time())
        self.settle_write(tuple(entries), errors_before)
        await self._publish(
            Invalidation(keys=tuple(entries), reason="overwrite", origin=self.origin)
        )

    def settle_write(self, fkeys: tuple[str, ...], errors_before: int) -> None:
        """An overwrite a shared tier refused (full, unreachable) leaves the old value there
        for other processes: keep a deletion of ``fkeys`` for replay (``engine.replay``);
        until it lands, this process serves only its own new copy (local tiers), never the
        shared tiers' older one."""
        if fkeys and self.tiers.shared_errors() > errors_before:
            failed = Invalidation(
                keys=fkeys, reason="write-failed", origin=self.origin, at=time.time()
            )
            self.replay.keep(failed)

    def _new_entry(self, value: Any, policy: EntryPolicy, tags: Sequence[str]) -> Entry:
        tags = check_tags(tags)
        payload = self.codec.dumps_value(value)  # raises SerializationError before any write
        return policy.make(value, self.clock.time(), tags, payload=payload)

    # -- invalidation (logic in engine.invalidation) ------------------------------------------
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
        actor: str | None = None,
    ) -> None:
        """Outdate keys, tagged entries (and the tags they imply) and key prefixes everywhere.

        When this returns, no tier of this process serves the old values and the bus
        message telling other processes to drop their local copies has been sent.
        ``reason`` and ``actor`` go to the ``invalidated`` signal and the audit hooks.
        """
        await self.start()
        await self.invalidator.invalidate(self.invalidation(keys, tags, prefix, reason, actor))

    def invalidation(
        self,
        keys: Iterable[str],
        tags: Iterable[str],
        prefix: str | Iterable[str] | None,
        reason: str | None,
        actor: str | None = None,
    ) -> Invalidation:
        """Check the arguments of ``invalidate`` and build the message (full keys)."""
        return self.invalidator.message(keys, tags, prefix, reason, actor)

    async def clear(self, *, reason: str | None = None, actor: str | None = None) -> None:
        """Remove every entry of this namespace from every tier (cost grows with the entries)."""
        await self.start()
        await self.invalidator.clear(reason, actor)

    async def flush_namespace(self, *, reason: str | None = None, actor: str | None = None) -> int:
        """Outdate every entry of the namespace in O(1) by moving to a new generation.

        Needs a bus that keeps the generation (``RedisBus``) when a tier is shared;
        without one it falls back to ``clear()``. Returns the new generation.
        """
        await self.start()
        return await self.invalidator.flush_namespace(reason, actor)

    @property
    def audit_hooks(self) -> list[Callable[[Invalidation], None]]:
        """Callables receiving every invalidation, local and remote (see ``events.audit``)."""
        return self.invalidator.audit_hooks

    async def _publish(self, message: Invalidation) -> None:
        await self.invalidator.publish(message)

    def _announce(self, message: Invalidation, origin: str) -> None:
        self.invalidator.announce(message, origin)

    def _apply_remote(self, message: Invalidation) -> None:
        self.invalidator.apply_remote(message)

    def _on_bus_state(self, connected: bool) -> None:
        if not connected:  # before dropping them: a concurrent reader must not refill them
            self.tiers.local_trusted = False
        self.invalidator.on_bus_state(connected)

    def _on_evict(self, tier: str, key: str) -> None:
        _send(signals.evicted, self, key=key, tier=tier)

    def _on_tier_error(self, tier: str, operation: str, exc: BaseException) -> None:
        log.warning("stratacache: tier %r failed during %s: %r", tier, operation, exc)
        _send(signals.tier_error, self, tier=tier, operation=operation, error=exc)

    # -- front doors -------------------------------------------------------------------------------
    #: set by ``stratacache.decorators`` on import, so the engine never imports a front door
    decorator_factory: Callable[..., Any] | None = None

    #: set by ``stratacache.warming`` on import
    warm_factory: Callable[..., Any] | None = None

    #: set by ``stratacache.config`` on import: the ``from_url``/``from_env``/``from_dict`` builders
    config_factory: dict[str, Callable[..., Cache]] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Cache:
        """A cache over comma-separated tier URLs, top-down (see ``stratacache.config``)."""
        return cls._configured("url", url, **options)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> Cache:
        """A cache from ``STRATACACHE_URL`` and ``STRATACACHE_*`` variables (``stratacache.config``)."""
        return cls._configured("env", environ, **options)

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> Cache:
        """A cache from a settings mapping with ``tiers`` (see ``stratacache.config``)."""
        return cls._configured("dict", settings)

    @classmethod
    def _configured(cls, form: str, *args: Any, **options: Any) -> Cache:
        factory = cls.config_factory.get(form)
        if factory is None:
            raise ConfigError("import stratacache (or stratacache.config) to use Cache.from_url")
        return factory(*args, **options)

    async def warm(self, **options: Any) -> Any:
        """Run the registered warmers (see ``stratacache.warming.warm``); returns a summary."""
        factory = type(self).warm_factory
        if factory is None:
            raise ConfigError("import stratacache (or stratacache.warming) to use cache.warm")
        return await factory(self, **options)

    def cached(self, **options: Any) -> Any:
        """Decorate a sync or async function to cache its results (see ``stratacache.decorators``)."""
        factory = type(self).decorator_factory
        if factory is None:
            raise ConfigError("import stratacache (or stratacache.decorators) to use cache.cached")
        return factory(self, **options)

    #: set by ``stratacache.events`` on import (same reason as ``decorator_factory``)
    invalidate_on_factory: Callable[..., Any] | None = None

    def invalidate_on(self, signal: Any, **options: Any) -> Any:
        """Invalidate whenever a blinker ``signal`` is sent (see ``stratacache.events.invalidate_on``)."""
        factory = type(self).invalidate_on_factory
        if factory is None:
            raise ConfigError(
                "import stratacache (or stratacache.events) to use cache.invalidate_on"
            )
        return factory(self, signal, **options)

    # -- stats -----------------------------------------------------------------------------------
    def attach_hot(self, hot: HotSet) -> None:
        """Feed ``hot`` from the read-through (``HotKeys.attach`` calls this)."""
        self.readthrough.hot = hot

    def refresh_hot(self, fkey: str, recipe: Any, horizon: float) -> bool:
        """Reload hot ``fkey`` in the background if its soft TTL is within ``horizon`` seconds."""
        return hotkeys.refresh_hot(self, fkey, recipe, horizon)

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
            "engine": {
                **self.counters.as_dict(),
                "moved_values": self.codec.moved_values,
                **self.replay.as_dict(),
            },
        }


def _drop(_: object) -> None:
    return None


__all__ = ["MISS", "Cache"]


def _check_plugins(serializer: object, envelopes: object, clock: object) -> None:
    """Refuse, where the cache is built, plug-ins that would only fail inside every call."""
    if isinstance(envelopes, (str, bytes)) or not isinstance(envelopes, Sequence):
        raise ConfigError(f"envelopes must be a list of Envelope objects, not {envelopes!r}")
    for envelope in envelopes:
        if not (
            callable(getattr(envelope, "seal", None)) and callable(getattr(envelope, "open", None))
        ):
            raise ConfigError(f"envelopes must be Envelope objects (seal/open), not {envelope!r}")
    for name, value, methods in (
        ("serializer", serializer, ("dumps", "loads")),
        ("clock", clock, ("time",)),
    ):
        if value is not None and not all(callable(getattr(value, m, None)) for m in methods):
            wanted = ", ".join(f".{m}()" for m in methods)
            raise ConfigError(f"{name} must be an object with {wanted}, not {value!r}")
