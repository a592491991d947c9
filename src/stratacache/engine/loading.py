"""Read-through decisions, written once for the async engine and ``cache.sync``.

Nothing here waits on I/O. ``Loads`` holds what both drivers share (the fleet
lock, the XFetch draw, when each key was last loaded, which keys are being
refreshed) and makes their decisions: how fresh a found entry is and what to
count for it, whether a background refresh may start, how a loaded value
becomes an entry, how long the fast path may keep serving an entry whose
refresh runs. ``locked_load`` is the fleet-lock loop as a generator of
``LockStep`` requests; ``ReadThrough`` (async) and ``SyncReadThrough``
(blocking) each drive it with their own I/O, like ``tiers/redis.py`` drives
one command generator from both clients.
"""

from __future__ import annotations

import contextlib
import enum
import math
import random
import time
from collections.abc import Callable, Generator
from typing import Any

from ..core.clock import Clock
from ..core.codec import EntryCodec
from ..core.entry import Entry
from ..core.errors import ConfigError
from ..core.fleet import FleetLock, Invalidation, LockAttempt
from ..core.tier import Tier
from . import accounting, signals
from .accounting import Recorder
from .policy import EntryPolicy, Freshness, classify
from .stats import FunctionStats

_HOLD_MIN = 0.1  # seconds the fast path keeps serving an entry whose refresh is running
_LOADED_MAX = 10_000


class LockStep(enum.Enum):
    """What ``locked_load`` asks its driver to do; the driver sends back the result."""

    ACQUIRE = "acquire"  # -> LockAttempt (an exception is thrown into the flow)
    REREAD = "reread"  # arg: newer_than -> Entry | None
    LOAD_HELD = "load_held"  # arg: token; run the loader while renewing the lock -> Entry
    LOAD = "load"  # run the loader without the lock -> Entry
    RELEASE = "release"  # arg: token -> bool
    WAIT = "wait"  # arg: (attempt, timeout) -> bool (woken by a release message)


LockFlow = Generator[tuple[LockStep, Any], Any, Entry]


class Loads:
    """What the two read-through drivers share, and the decisions they make alike."""

    def __init__(
        self, rec: Recorder, clock: Clock, codec: EntryCodec, beta: float, top: Tier
    ) -> None:
        self.rec = rec
        self.clock = clock
        self.codec = codec
        self.beta = beta
        self.top = top
        #: the fleet lock used by ``lock=True`` (None: only in-process single-flight)
        self.lock: FleetLock | None = None
        #: access-frequency tracker fed from the slow path (a ``HotSet``), if any
        self.hot: Any = None
        #: ``(function, argument source)`` pairs registered for ``cache.warm()``
        self.warmers: list[Any] = []
        #: the XFetch draw; tests inject a fixed value
        self.random: Callable[[], float] = random.random
        #: keys with a background refresh running (both drivers)
        self.refreshing: set[str] = set()
        self._loaded: dict[str, float] = {}  # when this process last loaded each key (bounded)

    def resolve_lock(self, lock: Any) -> Any:
        """``lock=`` as callers give it (True: the cache's lock) as the lock to use, or None."""
        if lock is None or lock is False:
            return None
        if lock is True:
            if self.lock is None:
                raise ConfigError(
                    "lock=True needs a fleet lock: this cache has no shared Redis tier to put one "
                    "on; add a RedisTier or pass Cache(lock=RedisLock(url))"
                )
            return self.lock
        return lock

    # -- serving ---------------------------------------------------------------------------------
    def judge(self, fkey: str, entry: Entry, fstats: FunctionStats | None) -> Freshness:
        """How fresh a found ``entry`` is (XFetch draw included), counted as a hit or a miss."""
        state = classify(entry, self.clock.time(), self.beta, self.random())
        if state is Freshness.EXPIRED:
            if fstats is not None:
                fstats.misses += 1
            return state
        if fstats is not None:
            fstats.hits += 1
        if state is not Freshness.FRESH:
            accounting.refresh_served(self.rec, fkey, fstats, state is Freshness.EARLY)
        return state

    def may_refresh(self, fkey: str, previous: Entry | None, loading: bool) -> bool:
        """Claim the background refresh of ``fkey`` (False: one runs, a load runs, or a value
        newer than ``previous`` was loaded since it was read)."""
        if fkey in self.refreshing or loading:
            return False
        if previous is not None and self._loaded.get(fkey, -math.inf) > previous.created:
            return False
        self.refreshing.add(fkey)
        self.rec.counters.background_refreshes += 1
        return True

    def hold(self, fkey: str, entry: Entry) -> None:
        """Let the fast path serve ``entry`` while its refresh runs (never past its hard TTL).

        Without this every read in the refresh window takes the slow path just to be told
        "refresh already running". Only the memory tier's live object is extended, and it
        is re-checked afterwards, so an entry removed meanwhile is never revived. If the
        refresh fails, the hold lapses after a short while and a reader retries it.
        """
        peek = getattr(self.top, "peek", None)
        if peek is None or peek(fkey) is not entry or not entry.alive:
            return
        now = self.clock.time()
        hold = now + max(_HOLD_MIN, 2 * entry.cost)
        if entry.expires is not None:
            hold = min(hold, entry.expires)
        if hold > entry.deadline:
            entry.deadline = hold
            if peek(fkey) is not entry:  # removed in between (another thread): stay dead
                entry.kill()

    # -- loading ---------------------------------------------------------------------------------
    def loaded(
        self,
        fkey: str,
        value: Any,
        started: float,
        policy: EntryPolicy,
        tags: tuple[str, ...],
        fstats: FunctionStats | None,
    ) -> Entry:
        """The entry of a value the loader returned (started at ``perf_counter`` ``started``).

        Raises ``SerializationError`` (after counting the load) when the value cannot encode.
        """
        cost = time.perf_counter() - started
        accounting.loaded(self.rec, fkey, fstats, cost)
        loaded = self._loaded
        loaded[fkey] = now = self.clock.time()
        if len(loaded) > _LOADED_MAX:
            # both drivers' threads trim it: another may have just done so
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                del loaded[next(iter(loaded))]
        return policy.make(value, now, tags, cost, self.codec.dumps_value(value))

    def stale_if_error(
        self, fkey: str, stale: Entry | None, fstats: FunctionStats | None, exc: Exception
    ) -> Entry:
        """A failed load's answer: ``stale`` while still servable (counted), else ``exc``
        raised (stale-if-error, RFC 5861)."""
        if stale is not None and not stale.is_gone(self.clock.time()):
            accounting.stale_if_error(self.rec, fkey, fstats, exc)
            return stale
        raise exc

    @staticmethod
    def replaces(stale: Entry | None, previous: Entry | None, forced: bool) -> bool:
        """Whether a load overwrites a value other processes may hold in memory (a refresh,
        a reload of a stale entry, ``refresh()``): it is announced on the bus, as a set is."""
        return forced or stale is not None or previous is not None

    def base_of(self, stale: Entry | None, previous: Entry | None) -> Entry | None:
        """The entry a locked load must find something newer than (what the caller saw)."""
        return previous if previous is not None else stale


def locked_load(
    rec: Recorder,
    fkey: str,
    wait_timeout: float,
    base: Entry | None,
    fstats: FunctionStats | None,
    usable: Callable[[], bool] = lambda: True,
) -> LockFlow:
    """Load under the fleet lock, or wait for the holder's value (bounded, then load).

    A value found newer than ``base`` (the entry the caller saw, if any) counts as the
    load: another process stored it while this one waited. ``usable`` is asked before
    each attempt (``SlotView.lock_usable``): while the lock's Redis is known to be down
    the value is loaded without it at once (reason ``"circuit_open"``), as after a
    failed attempt but without waiting for one.
    """
    counters = rec.counters
    deadline = time.monotonic() + wait_timeout
    newer_than = -math.inf if base is None else base.created
    waited = woken = False
    while True:
        if not usable():
            accounting.lock_fallback(rec, fkey, fstats, "circuit_open", None)
            skipped: Entry = yield LockStep.LOAD, None
            return skipped
        try:
            attempt: LockAttempt = yield LockStep.ACQUIRE, None
        except Exception as exc:  # the lock is an optimisation: never fail the caller for it
            counters.lock_errors += 1
            accounting.lock_fallback(rec, fkey, fstats, "error", exc)
            loaded: Entry = yield LockStep.LOAD, None
            return loaded
        if attempt.owned:
            counters.lock_acquired += 1
            if waited and not woken:
                counters.lock_takeovers += 1  # the previous holder's lease ran out
            try:
                found = yield LockStep.REREAD, newer_than
                if found is not None:  # stored by a holder that released before we asked
                    return found  # type: ignore[no-any-return]
                held: Entry = yield LockStep.LOAD_HELD, attempt.token
                return held
            finally:
                try:
                    yield LockStep.RELEASE, attempt.token
                except Exception as exc:  # it expires on its own after the lease
                    counters.lock_errors += 1
                    accounting.log.warning(
                        "stratacache: releasing the fleet lock on %r failed: %r", fkey, exc
                    )
        if not waited:
            waited = True
            counters.lock_waits += 1
            if fstats is not None:
                fstats.lock_waits += 1
            rec.signal(signals.lock_wait, key=fkey)
        woken = yield LockStep.WAIT, (attempt, deadline - time.monotonic())
        found = yield LockStep.REREAD, newer_than
        if found is not None:
            return found  # type: ignore[no-any-return]
        if time.monotonic() >= deadline:
            accounting.lock_fallback(rec, fkey, fstats, "timeout", None)
            late: Entry = yield LockStep.LOAD, None
            return late


def matches(message: Invalidation, fkey: str, tags: tuple[str, ...] | None) -> bool:
    """Could ``message`` outdate ``fkey`` (whose tags are ``tags``; None: unknown)?"""
    if message.clear or fkey in message.keys:
        return True
    if any(fkey.startswith(p) for p in message.prefixes):
        return True
    return bool(message.tags) and (tags is None or not set(message.tags).isdisjoint(tags))


__all__ = ["Loads", "LockFlow", "LockStep", "locked_load", "matches"]
