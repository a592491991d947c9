"""``TierStack``: the ordered tiers with their counters and circuit breakers.

Every call to a tier goes through here, so a failing tier is counted, logged,
skipped by its breaker and never raised into the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from functools import partial
from time import perf_counter
from typing import Any, TypeVar

from ..core.entry import Entry
from ..core.errors import NodeDownError
from ..core.fleet import Invalidation
from ..core.tier import Tier, TierContext
from . import degradation, signals
from .policy import cap
from .resilience import CircuitBreaker
from .stats import OperationTimes, TierStats

T = TypeVar("T")
ErrorHook = Callable[[str, str, BaseException], None]


class TierSlot:
    """One tier with its counters and breaker."""

    __slots__ = ("breaker", "inline", "latency", "local", "name", "stats", "sync", "tier")

    def __init__(self, tier: Tier, threshold: int, reset_after: float) -> None:
        self.tier = tier
        self.name = tier.name
        self.local = not getattr(tier, "shared", True)
        self.sync = callable(getattr(tier, "get_sync", None))
        #: an in-process tier with the blocking API: called directly from async code too (it
        #: never waits on I/O), which spares a coroutine per call on every read-through
        self.inline = self.local and self.sync
        self.stats = TierStats()
        self.breaker = CircuitBreaker(tier.name, threshold, reset_after)
        #: per-operation latency of remote tiers (None for local ones: an L1 call is not timed)
        self.latency = None if self.local else OperationTimes()


class TierStack:
    """The tiers of one cache, fastest first."""

    def __init__(
        self, tiers: Sequence[Tier], threshold: int, reset_after: float, on_error: ErrorHook
    ) -> None:
        names = [t.name for t in tiers]
        if len(set(names)) != len(names):
            raise_config(f"tier names must be unique, got {names}; pass name=... to a tier")
        self.slots = [TierSlot(t, threshold, reset_after) for t in tiers]
        self.top = tiers[0]
        self.local_trusted = True
        #: while the bus is down: seconds a local entry may be served (None: normal)
        self.degraded_bound: float | None = None
        #: invalidations waiting for Redis (``engine.replay.Replay``), set by the Cache
        self.replay: Any = None
        #: sender of the ``hit``/``evicted`` signals (the Cache), set by it
        self.sender: Any = None
        #: the cache's XFetch weight: local copies get their fast-path deadline from it
        self.beta = 1.0
        self._on_error = on_error

    # -- guarded calls ---------------------------------------------------------------------------
    def copy_for(self, slot: TierSlot, entry: Entry, now: float) -> Entry:
        """``entry`` as ``slot`` keeps it: capped by its TTL; local copies drop the payload and
        get their fast-path deadline from the cache's XFetch weight."""
        copy = cap(entry, slot.tier.ttl, now, slot.local)
        if slot.local and self.beta != 1.0:
            copy.deadline = copy.compute_deadline(self.beta)
        if slot.local and self.degraded_bound is not None:
            degradation.cap(copy, self.degraded_bound)
        return copy

    def usable(self, slot: TierSlot) -> bool:
        """May ``slot`` be called now (breaker closed; local tiers trusted or degraded)?"""
        if slot.local and not self.local_trusted and self.degraded_bound is None:
            return False
        if not slot.breaker.allow():
            slot.stats.skipped += 1
            return False
        return True

    def hidden(self, slot: TierSlot, fkey: str, entry: Entry, now: float) -> bool:
        """Must a read pass over ``entry``: past the degraded bound, or outdated by an
        invalidation still waiting for Redis?"""
        if self.degraded_bound is not None and degradation.too_old(self, slot, entry, now):
            return True
        replay = self.replay
        return replay is not None and replay.active and bool(replay.hides(fkey, entry, slot.local))

    def shared_errors(self) -> int:
        """Errors counted so far on shared tiers (a rise during an invalidation: keep it)."""
        return sum(slot.stats.errors for slot in self.slots if not slot.local)

    def failed(self, slot: TierSlot, operation: str, exc: BaseException) -> None:
        slot.stats.errors += 1
        if not isinstance(exc, NodeDownError):  # one cluster node down: a miss, not a tier failure
            slot.breaker.failure()
        self._on_error(slot.name, operation, exc)

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

    def lease_now(self, slot: TierSlot, fkey: str, tags: Sequence[str]) -> object | None:
        """An inline tier's lease (see ``TierSlot.inline``); None when it fails."""
        try:
            lease = slot.tier.lease_sync(fkey, tags)  # type: ignore[attr-defined]
        except Exception as exc:
            self.failed(slot, "lease", exc)
            return None
        slot.breaker.success()
        return lease  # type: ignore[no-any-return]

    def set_now(self, slot: TierSlot, fkey: str, entry: Entry, lease: object | None) -> bool:
        """An inline tier's set; True (as ``call``'s fallback) when it fails."""
        try:
            stored = slot.tier.set_sync(fkey, entry, lease)  # type: ignore[attr-defined]
        except Exception as exc:
            self.failed(slot, "set", exc)
            return True
        slot.breaker.success()
        return stored  # type: ignore[no-any-return]

    def call_sync(self, slot: TierSlot, operation: str, op: Callable[[], T], fallback: T) -> T:
        """The blocking twin of ``call``."""
        try:
            result = op()
        except Exception as exc:
            self.failed(slot, operation, exc)
            return fallback
        slot.breaker.success()
        return result

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self, context: TierContext) -> None:
        probe_key = f"{context.namespace}:~probe"  # never written: a probe is a cheap miss
        for slot in self.slots:
            await slot.tier.start(context)
            tier: Any = slot.tier
            if slot.sync:
                slot.breaker.probe = partial(tier.get_sync, probe_key)
            slot.breaker.on_change = self._breaker_changed
            slot.breaker.restart()

    async def close(self) -> None:
        for slot in self.slots:
            slot.breaker.stop()
            await self.call(slot, "close", slot.tier.close(), None)

    def _breaker_changed(self, name: str, is_open: bool) -> None:
        if signals.breaker_state.receivers:
            signals.breaker_state.send(self.sender, tier=name, open=is_open)

    # -- reads -----------------------------------------------------------------------------------
    async def read(
        self,
        fkey: str,
        now: float,
        tags: Sequence[str] | None = None,
        newer_than: float | None = None,
        held: dict[int, object | None] | None = None,
    ) -> Entry | None:
        """First live entry top-down, backfilled into the tiers above it.

        ``tags`` are the tags the caller expects (None: unknown), a hint for one-trip tag
        checks. With ``newer_than``, only an unexpired entry created after that time counts
        (a waiter looking past its own older copy for a value another process stored).
        Every tier above is leased before a tier below it is read, so an invalidation that
        lands between the read and the backfill voids the backfill. Those leases are left
        in ``held`` (by tier index): after a miss they serve the load that follows.
        """
        leases: dict[int, object | None] = held if held is not None else {}
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
                        leases[upper] = await self.call(above, "lease", lease, None)
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
            else:
                slot.breaker.success()
            if timer is not None:
                timer.observe("get", perf_counter() - started)
            if (
                entry is None
                or entry.is_gone(now)
                or not _newer(entry, newer_than, now)
                or self.hidden(slot, fkey, entry, now)
            ):
                slot.stats.misses += 1
                visited.append(index)
                continue
            slot.stats.hits += 1
            if signals.hit.receivers:
                signals.hit.send(self.sender, key=fkey, tier=slot.name)
            for upper in visited:
                above = self.slots[upper]
                copy = self.copy_for(above, entry, now)
                if above.inline:
                    self.set_now(above, fkey, copy, leases.get(upper))
                else:
                    await self.call(
                        above, "set", above.tier.set(fkey, copy, leases.get(upper)), False
                    )
            return entry
        return None

    async def read_many(self, fkeys: list[str], now: float) -> dict[str, Entry]:
        """Live entries among ``fkeys``: one ``get_many`` per tier for the keys still missing.

        Local tiers are leased before anything below them is read, so an invalidation that
        lands between the lower read and the backfill voids the backfill (as in ``read``).
        """
        found: dict[str, Entry] = {}
        missing = list(fkeys)
        leases: dict[int, dict[str, object | None]] = {}
        for index, slot in enumerate(self.slots):
            if not missing:
                break
            if not self.usable(slot):
                continue
            if slot.local:
                leases[index] = {
                    k: await self.call(slot, "lease", slot.tier.lease(k, ()), None) for k in missing
                }
            got = await self.call(slot, "get_many", slot.tier.get_many(missing), {})
            live = {
                k: e
                for k, e in got.items()
                if not e.is_gone(now) and not self.hidden(slot, k, e, now)
            }
            slot.stats.hits += len(live)
            slot.stats.misses += len(missing) - len(live)
            if live and index:
                await self._backfill_many(live, index, leases, now)
            found.update(live)
            missing = [k for k in missing if k not in live]
        return found

    async def _backfill_many(
        self,
        live: dict[str, Entry],
        index: int,
        leases: dict[int, dict[str, object | None]],
        now: float,
    ) -> None:
        for upper, above in enumerate(self.slots[:index]):
            if not self.usable(above):
                continue
            if above.local:  # leased, key by key (no round trips: the tier is in-process)
                held = leases.get(upper, {})
                for k, e in live.items():
                    copy = self.copy_for(above, e, now)
                    await self.call(above, "set", above.tier.set(k, copy, held.get(k)), False)
            else:
                copies = {k: self.copy_for(above, e, now) for k, e in live.items()}
                await self.call(above, "set_many", above.tier.set_many(copies), None)

    # -- writes ----------------------------------------------------------------------------------
    async def leases(
        self, fkey: str, tags: Sequence[str], held: Mapping[int, object | None] | None = None
    ) -> list[object | None]:
        """Every tier's lease on ``fkey``, taken before a loader runs.

        ``held``: leases the miss's read already took (any lease taken before the loader
        starts is valid for its write). The others are asked for at the same time.
        """
        leases: list[object | None] = []
        remote: list[tuple[int, TierSlot]] = []
        for index, slot in enumerate(self.slots):
            if held and index in held:
                leases.append(held[index])
            elif not self.usable(slot):
                leases.append(None)
            elif slot.inline:
                leases.append(self.lease_now(slot, fkey, tags))
            else:
                leases.append(None)
                remote.append((index, slot))
        if len(remote) == 1:
            index, slot = remote[0]
            leases[index] = await self.call(slot, "lease", slot.tier.lease(fkey, tags), None)
        elif remote:
            got = await asyncio.gather(
                *(self.call(slot, "lease", slot.tier.lease(fkey, tags), None) for _, slot in remote)
            )
            for (index, _), lease in zip(remote, got, strict=True):
                leases[index] = lease
        return leases

    def writable(self, slot: TierSlot, overwrite: bool) -> bool:
        """May a write go to ``slot``? An overwrite reaches shared tiers even with an open
        breaker: skipping one would let its older value come back when it recovers."""
        if overwrite and not slot.local:
            return True
        return self.usable(slot)

    async def write(
        self,
        fkey: str,
        entry: Entry,
        leases: list[object | None] | None,
        now: float,
        overwrite: bool = False,
    ) -> bool:
        """Write bottom-up; stop (False) at the first tier that refuses a voided lease."""
        for index in range(len(self.slots) - 1, -1, -1):
            slot = self.slots[index]
            if not self.writable(slot, overwrite):
                continue
            lease = leases[index] if leases else None
            copy = self.copy_for(slot, entry, now)
            if slot.inline:
                stored = self.set_now(slot, fkey, copy, lease)
            else:
                stored = await self.call(slot, "set", slot.tier.set(fkey, copy, lease), True)
            if not stored:
                return False
            slot.stats.sets += 1
        return True

    async def write_many(self, entries: Mapping[str, Entry], now: float) -> None:
        """Explicit writes of several entries (overwrites: see ``writable``)."""
        for slot in reversed(self.slots):
            if self.writable(slot, True):
                capped = {k: self.copy_for(slot, e, now) for k, e in entries.items()}
                await self.call(slot, "set_many", slot.tier.set_many(capped), None)
                slot.stats.sets += len(entries)

    # -- invalidation ----------------------------------------------------------------------------
    async def invalidate(self, message: Invalidation, local_only: bool) -> None:
        """Apply ``message`` bottom-up (lower tiers first, so nothing refills from them).

        Open circuit breakers are not honoured here: an invalidation skipped because a
        tier failed a while ago would leave an old value to be served once it recovers.
        """
        for slot in reversed(self.slots):
            if local_only and not slot.local:
                continue
            tier = slot.tier
            if message.keys:
                await self.call(slot, "delete", tier.delete_many(list(message.keys)), 0)
                slot.stats.deletes += len(message.keys)
            if message.tags:
                await self.call(
                    slot, "invalidate_tags", tier.invalidate_tags(list(message.tags)), None
                )
            for prefix in message.prefixes:
                await self.call(slot, "delete_prefix", tier.delete_prefix(prefix), 0)

    async def clear(self, local_only: bool) -> None:
        """Remove every entry of the namespace, bottom-up."""
        for slot in reversed(self.slots):
            if not local_only or slot.local:
                await self.call(slot, "clear", slot.tier.clear(), None)

    def invalidate_local_now(self, message: Invalidation) -> None:
        """Apply ``message`` to local tiers without awaiting.

        Tiers with the sync API are done at once; an async-only local tier (an aiocache
        memory backend) gets a task on the running loop, done before its next read there.
        """
        for slot in self.slots:
            if slot.local and slot.sync:
                self._invalidate_sync(slot, slot.tier, message)
            elif slot.local:
                _schedule(self.invalidate(message, local_only=True))

    def _invalidate_sync(self, slot: TierSlot, tier: Any, message: Invalidation) -> None:
        if message.keys:
            keys = list(message.keys)
            self.call_sync(slot, "delete", lambda: tier.delete_many_sync(keys), 0)
        if message.tags:
            tags = list(message.tags)
            self.call_sync(slot, "invalidate_tags", lambda: tier.invalidate_tags_sync(tags), None)
        for prefix in message.prefixes:
            self.call_sync(slot, "delete_prefix", partial(tier.delete_prefix_sync, prefix), 0)

    def clear_local_now(self) -> None:
        """Empty every local tier at once (kills their entries, voids their leases)."""
        for slot in self.slots:
            if slot.local and slot.sync:
                tier: Any = slot.tier
                self.call_sync(slot, "clear", tier.clear_sync, None)
            elif slot.local:
                _schedule(self.call(slot, "clear", slot.tier.clear(), None))

    # -- stats -----------------------------------------------------------------------------------
    def stats(self, fast_hits: int) -> dict[str, dict[str, Any]]:
        """Per-tier counters; decorator fast-path hits are L1 hits."""
        result = {}
        for index, slot in enumerate(self.slots):
            data = slot.stats.as_dict(fast_hits if index == 0 else 0)
            data.update(slot.breaker.as_dict())
            for extra in ("evictions", "decode_errors", "dropped_writes", "node_errors"):
                if hasattr(slot.tier, extra):
                    data[extra] = getattr(slot.tier, extra)
            if hasattr(slot.tier, "__len__"):
                data["entries"] = len(slot.tier)  # type: ignore[arg-type]
            result[slot.name] = data
        return result


def raise_config(message: str) -> None:
    from ..core.errors import ConfigError

    raise ConfigError(message)


def _newer(entry: Entry, newer_than: float | None, now: float) -> bool:
    """With ``newer_than``: unexpired and created after it; otherwise always True."""
    if newer_than is None:
        return True
    return not entry.is_expired(now) and entry.created > newer_than


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
