"""``SyncStack``: the tier stack driven with blocking calls, for ``cache.sync``.

Tiers with the ``SyncTier`` methods are called directly in the caller's thread; an
async-only tier runs on the portal's loop. The multi-tier paths are the same
``engine.plans`` the async ``TierStack`` drives (same order, same leases, same
counters); the single-key read is hand-written here as it is there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from time import perf_counter
from typing import Any

from ..core.entry import Entry
from ..core.fleet import Invalidation
from ..core.portal import Portal
from . import plans, signals
from .plans import Plan
from .stack_slots import SYNC_NAMES, UNLEASED, Leases, SlotView, TierSlot


class SyncStack:
    """Blocking access to the tiers of a ``SlotView`` (the cache's ``TierStack``)."""

    def __init__(self, view: SlotView, portal: Portal) -> None:
        self.view = view
        self.portal = portal

    def call(self, slot: TierSlot, operation: str, fallback: Any, *args: Any) -> Any:
        """Call ``operation`` on a tier (its ``_sync`` method, else the async one via the portal);
        any error is counted and gives ``fallback``."""
        tier: Any = slot.tier
        timer = slot.latency
        started = perf_counter() if timer is not None else 0.0
        try:
            if slot.sync:
                result = getattr(tier, SYNC_NAMES[operation])(*args)
            else:
                result = self.portal.run(getattr(tier, operation)(*args))
        except Exception as exc:
            self.view.failed(slot, operation, exc)
            return fallback
        finally:
            if timer is not None:
                timer.observe(operation, perf_counter() - started)
        slot.breaker.success()
        return result

    def drive(self, plan: Plan) -> Any:
        """Run an ``engine.plans`` generator with blocking calls."""
        try:
            slot, operation, args, fallback = next(plan)
            while True:
                result = self.call(slot, operation, fallback, *args)
                slot, operation, args, fallback = plan.send(result)
        except StopIteration as stop:
            return stop.value

    def read(
        self,
        fkey: str,
        now: float,
        tags: Sequence[str] | None = None,
        newer_than: float | None = None,
        held: Leases | None = None,
    ) -> Entry | None:
        """``TierStack.read`` with blocking calls: every tier above is leased before a lower
        read, and those leases are left in ``held`` (the load after a miss skips the tiers it
        could not read)"""
        view = self.view
        leases: Leases = held if held is not None else {}
        visited: list[int] = []
        for index, slot in enumerate(view.slots):
            if not view.usable(slot):
                continue
            for upper in visited:
                if upper not in leases:
                    leases[upper] = self.call(
                        view.slots[upper], "lease", UNLEASED, fkey, tags or ()
                    )
            errors = slot.stats.errors
            entry: Entry | None = self.call(slot, "get", None, fkey, tags)
            if slot.stats.errors != errors:
                leases[index] = UNLEASED  # this miss neither leases nor writes it again
            if view.passes_over(slot, fkey, entry, now, newer_than):
                slot.stats.misses += 1
                visited.append(index)
                continue
            slot.stats.hits += 1
            if signals.hit.receivers:
                signals.hit.send(view.sender, key=fkey, tier=slot.name)
            for upper in visited:
                lease = leases.get(upper)
                if lease is UNLEASED:
                    continue
                above = view.slots[upper]
                if not view.backfills(above, fkey):
                    continue
                copy = view.copy_for(above, entry, now)  # type: ignore[arg-type]
                self.call(above, "set", False, fkey, copy, lease)
            return entry
        return None

    def read_many(self, fkeys: list[str], now: float) -> dict[str, Entry]:
        """Live entries among ``fkeys`` (``plans.read_many``)."""
        return self.drive(plans.read_many(self.view, fkeys, now))  # type: ignore[no-any-return]

    def leases(
        self, fkey: str, tags: Sequence[str], held: Leases | None = None
    ) -> list[object | None]:
        """Every tier's lease on ``fkey`` before a loader runs (``plans.lease_plan``)."""
        leases, wanted = plans.lease_plan(self.view, fkey, list(tags), held)
        for index in wanted:
            operation, args = plans.lease_call(self.view, index, fkey, tags)
            leases[index] = self.call(self.view.slots[index], operation, UNLEASED, *args)
        return leases

    def write(
        self,
        fkey: str,
        entry: Entry,
        leases: list[object | None] | None,
        now: float,
        overwrite: bool = False,
    ) -> bool:
        """``TierStack.write`` with blocking calls."""
        try:
            return self.drive(plans.write(self.view, fkey, entry, leases, now, overwrite))  # type: ignore[no-any-return]
        except BaseException:  # interrupted between tiers: see ``plans.forget``
            self.drive(plans.forget(self.view, (fkey,)))
            raise

    def write_many(self, entries: Mapping[str, Entry], now: float, overwrite: bool = True) -> None:
        """``TierStack.write_many`` with blocking calls."""
        try:
            self.drive(plans.write_many(self.view, entries, now, overwrite))
        except BaseException:
            self.drive(plans.forget(self.view, tuple(entries)))
            raise

    def invalidate(self, message: Invalidation, local_only: bool = False) -> None:
        """``TierStack.invalidate`` with blocking calls."""
        self.drive(plans.invalidate(self.view, message, local_only))


__all__ = ["SyncStack"]
