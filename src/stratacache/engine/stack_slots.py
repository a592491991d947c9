"""``SlotView``: the ordered tiers with their counters and breakers, and the decisions
about them that every driver shares (which tier may be called, what copy it keeps, which
entry a read must pass over). No I/O here: ``TierStack`` (async) and ``SyncStack``
(blocking) make the calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..core.entry import Entry
from ..core.errors import ConfigError, KnownOutageError
from ..core.tier import ClaimingTier, Tier
from . import degradation, signals
from .policy import cap
from .resilience import CircuitBreaker
from .stats import OperationTimes, TierStats

T = TypeVar("T")
ErrorHook = Callable[[str, str, BaseException], None]
#: leases a read took, by tier index (a miss's load keeps only their ``UNLEASED`` verdicts)
Leases = dict[int, object | None]
#: the "lease" of a tier this miss could not lease (its lease or read failed, or it was
#: skipped): the load's write passes over it, since a write without its lease is an
#: overwrite that an invalidation made during the load could not void
UNLEASED: object = type("Unleased", (), {"__repr__": lambda self: "UNLEASED"})()
#: the blocking method of each tier operation (``SyncTier``)
SYNC_NAMES = {
    name: name + "_sync"
    for name in (
        "get",
        "get_many",
        "lease",
        "claim",
        "claim_many",
        "release",
        "set",
        "set_many",
        "delete_many",
        "delete_prefix",
        "invalidate_tags",
        "clear",
    )
}


#: seconds after a shared tier recovers during which entries stored before that are
#: misses: other processes replay the invalidations Redis could not take within about
#: ``engine.replay.REPLAY_INTERVAL`` plus a breaker probe of theirs once it is back
OUTAGE_GRACE = 1.0


class TierSlot:
    """One tier with its counters and breaker."""

    __slots__ = (
        "admits",
        "breaker",
        "claims",
        "inline",
        "latency",
        "local",
        "name",
        "stats",
        "sync",
        "tier",
    )

    def __init__(self, tier: Tier, threshold: int, reset_after: float) -> None:
        self.tier = tier
        self.name = tier.name
        self.local = not getattr(tier, "shared", True)
        self.sync = callable(getattr(tier, "get_sync", None))
        #: an in-process tier with the blocking API: called directly from async code too (it
        #: never waits on I/O), which spares a coroutine per call on every read-through
        self.inline = self.local and self.sync
        #: an in-process tier a plain write claims before writing the tiers below it
        #: (``core.tier.ClaimingTier``): racing writes cannot leave it holding another value
        self.claims = self.local and isinstance(tier, ClaimingTier)
        admits = getattr(tier, "admits", None)
        #: a local tier's admission filter for backfills (``MemoryTier.admits``), if any
        self.admits: Callable[[str], bool] | None = (
            admits if self.local and callable(admits) else None
        )
        self.stats = TierStats()
        self.breaker = CircuitBreaker(tier.name, threshold, reset_after)
        #: per-operation latency of remote tiers (None for local ones: an L1 call is not timed)
        self.latency = None if self.local else OperationTimes()


class SlotView:
    """The tiers of one cache, fastest first, with the state both drivers read."""

    def __init__(
        self,
        tiers: Sequence[Tier],
        threshold: int,
        reset_after: float,
        on_error: ErrorHook,
        sender: Any = None,
        beta: float = 1.0,
    ) -> None:
        names = [t.name for t in tiers]
        if len(set(names)) != len(names):
            raise ConfigError(f"tier names must be unique, got {names}; pass name=... to a tier")
        self.slots = [TierSlot(t, threshold, reset_after) for t in tiers]
        self.top = tiers[0]
        self.local_trusted = True
        #: while the bus is down: seconds a local entry may be served (None: normal)
        self.degraded_bound: float | None = None
        #: invalidations waiting for Redis (``engine.replay.Replay``), set by the Cache
        self.replay: Any = None
        #: sender of the ``hit``/``breaker_state`` signals (the Cache; opaque here)
        self.sender: Any = sender
        #: the cache's XFetch weight: local copies get their fast-path deadline from it
        self.beta = beta
        #: the cache's clock (entry times); set by the cache
        self.clock: Any = None
        #: seconds after a shared tier's outage during which older entries are misses
        self.outage_grace = OUTAGE_GRACE
        #: after an outage: entries created before ``suspect_before`` are misses until
        #: ``suspect_until`` (cache clock); while a shared tier's circuit was open, other
        #: processes' invalidations could not reach it either (they wait in their replay
        #: queues), and the shared tier may still hold what they outdated
        self.suspect_before = 0.0
        self.suspect_until = 0.0
        self._on_error = on_error

    # -- decisions -------------------------------------------------------------------------------
    def copy_for(self, slot: TierSlot, entry: Entry, now: float) -> Entry:
        """``entry`` as ``slot`` keeps it: capped by its TTL; local copies drop the payload and
        get their fast-path deadline from the cache's XFetch weight."""
        copy = cap(entry, slot.tier.ttl, now, slot.local)
        if slot.local and self.beta != 1.0:
            copy.deadline = copy.compute_deadline(self.beta)
        if slot.local and self.degraded_bound is not None:
            degradation.cap(copy, self.degraded_bound)
        return copy

    def backfills(self, slot: TierSlot, fkey: str) -> bool:
        """Should a read copy ``fkey``'s entry from a lower tier into ``slot``? Unless the
        tier's admission filter declines it (a first read in a full memory tier)."""
        admits = slot.admits
        if admits is None:
            return True
        try:
            return admits(fkey)
        except Exception:  # a filter's failure must not fail the read: backfill as before
            return True

    def usable(self, slot: TierSlot) -> bool:
        """May ``slot`` be called now (breaker closed; local tiers trusted or degraded)?"""
        if slot.local and not self.local_trusted and self.degraded_bound is None:
            return False
        if not slot.breaker.allow():
            slot.stats.skipped += 1
            return False
        return True

    def writable(self, slot: TierSlot, overwrite: bool) -> bool:
        """May a write go to ``slot``? An overwrite reaches shared tiers even with an open
        breaker: skipping one would let its older value come back when it recovers."""
        if overwrite and not slot.local:
            return True
        return self.usable(slot)

    def lock_usable(self, lock: object) -> bool:
        """May fleet ``lock`` be asked now? Not while the circuit of a shared tier on the same
        server is open (``shares_server``): its calls would wait on the Redis that breaker
        already skips; callers then load without it, once per key per process. Read-only:
        the tier's own calls and probe close the circuit."""
        for slot in self.slots:
            if slot.local or not slot.breaker.is_open:
                continue
            shares = getattr(slot.tier, "shares_server", None)
            if callable(shares) and shares(lock):
                return False
        return True

    def may_hide(self) -> bool:
        """Could ``hidden`` pass over anything now (bus lost, or invalidations awaiting replay)?"""
        replay = self.replay
        return (
            self.degraded_bound is not None
            or (replay is not None and bool(replay.active))
            or self._suspecting()
        )

    def _suspecting(self) -> bool:
        clock = self.clock
        return bool(self.suspect_until) and clock is not None and clock.time() < self.suspect_until

    def hidden(self, slot: TierSlot, fkey: str, entry: Entry, now: float) -> bool:
        """Must a read pass over ``entry``: past the degraded bound, or outdated by an
        invalidation still waiting for Redis?"""
        if self.degraded_bound is not None and degradation.too_old(self, slot, entry, now):  # type: ignore[arg-type]
            return True
        if self.suspect_until and now < self.suspect_until and entry.created < self.suspect_before:
            return True  # possibly outdated by an invalidation another process still replays
        replay = self.replay
        return replay is not None and replay.active and bool(replay.hides(fkey, entry, slot.local))

    def passes_over(
        self, slot: TierSlot, fkey: str, entry: Entry | None, now: float, newer_than: float | None
    ) -> bool:
        """Is ``entry`` (read from ``slot``) a miss for this read?"""
        return (
            entry is None
            or entry.is_gone(now)
            or not newer(entry, newer_than, now)
            or self.hidden(slot, fkey, entry, now)
        )

    def shared_errors(self) -> int:
        """Errors counted so far on shared tiers (a rise during an invalidation: keep it)."""
        return sum(slot.stats.errors for slot in self.slots if not slot.local)

    def failed(self, slot: TierSlot, operation: str, exc: BaseException) -> None:
        """Count a tier's failure, feed its breaker and report it (never raised to callers)."""
        slot.stats.errors += 1
        if isinstance(exc, KnownOutageError):  # a cluster node down, a file locked for long: not
            return  # a failure of the tier, which logs the state changes, not every refused call
        slot.breaker.failure()
        self._on_error(slot.name, operation, exc)

    # -- in-process calls (local tiers with the blocking API) -------------------------------------
    def call_sync(self, slot: TierSlot, operation: str, op: Callable[[], T], fallback: T) -> T:
        """Run blocking ``op`` on ``slot``; on any error count it and return ``fallback``."""
        try:
            result = op()
        except Exception as exc:
            self.failed(slot, operation, exc)
            return fallback
        slot.breaker.success()
        return result

    def run_now(self, slot: TierSlot, operation: str, args: tuple[Any, ...], fallback: Any) -> Any:
        """A tier operation through the tier's blocking method, in this thread."""
        try:
            result = getattr(slot.tier, SYNC_NAMES[operation])(*args)
        except Exception as exc:
            self.failed(slot, operation, exc)
            return fallback
        slot.breaker.success()
        return result

    def lease_now(self, slot: TierSlot, fkey: str, tags: Sequence[str]) -> object | None:
        """An inline tier's lease (see ``TierSlot.inline``); ``UNLEASED`` when it fails."""
        try:  # ``run_now`` inlined: every L1 miss leases the memory tier
            lease = slot.tier.lease_sync(fkey, tags)  # type: ignore[attr-defined]
        except Exception as exc:
            self.failed(slot, "lease", exc)
            return UNLEASED
        slot.breaker.success()
        return lease  # type: ignore[no-any-return]

    def set_now(self, slot: TierSlot, fkey: str, entry: Entry, lease: object | None) -> bool:
        """An inline tier's set; True (as ``call``'s fallback) when it fails."""
        try:  # ``run_now`` inlined: every backfill sets the memory tier
            stored = slot.tier.set_sync(fkey, entry, lease)  # type: ignore[attr-defined]
        except Exception as exc:
            self.failed(slot, "set", exc)
            return True
        slot.breaker.success()
        return stored  # type: ignore[no-any-return]

    def after_outage(self) -> None:
        """A shared tier is back: local copies (and memos on them) may be outdated too
        (each driver empties its local tiers)."""

    def breaker_changed(self, name: str, is_open: bool) -> None:
        """Send ``breaker_state`` when a tier's circuit opens or closes. A shared tier whose
        circuit closes (it only closes after opening) starts the grace window: anything
        stored before now may be outdated by an invalidation made during the outage that
        another process still holds for replay."""
        if signals.breaker_state.receivers:
            signals.breaker_state.send(self.sender, tier=name, open=is_open)
        clock = self.clock
        if is_open or clock is None or all(s.local for s in self.slots if s.name == name):
            return
        now = clock.time()
        self.suspect_before = now
        self.suspect_until = now + self.outage_grace
        self.after_outage()

    # -- stats -----------------------------------------------------------------------------------
    def stats(self, fast_hits: int) -> dict[str, dict[str, Any]]:
        """Per-tier counters; decorator fast-path hits are L1 hits."""
        result = {}
        for index, slot in enumerate(self.slots):
            data = slot.stats.as_dict(fast_hits if index == 0 else 0)
            data.update(slot.breaker.as_dict())
            for extra in (
                "evictions",
                "decode_errors",
                "dropped_writes",
                "node_errors",
                "lock_timeouts",
            ):
                if hasattr(slot.tier, extra):
                    data[extra] = getattr(slot.tier, extra)
            if hasattr(slot.tier, "__len__"):
                data["entries"] = len(slot.tier)  # type: ignore[arg-type]
            result[slot.name] = data
        return result


def newer(entry: Entry, newer_than: float | None, now: float) -> bool:
    """With ``newer_than``: unexpired and created after it; otherwise always True."""
    if newer_than is None:
        return True
    return not entry.is_expired(now) and entry.created > newer_than


__all__ = ["SYNC_NAMES", "Leases", "SlotView", "TierSlot", "newer"]
