"""The multi-tier paths, written once as generators of tier calls (no I/O here).

Each plan yields ``TierCall`` tuples ``(slot, operation, args, fallback)`` and
gets each call's result sent back; ``TierStack`` drives a plan with awaits
and ``SyncStack`` with blocking calls (``tiers/redis.py`` shares its Redis
commands the same way). A failing call is counted by the driver and answers
``fallback``, so a plan never sees a tier's exception. What stays per driver
is the single-key read (``TierStack.read``/``SyncStack.read``): it is every
remote hit's path, and a generator there costs more than it saves.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import Any

from ..core.entry import Entry
from ..core.fleet import Invalidation
from .stack_slots import UNLEASED, Leases, SlotView, TierSlot

TierCall = tuple[TierSlot, str, tuple[Any, ...], Any]
Plan = Generator[TierCall, Any, Any]


def lease_plan(
    view: SlotView, fkey: str, tags: tuple[str, ...] | list[str], held: Leases | None
) -> tuple[list[object | None], list[int]]:
    """Leases settled already (``UNLEASED``) by tier index, and the indexes to lease, lowest first.

    A load's leases are taken bottom-up, as its write goes: a set or invalidation after a
    lower tier's lease voids it, and the write stops there before any tier above; one
    before it comes before every upper lease too, and all accept. So no tier keeps a value
    another refused the load for. The leases a read took top-down (each before the read
    below, for its backfill) are in the wrong order for that and are not reused; only its
    verdicts are (``held``: a tier it could not read or lease is not written). A tier that
    cannot be called now gets ``UNLEASED``: the load will not write it, even if it is back.
    """
    leases: list[object | None] = []
    wanted: list[int] = []
    for index, slot in enumerate(view.slots):
        if (held and held.get(index, None) is UNLEASED) or not view.usable(slot):
            leases.append(UNLEASED)
        else:
            leases.append(None)
            wanted.append(index)
    wanted.reverse()
    return leases, wanted


def lease_call(
    view: SlotView, index: int, fkey: str, tags: Sequence[str]
) -> tuple[str, tuple[Any, ...]]:
    """How a load leases the tier at ``index``: an in-process tier above another is claimed
    (``core.tier.ClaimingTier``), so that the load's store there voids the leases reads
    took before it (a backfill of an older value read below must not cover the load's);
    any other tier is leased."""
    if index < len(view.slots) - 1 and view.slots[index].claims:
        return "claim", (fkey,)
    return "lease", (fkey, tags)


def write(
    view: SlotView,
    fkey: str,
    entry: Entry,
    leases: list[object | None] | None,
    now: float,
    overwrite: bool,
) -> Generator[TierCall, Any, bool]:
    """Write bottom-up; stop (False) at the first tier that refuses a voided lease.

    If a tier below had stored the entry, the refusing tier and those above it drop the
    key (``_drop``): no tier keeps a value another tier refused the load for.

    A plain write (an overwrite without leases) first claims the in-process tiers that
    have tiers below them (``_claim``): a write of the key that ends between its lower
    write and its own there makes that tier refuse it and drop the key.

    A tier the miss could not lease (``UNLEASED``) is passed over, as if its write failed.
    Once a shared tier below has stored a load's entry, a local tier above may decline it
    as it declines a backfill (``SlotView.backfills``); an overwrite reaches every tier.
    """
    slots = view.slots
    if overwrite and leases is None:
        leases = yield from _claim(view, "claim", fkey)
    held_below = False  # a shared tier below stored the entry (not a failure's fallback)
    kept_below = False  # any tier below stored it
    for index in range(len(slots) - 1, -1, -1):
        slot = slots[index]
        lease = leases[index] if leases else None
        if lease is UNLEASED or not view.writable(slot, overwrite):
            continue
        if held_below and slot.admits is not None and not view.backfills(slot, fkey):
            if slot.claims:  # a load's claim (``lease_call``): nothing will store under it
                yield slot, "release", (fkey, lease), None
            continue
        errors = slot.stats.errors
        stored = yield slot, "set", (fkey, view.copy_for(slot, entry, now), lease), True
        if not stored:
            if kept_below:  # a write still in flight when the lower lease was taken
                yield from _drop(view, fkey, index)
            return False
        slot.stats.sets += 1
        if slot.stats.errors == errors:
            kept_below = True
            if not overwrite and not slot.local:
                held_below = True
    return True


def _drop(view: SlotView, fkey: str, index: int) -> Plan:
    """Remove ``fkey`` from the tier at ``index`` that refused a load and the tiers above it.

    A tier below stored the load, so the refusing write (an overwrite or invalidation whose
    lower write came before that tier's lease) did not reach every tier the load reached:
    keeping its value here would leave the tiers apart. Absent, the key is read from below.
    """
    for slot in reversed(view.slots[: index + 1]):
        yield slot, "delete_many", ([fkey],), 0


def _claim(view: SlotView, operation: str, keys: Any) -> Generator[TierCall, Any, list[Any] | None]:
    """Claims (``core.tier.ClaimingTier``) of the in-process tiers above another tier, by
    index, taken before anything is written; None when no tier claims.

    The lowest tier has nothing below it to race with. A claim that fails is None: that
    tier's write is a plain overwrite, as without claims.
    """
    claims: list[Any] | None = None
    slots = view.slots
    for index in range(len(slots) - 1):
        slot = slots[index]
        if slot.claims:
            if claims is None:
                claims = [None] * len(slots)
            claims[index] = yield slot, operation, (keys,), None
    return claims


def write_many(
    view: SlotView, entries: Mapping[str, Entry], now: float, overwrite: bool = True
) -> Plan:
    """Explicit writes of several entries, bottom-up (overwrites: see ``writable``), with the
    in-process tiers claimed first as for one key (``write``). ``overwrite=False``: values
    just loaded for a miss (``set_many(loaded=True)``), which pass over a shared tier whose
    circuit is open as a load's write does."""
    claims = yield from _claim(view, "claim_many", list(entries))
    slots = view.slots
    for index in range(len(slots) - 1, -1, -1):
        slot = slots[index]
        if view.writable(slot, overwrite):
            capped = {k: view.copy_for(slot, e, now) for k, e in entries.items()}
            claim = claims[index] if claims else None
            yield slot, "set_many", ((capped,) if claim is None else (capped, claim)), None
            slot.stats.sets += len(entries)


def forget(view: SlotView, fkeys: tuple[str, ...]) -> Plan:
    """Drop ``fkeys`` from the in-process tiers: a plain write stopped between its tiers
    (cancelled) may have reached the tiers below after a racing write ended here."""
    for slot in view.slots:
        if slot.local:
            yield slot, "delete_many", (list(fkeys),), 0


def invalidate(view: SlotView, message: Invalidation, local_only: bool) -> Plan:
    """Apply ``message`` bottom-up (lower tiers first, so nothing refills from them).

    Open circuit breakers are not honoured here: an invalidation skipped because a
    tier failed a while ago would leave an old value to be served once it recovers.
    """
    for slot in reversed(view.slots):
        if local_only and not slot.local:
            continue
        if message.clear:
            yield slot, "clear", (), None
            continue
        if message.keys:
            yield slot, "delete_many", (list(message.keys),), 0
            slot.stats.deletes += len(message.keys)
        if message.tags:
            yield slot, "invalidate_tags", (list(message.tags),), None
        for prefix in message.prefixes:
            yield slot, "delete_prefix", (prefix,), 0


def live_values(wanted: dict[str, str], found: dict[str, Entry], now: float) -> dict[str, Any]:
    """``{key: value}`` of the entries ``read_many`` found that are not expired (``wanted``
    maps full keys back to the caller's keys); ``get_many``'s answer in both clients."""
    return {
        wanted[fk]: e.value
        for fk, e in found.items()
        if e.expires is None or now < e.expires  # ``not is_expired``, one call less per key
    }


def read_many(view: SlotView, fkeys: list[str], now: float) -> Generator[TierCall, Any, dict]:  # type: ignore[type-arg]
    """Live entries among ``fkeys``: one ``get_many`` per tier for the keys still missing.

    Local tiers are leased before anything below them is read, so an invalidation that
    lands between the lower read and the backfill voids the backfill (as in ``read``).
    """
    found: dict[str, Entry] = {}
    missing = list(fkeys)
    leases: dict[int, dict[str, object | None]] = {}
    for index, slot in enumerate(view.slots):
        if not missing:
            break
        if not view.usable(slot):
            continue
        if slot.local:
            held = leases[index] = {}
            for k in missing:
                held[k] = yield slot, "lease", (k, ()), None
        got = yield slot, "get_many", (missing,), {}
        if view.may_hide():
            live = {
                k: e
                for k, e in got.items()
                if not e.is_gone(now) and not view.hidden(slot, k, e, now)
            }
        else:  # the common case: nothing degraded or waiting for replay
            live = {  # ``not e.is_gone(now)``, inlined: one call less per key
                k: e
                for k, e in got.items()
                if (end := e.stale_until if e.stale_until is not None else e.expires) is None
                or now < end
            }
        slot.stats.hits += len(live)
        slot.stats.misses += len(missing) - len(live)
        if live and index:
            yield from _backfill_many(view, live, index, leases, now)
        if not found:
            found = live
        else:
            found.update(live)
        if len(live) == len(missing):
            break  # every key found: no list of the missing ones to build
        missing = [k for k in missing if k not in live]
    return found


def _backfill_many(
    view: SlotView,
    live: dict[str, Entry],
    index: int,
    leases: dict[int, dict[str, object | None]],
    now: float,
) -> Plan:
    for upper, above in enumerate(view.slots[:index]):
        if not view.usable(above):
            continue
        if above.local:  # leased, key by key (no round trips: the tier is in-process)
            held = leases.get(upper, {})
            for k, e in live.items():
                if view.backfills(above, k):
                    yield above, "set", (k, view.copy_for(above, e, now), held.get(k)), False
        else:
            copies = {k: view.copy_for(above, e, now) for k, e in live.items()}
            yield above, "set_many", (copies,), None


__all__ = [
    "Plan",
    "TierCall",
    "forget",
    "invalidate",
    "lease_call",
    "lease_plan",
    "read_many",
    "write",
    "write_many",
]
