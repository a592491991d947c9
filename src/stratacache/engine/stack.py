"""``TierStack``: the tier stack driven with awaits (the async engine's I/O edge).

Every call to a tier goes through here or ``SyncStack``, so a failing tier is
counted, logged, skipped by its breaker and never raised into the caller. The
multi-tier paths are ``engine.plans`` (shared with ``SyncStack``); the
single-key read stays a hand-written loop here: it is every remote hit's path.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Coroutine, Mapping, Sequence
from time import perf_counter
from typing import Any, TypeVar

from ..core.entry import Entry
from ..core.fleet import Invalidation
from ..core.tier import TierContext
from . import plans, signals
from .plans import Plan
from .stack_slots import UNLEASED, Leases, SlotView, TierSlot, newer

T = TypeVar("T")


class TierStack(SlotView):
    """The tiers of one cache, fastest first, called from async code."""

    async def call(self, slot: TierSlot, operation: str, op: Awaitable[T], fallback: T) -> T:
        """Await ``op`` on ``slot``; on any error count it and return ``fallback``."""
        timer = slot.latency
        started = perf_counter() if timer is not None else 0.0
        try:
            result = await op
        except Exception as exc:
            self.failed(slot, operation, exc)
            return fallback
        finally:
            if timer is not None:
                timer.observe(operation, perf_counter() - started)
        slot.breaker.success()
        return result

    async def drive(self, plan: Plan) -> Any:
        """Run an ``engine.plans`` generator: inline tiers in this thread, others awaited."""
        try:
            slot, operation, args, fallback = next(plan)
            while True:
                if slot.inline:
                    result = self.run_now(slot, operation, args, fallback)
                else:
                    op = getattr(slot.tier, operation)(*args)
                    result = await self.call(slot, operation, op, fallback)
                slot, operation, args, fallback = plan.send(result)
        except StopIteration as stop:
            return stop.value

    def drive_now(self, plan: Plan) -> None:
        """Run a plan over local tiers without awaiting: blocking tiers at once, an async-only
        one (an aiocache memory backend) as a task on the running loop."""
        try:
            slot, operation, args, fallback = next(plan)
            while True:
                if slot.sync:
                    result = self.run_now(slot, operation, args, fallback)
                else:
                    _schedule(
                        self.call(slot, operation, getattr(slot.tier, operation)(*args), fallback)
                    )
                    result = fallback
                slot, operation, args, fallback = plan.send(result)
        except StopIteration:
            return

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self, context: TierContext) -> None:
        probe_key = f"{context.namespace}:~probe"  # never written: a probe is a cheap miss
        for slot in self.slots:
            await slot.tier.start(context)
            tier: Any = slot.tier
            if slot.sync:
                slot.breaker.probe = functools.partial(tier.get_sync, probe_key)
            slot.breaker.on_change = self.breaker_changed
            slot.breaker.restart()

    async def close(self) -> None:
        for slot in self.slots:
            slot.breaker.stop()
            await self.call(slot, "close", slot.tier.close(), None)

    # -- reads -----------------------------------------------------------------------------------
    async def read(
        self,
        fkey: str,
        now: float,
        tags: Sequence[str] | None = None,
        newer_than: float | None = None,
        held: Leases | None = None,
    ) -> Entry | None:
        """First live entry top-down, backfilled into the tiers above it.

        ``tags`` are the tags the caller expects (None: unknown), a hint for one-trip tag
        checks. With ``newer_than``, only an unexpired entry created after that time counts
        (a waiter looking past its own older copy for a value another process stored).
        Every tier above is leased before a tier below it is read, so an invalidation that
        lands between the read and the backfill voids the backfill. Those leases are left
        in ``held`` (by tier index): after a miss the load learns from them which tiers
        failed (it leases the others again, bottom-up: ``plans.lease_plan``).
        """
        leases: Leases = held if held is not None else {}
        visited: list[int] = []
        for index, slot in enumerate(self.slots):
            if not self.usable(slot):
                continue
            for upper in visited:
                if upper not in leases:
                    above = self.slots[upper]
                    if above.inline:
                        leases[upper] = self.lease_now(above, fkey, tags or ())
                    else:
                        lease = above.tier.lease(fkey, tags or ())
                        leases[upper] = await self.call(above, "lease", lease, UNLEASED)
            timer = slot.latency
            started = perf_counter() if timer is not None else 0.0
            entry: Entry | None
            try:  # inlined ``call``: this is every remote hit's path
                if slot.inline:
                    entry = slot.tier.get_sync(fkey, tags)  # type: ignore[attr-defined]
                else:
                    entry = await slot.tier.get(fkey, tags)
            except Exception as exc:
                self.failed(slot, "get", exc)
                entry = None
                leases[index] = UNLEASED  # this miss neither leases nor writes it again
            else:
                slot.breaker.success()
            if timer is not None:
                timer.observe("get", perf_counter() - started)
            if (
                entry is None
                or entry.is_gone(now)
                or (newer_than is not None and not newer(entry, newer_than, now))
                or self.hidden(slot, fkey, entry, now)
            ):
                slot.stats.misses += 1
                visited.append(index)
                continue
            slot.stats.hits += 1
            if signals.hit.receivers:
                signals.hit.send(self.sender, key=fkey, tier=slot.name)
            for upper in visited:
                taken = leases.get(upper)
                if taken is UNLEASED:
                    continue
                above = self.slots[upper]
                if above.admits is not None and not self.backfills(above, fkey):
                    continue
                copy = self.copy_for(above, entry, now)
                if above.inline:
                    self.set_now(above, fkey, copy, taken)
                else:
                    await self.call(above, "set", above.tier.set(fkey, copy, taken), False)
            return entry
        return None

    async def read_many(self, fkeys: list[str], now: float) -> dict[str, Entry]:
        """Live entries among ``fkeys`` (``plans.read_many``)."""
        return await self.drive(plans.read_many(self, fkeys, now))  # type: ignore[no-any-return]

    # -- writes ----------------------------------------------------------------------------------
    async def leases(
        self, fkey: str, tags: Sequence[str], held: Leases | None = None
    ) -> list[object | None]:
        """Every tier's lease on ``fkey``, taken before a loader runs (``plans.lease_plan``).

        One after another, the lowest tier first: the order is what makes them safe.
        """
        leases, wanted = plans.lease_plan(self, fkey, list(tags), held)
        for index in wanted:
            slot = self.slots[index]
            operation, args = plans.lease_call(self, index, fkey, tags)
            if slot.inline:
                leases[index] = self.run_now(slot, operation, args, UNLEASED)
            else:
                asked = getattr(slot.tier, operation)(*args)
                leases[index] = await self.call(slot, operation, asked, UNLEASED)
        return leases

    async def write(
        self,
        fkey: str,
        entry: Entry,
        leases: list[object | None] | None,
        now: float,
        overwrite: bool = False,
    ) -> bool:
        """Write bottom-up; stop (False) at the first tier that refuses a voided lease."""
        try:
            return await self.drive(plans.write(self, fkey, entry, leases, now, overwrite))  # type: ignore[no-any-return]
        except BaseException:  # cancelled between tiers: see ``plans.forget``
            self.drive_now(plans.forget(self, (fkey,)))
            raise

    async def write_many(
        self, entries: Mapping[str, Entry], now: float, overwrite: bool = True
    ) -> None:
        """Explicit writes of several entries (overwrites: see ``writable``)."""
        try:
            await self.drive(plans.write_many(self, entries, now, overwrite))
        except BaseException:
            self.drive_now(plans.forget(self, tuple(entries)))
            raise

    # -- invalidation ----------------------------------------------------------------------------
    async def invalidate(self, message: Invalidation, local_only: bool) -> None:
        """Apply ``message`` bottom-up (``plans.invalidate``; a clear message clears)."""
        await self.drive(plans.invalidate(self, message, local_only))

    async def clear(self, local_only: bool) -> None:
        """Remove every entry of the namespace, bottom-up."""
        await self.invalidate(Invalidation(clear=True), local_only)

    def invalidate_local_now(self, message: Invalidation) -> None:
        """Apply ``message`` to local tiers without awaiting (see ``drive_now``)."""
        self.drive_now(plans.invalidate(self, message, local_only=True))

    def clear_local_now(self) -> None:
        """Empty every local tier at once (kills their entries, voids their leases)."""
        self.drive_now(plans.invalidate(self, Invalidation(clear=True), local_only=True))

    def after_outage(self) -> None:
        """See ``SlotView.after_outage``: empty the local tiers once."""
        self.clear_local_now()

    def clear_slot_now(self, slot: TierSlot) -> None:
        """Empty one local tier now (or, async-only, as soon as the loop runs)."""
        if slot.sync:
            self.run_now(slot, "clear", (), None)
        else:
            _schedule(self.call(slot, "clear", slot.tier.clear(), None))

    def keep_recent_now(self, slot: TierSlot, since: float, bound: float) -> bool:
        """Drop a local tier's entries created before ``since`` (False: it cannot)."""
        keep = getattr(slot.tier, "keep_recent_sync", None)
        if not callable(keep):
            return False
        self.call_sync(slot, "keep_recent", functools.partial(keep, since, bound), 0)
        return True


_scheduled: set[asyncio.Task[Any]] = set()


def _schedule(coro: Coroutine[Any, Any, Any]) -> None:
    """Run ``coro`` soon on the running loop (dropped, with its coroutine closed, if none)."""
    try:
        task = asyncio.get_running_loop().create_task(coro)
    except RuntimeError:
        coro.close()
        return
    _scheduled.add(task)
    task.add_done_callback(_scheduled.discard)


__all__ = ["Leases", "TierSlot", "TierStack"]
