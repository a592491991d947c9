"""Everyday primitives: ``add``, ``incr``/``decr``, ``touch``, ``ttl``, ``exists``, ``get_or_set_many``.

A read-modify-write (``add``, ``incr``, ``touch``) is decided on one tier, the
*authority*: the lowest tier of the stack, where every process's writes meet.

- Redis and SQL tiers offer a versioned read and a compare-and-set (a Lua script; a
  conditional UPSERT), so the update is atomic across processes: a conflicting writer
  makes the compare-and-set fail and the update is retried on the new value.
- An in-process memory tier as the authority (a memory-only cache) is updated under
  its own lock: atomic across the threads and tasks of the process, which is all
  that can see it.
- Any other tier (e.g. an aiocache backend) cannot do it atomically: these calls
  raise ``ConfigError`` rather than lose updates.

After the authority changed, the copies in the tiers above it are removed (bottom-up)
and the bus tells other processes to drop theirs, so the next read refills from the
authority. Without its authority an update has no right answer: when that tier fails
or its breaker is open, these calls raise ``TierError`` (the only calls that do).

Each decision is a pure function of ``engine.atomic`` driven by the async
mixin (``Cache``) and the blocking one (``SyncCache``), so both behave alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from ..core.errors import DeserializationError, TierError
from ..core.sentinel import Unset
from .atomic import (
    MISSING,
    RAISE,
    AtomicTier,
    Host,
    ManyLoader,
    Step,
    SyncHost,
    add_step,
    authority,
    check_delta,
    incr_step,
    initial_value,
    readable_versioned,
    readable_versioned_sync,
    remaining,
    touch_step,
    unique_keys,
    unreadable_answer,
    update_plan,
)
from .batchload import load_many, load_many_sync
from .entries import check_tags
from .policy import UNSET, check_loader


# -- async driver ---------------------------------------------------------------------------------
class AsyncPrimitives:
    """The primitives of ``Cache`` (mixed into it)."""

    async def modify(self, key: str, step: Step, unreadable: Any = RAISE) -> Any:
        """Apply ``step`` (an ``engine.atomic`` decision) to ``key`` on the authority tier;
        ``unreadable`` answers when the stored value cannot be opened (default: raise)."""
        cache = cast(Host, self)
        await cache.start()
        fkey = cache.full_key(key)
        slot = authority(cache)
        tier: Any = slot.tier
        plan = update_plan(cache, slot, fkey, step)
        try:
            request = next(plan)
            while True:
                operation, args = request
                try:
                    reply = await getattr(tier, operation)(*args)
                except DeserializationError as exc:
                    request = plan.throw(exc)
                else:
                    request = plan.send(reply)
        except StopIteration as stop:
            new, result, blocked = stop.value
        except TierError as exc:
            cache.tiers.failed(slot, exc.operation, exc)
            raise
        if blocked is not None:  # a value this process cannot open: not a tier failure
            return unreadable_answer(slot, blocked, unreadable)
        slot.breaker.success()
        if new is not None:
            slot.stats.sets += 1
            for upper in reversed(cache.tiers.slots[:-1]):
                await cache.tiers.call(upper, "delete", upper.tier.delete_many([fkey]), 0)
            await cache.invalidator.publish(cache.invalidator.overwrite((fkey,)))
        return result

    async def add(
        self, key: str, value: Any, *, ttl: float | Unset | None = UNSET, tags: Sequence[str] = ()
    ) -> bool:
        """Store ``value`` only if ``key`` holds no live entry; True if it was stored.

        Atomic across processes on a Redis or SQL lowest tier (see ``engine.primitives``).
        A live value this process cannot read (signed with a key it does not hold) counts as
        an entry: False. ``incr``/``decr``/``touch`` raise ``TierError`` on such a value.
        """
        cache = cast(Host, self)
        entry = cache.new_entry(value, cache.entry_policy(ttl), tags)
        return bool(await self.modify(key, add_step(entry), unreadable=False))

    async def incr(
        self,
        key: str,
        delta: int = 1,
        *,
        initial: int | None = 0,
        ttl: float | Unset | None = UNSET,
    ) -> int:
        """Add ``delta`` to the int under ``key`` atomically; returns the new value.

        A missing key starts at ``initial`` (``None``: raise ``KeyError`` instead) and lives
        ``ttl`` (default: the cache's); an existing one keeps its expiry and tags.

        Raises:
            MissingKeyError: the key is missing and ``initial`` is None.
            WrongTypeError: the key holds something other than an int.
            ConfigError: ``delta``/``initial`` are not ints, or no tier can do it atomically.
            TierError: the lowest tier is unavailable.
        """
        cache = cast(Host, self)
        step = incr_step(
            cache, key, check_delta(delta), initial_value(initial), cache.entry_policy(ttl)
        )
        return int(await self.modify(key, step))

    async def decr(
        self,
        key: str,
        delta: int = 1,
        *,
        initial: int | None = 0,
        ttl: float | Unset | None = UNSET,
    ) -> int:
        """``incr(key, -delta)``."""
        return await self.incr(key, -check_delta(delta), initial=initial, ttl=ttl)

    async def touch(self, key: str, ttl: float | Unset | None = UNSET) -> bool:
        """Give ``key`` a new lifetime of ``ttl`` from now (value and tags kept); False if absent."""
        cache = cast(Host, self)
        return bool(await self.modify(key, touch_step(cache, cache.entry_policy(ttl))))

    async def ttl(self, key: str) -> float | None:
        """Seconds until ``key`` expires, ``math.inf`` if it never does, None if it is absent.

        Read from the lowest tier (upper copies may be capped by their tier's TTL).
        """
        cache = cast(Host, self)
        await cache.start()
        fkey = cache.full_key(key)
        slot = cache.tiers.slots[-1]
        if isinstance(slot.tier, AtomicTier) and cache.tiers.usable(slot):
            found = await cache.tiers.call(
                slot, "get", readable_versioned(slot.tier, fkey), MISSING
            )
            if found is not MISSING:
                return remaining(found[0], cache.clock.time())
        return remaining(await cache.get_entry(key), cache.clock.time())

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a live (unexpired) entry."""
        return await cast(Host, self).get_entry(key) is not None

    async def get_or_set_many(
        self,
        keys: Iterable[str],
        loader: ManyLoader,
        *,
        ttl: float | Unset | None = UNSET,
        tags: Sequence[str] = (),
    ) -> dict[str, Any]:
        """``{key: value}`` for ``keys``: the cached ones, plus ``loader(missing_keys)``'s.

        ``loader`` (sync or async) gets the list of keys not cached and returns a mapping;
        its results are stored in one batch (``None`` only if the cache keeps ``None``).
        Keys it leaves out are absent from the result. A key whose load (by this call,
        ``get_or_set`` or another batch) is already running in this process joins that load;
        a single-key load starting while this one runs joins it.
        """
        cache = cast(Host, self)
        check_loader(loader)
        wanted = unique_keys(keys)
        tag_tuple = check_tags(tags)
        policy = cache.entry_policy(ttl)
        found = await cache.get_many(wanted)
        missing = [k for k in wanted if k not in found]
        if missing:
            found.update(await load_many(cache, missing, loader, policy, tag_tuple))
        return {k: found[k] for k in wanted if k in found}


# -- blocking driver ------------------------------------------------------------------------------
class SyncPrimitives:
    """The same primitives for ``cache.sync`` (mixed into ``SyncCache``)."""

    def modify(self, key: str, step: Step, unreadable: Any = RAISE) -> Any:
        """Apply ``step`` to ``key`` on the authority tier (blocking); see ``Cache.modify``."""
        sync = cast(SyncHost, self)
        cache = sync.cache
        sync.start()
        fkey = cache.full_key(key)
        slot = authority(cache)
        tier: Any = slot.tier
        if not slot.local and not slot.sync:
            return sync.portal.run(cache.modify(key, step, unreadable))
        plan = update_plan(cache, slot, fkey, step)
        try:
            request = next(plan)
            while True:
                operation, args = request
                try:
                    reply = getattr(tier, operation + "_sync")(*args)
                except DeserializationError as exc:
                    request = plan.throw(exc)
                else:
                    request = plan.send(reply)
        except StopIteration as stop:
            new, result, blocked = stop.value
        except TierError as exc:
            cache.tiers.failed(slot, exc.operation, exc)
            raise
        if blocked is not None:  # a value this process cannot open: not a tier failure
            return unreadable_answer(slot, blocked, unreadable)
        slot.breaker.success()
        if new is not None:
            slot.stats.sets += 1
            for upper in reversed(cache.tiers.slots[:-1]):
                sync.io.call(upper, "delete_many", 0, [fkey])
            sync.publish(cache.invalidator.overwrite((fkey,)))
        return result

    def add(
        self, key: str, value: Any, *, ttl: float | Unset | None = UNSET, tags: Sequence[str] = ()
    ) -> bool:
        """See ``Cache.add``."""
        cache = cast(SyncHost, self).cache
        entry = cache.new_entry(value, cache.entry_policy(ttl), tags)
        return bool(self.modify(key, add_step(entry), unreadable=False))

    def incr(
        self,
        key: str,
        delta: int = 1,
        *,
        initial: int | None = 0,
        ttl: float | Unset | None = UNSET,
    ) -> int:
        """See ``Cache.incr``."""
        cache = cast(SyncHost, self).cache
        step = incr_step(
            cache, key, check_delta(delta), initial_value(initial), cache.entry_policy(ttl)
        )
        return int(self.modify(key, step))

    def decr(
        self,
        key: str,
        delta: int = 1,
        *,
        initial: int | None = 0,
        ttl: float | Unset | None = UNSET,
    ) -> int:
        """See ``Cache.decr``."""
        return self.incr(key, -check_delta(delta), initial=initial, ttl=ttl)

    def touch(self, key: str, ttl: float | Unset | None = UNSET) -> bool:
        """See ``Cache.touch``."""
        cache = cast(SyncHost, self).cache
        return bool(self.modify(key, touch_step(cache, cache.entry_policy(ttl))))

    def ttl(self, key: str) -> float | None:
        """See ``Cache.ttl``."""
        sync = cast(SyncHost, self)
        cache = sync.cache
        sync.start()
        slot = cache.tiers.slots[-1]
        if isinstance(slot.tier, AtomicTier) and slot.sync and cache.tiers.usable(slot):
            fkey = cache.full_key(key)
            tier: Any = slot.tier
            found = cache.tiers.call_sync(
                slot, "get", lambda: readable_versioned_sync(tier, fkey), MISSING
            )
            if found is not MISSING:
                return remaining(found[0], cache.clock.time())
        return remaining(sync.get_entry(key), cache.clock.time())

    def exists(self, key: str) -> bool:
        """See ``Cache.exists``."""
        return cast(SyncHost, self).get_entry(key) is not None

    def get_or_set_many(
        self,
        keys: Iterable[str],
        loader: ManyLoader,
        *,
        ttl: float | Unset | None = UNSET,
        tags: Sequence[str] = (),
    ) -> dict[str, Any]:
        """See ``Cache.get_or_set_many`` (``loader`` sync or async: an async one runs on the
        cache's portal loop while this thread waits, as with ``get_or_set``)."""
        sync = cast(SyncHost, self)
        cache = sync.cache
        check_loader(loader)
        wanted = unique_keys(keys)
        tag_tuple = check_tags(tags)
        policy = cache.entry_policy(ttl)
        found = sync.get_many(wanted)
        missing = [k for k in wanted if k not in found]
        if missing:
            found.update(load_many_sync(sync, missing, loader, policy, tag_tuple))
        return {k: found[k] for k in wanted if k in found}
