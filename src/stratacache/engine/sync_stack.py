"""``SyncStack``: the tier stack driven with blocking calls, for ``SyncCache``.

Tiers with the ``SyncTier`` methods are called directly in the caller's thread; an
async-only tier runs on the portal's loop. Reads, leases, backfills and writes
follow ``TierStack`` exactly (same order, same leases, same counters).
"""

from __future__ import annotations

from collections.abc import Sequence
from time import perf_counter
from typing import Any

from ..core.entry import Entry
from . import signals
from .portal import Portal
from .stack import TierSlot, TierStack, _newer

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


class SyncStack:
    """Blocking access to a ``TierStack``'s tiers."""

    def __init__(self, stack: TierStack, portal: Portal) -> None:
        self.stack = stack
        self.portal = portal

    def call(self, slot: TierSlot, operation: str, fallback: Any, *args: Any) -> Any:
        """Call ``operation`` on a tier (its ``_sync`` method, else the async one via the portal);
        any error is counted and gives ``fallback``."""
        tier: Any = slot.tier
        timer = slot.latency
        started = perf_counter() if timer is not None else 0.0
        try:
            if slot.sync:
                result = getattr(tier, _SYNC_NAMES[operation])(*args)
            else:
                result = self.portal.run(getattr(tier, operation)(*args))
        except Exception as exc:
            self.stack.failed(slot, operation, exc)
            return fallback
        finally:
            if timer is not None:
                timer.observe(operation, perf_counter() - started)
        slot.breaker.success()
        return result

    def read(
        self,
        fkey: str,
        now: float,
        tags: Sequence[str] | None = None,
        newer_than: float | None = None,
    ) -> Entry | None:
        """``TierStack.read`` with blocking calls: every tier above is leased before a lower read."""
        leases: dict[int, Any] = {}
        visited: list[int] = []
        for index, slot in enumerate(self.stack.slots):
            if not self.stack.usable(slot):
                continue
            for upper in visited:
                if upper not in leases:
                    leases[upper] = self.call(
                        self.stack.slots[upper], "lease", None, fkey, tags or ()
                    )
            entry: Entry | None = self.call(slot, "get", None, fkey, tags)
            if (
                entry is None
                or entry.is_gone(now)
                or not _newer(entry, newer_than, now)
                or self.stack.hidden(slot, fkey, entry, now)
            ):
                slot.stats.misses += 1
                visited.append(index)
                continue
            slot.stats.hits += 1
            if signals.hit.receivers:
                signals.hit.send(self.stack.sender, key=fkey, tier=slot.name)
            for upper in visited:
                above = self.stack.slots[upper]
                copy = self.stack.copy_for(above, entry, now)
                self.call(above, "set", False, fkey, copy, leases.get(upper))
            return entry
        return None

    def write(
        self,
        fkey: str,
        entry: Entry,
        leases: list[Any] | None,
        now: float,
        overwrite: bool = False,
    ) -> bool:
        """``TierStack.write`` with blocking calls."""
        for index in range(len(self.stack.slots) - 1, -1, -1):
            slot = self.stack.slots[index]
            if not self.stack.writable(slot, overwrite):
                continue
            lease = leases[index] if leases else None
            if not self.call(slot, "set", True, fkey, self.stack.copy_for(slot, entry, now), lease):
                return False
            slot.stats.sets += 1
        return True

    def read_many(self, fkeys: list[str], now: float) -> dict[str, Entry]:
        """``TierStack.read_many`` with blocking calls (local tiers leased before lower reads)."""
        found: dict[str, Entry] = {}
        missing = list(fkeys)
        leases: dict[int, dict[str, Any]] = {}
        for index, slot in enumerate(self.stack.slots):
            if not missing:
                break
            if not self.stack.usable(slot):
                continue
            if slot.local:  # lease before reading below, as TierStack.read_many does
                leases[index] = {k: self.call(slot, "lease", None, k, ()) for k in missing}
            got = self.call(slot, "get_many", {}, missing)
            live = {
                k: e
                for k, e in got.items()
                if not e.is_gone(now) and not self.stack.hidden(slot, k, e, now)
            }
            slot.stats.hits += len(live)
            slot.stats.misses += len(missing) - len(live)
            for upper, above in enumerate(self.stack.slots[:index]):
                if not live or not self.stack.usable(above):
                    continue
                if above.local:
                    held = leases.get(upper, {})
                    for k, e in live.items():
                        self.call(
                            above, "set", False, k, self.stack.copy_for(above, e, now), held.get(k)
                        )
                else:
                    copies = {k: self.stack.copy_for(above, e, now) for k, e in live.items()}
                    self.call(above, "set_many", None, copies)
            found.update(live)
            missing = [k for k in missing if k not in live]
        return found
