"""``CacheRuntime``: the running side of a ``Cache``: lifecycle, keys, the front doors'
extension surface and stats, over the parts ``Cache.__init__`` assembles.

Kept apart from ``engine.cache`` (the public operations) so that each module
stays small; ``Cache`` is the only subclass.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, cast

from ..core.clock import Clock
from ..core.codec import EntryCodec
from ..core.entry import Entry
from ..core.fleet import FleetLock, HotSet, Invalidation, InvalidationBus
from ..core.keys import validate_key
from ..core.loops import PerLoop
from ..core.sentinel import Unset
from ..core.tier import Tier, TierContext
from . import hotkeys, signals
from .accounting import Recorder
from .entries import Entries
from .invalidation import Invalidator
from .keyspace import KeySpace, check_relative
from .loading import Loads
from .policy import UNSET, EntryPolicy
from .readthrough import ReadThrough
from .replay import Replay
from .stack import TierStack
from .stats import CacheStats, FunctionStats, StatsReport
from .sync import AsyncTwin, SyncCache

log = logging.getLogger("stratacache")
Loader = Callable[[], Any]
#: seconds ``close()`` gives invalidations still waiting for Redis to get through
REPLAY_AT_CLOSE = 2.0


class CacheRuntime:
    """Lifecycle, keys, extension surface and stats of a ``Cache`` (its base class)."""

    namespace: str
    keys: KeySpace
    clock: Clock
    codec: EntryCodec
    entries: Entries
    beta: float
    counters: CacheStats
    functions: dict[str, FunctionStats]
    rec: Recorder
    bus: InvalidationBus | None
    tiers: TierStack
    loads: Loads
    readthrough: ReadThrough
    replay: Replay
    invalidator: Invalidator
    closers: list[Callable[[], None]]
    _started: bool
    _ran: bool
    _loop: asyncio.AbstractEventLoop | None
    _start_locks: PerLoop[asyncio.Lock]
    _sync: SyncCache | None

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
                invalidator = self.invalidator
                await self.bus.start(
                    self.namespace, self.origin, invalidator.apply_remote, invalidator.on_bus_state
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
        self.invalidator.origin = new_origin()
        self._started = False
        self._loop = None
        self._start_locks.after_fork()
        self.readthrough.detach(Invalidation(clear=True))  # the parent's loads, never finishing
        self.loads.refreshing.clear()  # and its refreshes: they do not run in the child
        for slot in self.tiers.slots:  # a parent thread may have held a local tier's lock
            reset = getattr(slot.tier, "after_fork", None) if slot.local else None
            if reset is not None:
                reset()
        if self.bus is not None:
            self.tiers.local_trusted = False  # no bus runs in the child until it restarts
            self.tiers.clear_local_now()  # and the memo must not answer from them either

    async def __aenter__(self) -> CacheRuntime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def started(self) -> bool:
        """Has ``start()`` run (and no ``close()`` since)?"""
        return self._started

    @property
    def home_loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop of the last start or operation (its async clients live there)."""
        return self._loop

    @property
    def origin(self) -> str:
        """This process's identity on the invalidation bus (new after ``fork``)."""
        return self.invalidator.origin

    @property
    def sync(self) -> SyncCache:
        """The same cache for synchronous code (``cache.sync.get("k")``)."""
        if self._sync is None:
            self._sync = SyncCache(cast(AsyncTwin, self))
            self.invalidator.detachers.append(self._sync.loading.detach)
        return self._sync

    # -- keys and entries --------------------------------------------------------------------------
    def full_key(self, key: str) -> str:
        """``namespace:key`` (with the namespace generation once flushed), after checking ``key``."""
        keys = self.keys  # KeySpace.full_key inlined: this runs on every decorated call
        return keys.prefix + check_relative(validate_key(key, keys.max_key_length))

    @property
    def max_key_length(self) -> int:
        """The longest key accepted (``Cache(max_key_length=...)``)."""
        return self.keys.max_key_length

    def relative_key(self, fkey: str) -> str:
        """The key ``invalidate`` takes for a full key (generation-qualified if it was flushed)."""
        return self.keys.relative_key(fkey)

    @property
    def policy(self) -> EntryPolicy:
        """The default entry policy (from ``default_ttl``, ``refresh_after``, ``stale_ttl``, ...)."""
        return self.entries.policy

    def entry_policy(
        self,
        ttl: float | Unset | None = UNSET,
        refresh_after: float | Unset | None = UNSET,
        stale_ttl: float | Unset | None = UNSET,
        cache_none: bool | None = None,
        store_if: Callable[[Any], bool] | None = None,
    ) -> EntryPolicy:
        """The cache's default entry policy with any of its fields overridden."""
        return self.entries.entry_policy(ttl, refresh_after, stale_ttl, cache_none, store_if)

    def new_entry(self, value: Any, policy: EntryPolicy, tags: Sequence[str]) -> Entry:
        """An entry for an explicit write (``SerializationError`` before anything is written)."""
        return self.entries.new_entry(value, policy, tags)

    def _on_evict(self, tier: str, key: str) -> None:
        self.rec.signal(signals.evicted, key=key, tier=tier)

    def _on_tier_error(self, tier: str, operation: str, exc: BaseException) -> None:
        log.warning("stratacache: tier %r failed during %s: %r", tier, operation, exc)
        self.rec.signal(signals.tier_error, tier=tier, operation=operation, error=exc)

    # -- extension surface for front doors (see docs/extending.md) ----------------------------
    def fetch(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None = None,
        lock: FleetLock | None = None,
    ) -> Coroutine[Any, Any, Entry]:
        """Read-through on a full key (``full_key``): serve, serve-and-refresh, or load once.

        Await the result (a coroutine: no wrapper frame on the slow path).
        """
        return self.readthrough.fetch(fkey, loader, policy, tags, fstats, lock)

    def load(
        self,
        fkey: str,
        loader: Loader,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        stale: Entry | None = None,
        fstats: FunctionStats | None = None,
        lock: FleetLock | None = None,
        previous: Entry | None = None,
        forced: bool = False,
    ) -> Coroutine[Any, Any, Entry]:
        """Run ``loader`` once per key in this process (and across the fleet with ``lock``)
        and store its result; ``stale`` is served if it fails, ``previous`` is being refreshed,
        ``forced``: an explicit refresh. A load replacing a value is announced on the bus.
        Await the result."""
        return self.readthrough.load(
            fkey, loader, policy, tags, stale, fstats, lock, previous, forced=forced
        )

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
        """Reload a full key in a background task, at most once at a time (False: one runs)."""
        return self.readthrough.refresh_in_background(
            fkey, loader, policy, tags, fstats, lock, previous
        )

    def backfill(self, fkey: str) -> Coroutine[Any, Any, Entry | None]:
        """Copy a full key's entry from the first tier holding it into the tiers above
        (await the result: the entry, or None)."""
        return self.readthrough.backfill(fkey)

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background until it ends or the cache closes."""
        return self.readthrough.spawn(coro)

    def resolve_lock(self, lock: FleetLock | bool | None) -> FleetLock | None:
        """``lock=`` as callers give it (True: the cache's lock) as the lock to use, or None.

        Raises ``ConfigError`` for ``lock=True`` on a cache without a fleet lock.
        """
        if lock is None or lock is False:  # every decorated call without a lock
            return None
        return self.loads.resolve_lock(lock)  # type: ignore[no-any-return]

    def lock_usable(self, lock: object) -> bool:
        """May fleet ``lock`` be asked now? False while the circuit breaker of the shared tier
        it runs on is open: a front door then collapses in this process only, at once,
        instead of waiting on a Redis the tier already skips (the decorators do the same).
        No I/O; for sync and async callers alike."""
        return self.tiers.lock_usable(lock)

    @property
    def lock(self) -> FleetLock | None:
        """The fleet lock ``lock=True`` uses (``Cache(lock=...)``), or None."""
        return self.loads.lock

    @property
    def warmers(self) -> list[Any]:
        """``(function, argument source)`` pairs that ``warm()`` runs; front doors append."""
        return self.loads.warmers

    @property
    def hot(self) -> Any:
        """The fleet's hot-key tracker, if one is installed (else None)."""
        return self.loads.hot

    @hot.setter
    def hot(self, tracker: Any) -> None:
        self.loads.hot = tracker

    def attach_hot(self, hot: HotSet) -> None:
        """Feed ``hot`` from the read-through (``HotKeys.attach`` calls this)."""
        self.loads.hot = hot

    def refresh_hot(self, fkey: str, recipe: Any, horizon: float) -> bool:
        """Reload hot ``fkey`` in the background if its soft TTL is within ``horizon`` seconds."""
        return hotkeys.refresh_hot(
            self, self.tiers.top, self.clock, self.counters, self.refresh_in_background,
            fkey, recipe, horizon,
        )  # fmt: skip

    @property
    def top_tier(self) -> Tier:
        """The first (fastest) tier: in-process memos check entries against it."""
        return self.tiers.top

    @property
    def local_trusted(self) -> bool:
        """May local tiers (and memos built on them) answer now? False while the bus is down."""
        return self.tiers.local_trusted

    # -- stats -----------------------------------------------------------------------------------
    def register_function(self, name: str) -> FunctionStats:
        """Counters for one decorated function (shared by functions of the same name)."""
        return self.functions.setdefault(name, FunctionStats())

    def stats(self) -> StatsReport:
        """Counters per tier, per decorated function and for the engine, with hit rates."""
        fast_hits = sum(f.fast_hits for f in self.functions.values())
        return cast(
            StatsReport,
            {
                "namespace": self.namespace,
                "tiers": self.tiers.stats(fast_hits),
                "functions": {name: f.as_dict() for name, f in self.functions.items()},
                "engine": {
                    **self.counters.as_dict(),
                    "moved_values": self.codec.moved_values,
                    **self.replay.as_dict(),
                },
            },
        )


def new_origin() -> str:
    """A fresh identity on the invalidation bus."""
    return uuid.uuid4().hex


def drop(_: object) -> None:
    """``PerLoop``'s release of a start lock: nothing to release."""
    return None


__all__ = ["REPLAY_AT_CLOSE", "CacheRuntime", "new_origin"]
