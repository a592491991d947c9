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

Each decision is a pure function (``_add``, ``_incr``, ``_touch``) driven by the async
mixin (``Cache``) and the blocking one (``SyncCache``), so both behave alike.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, cast, runtime_checkable

from ..core.clock import Clock
from ..core.codec import EntryCodec
from ..core.entry import Entry
from ..core.errors import ConfigError, TierError
from ..core.fleet import Invalidation
from .entries import check_tags
from .invalidation import Invalidator
from .policy import UNSET, EntryPolicy
from .portal import Portal
from .stack import TierSlot, TierStack
from .sync_stack import SyncStack

#: compare-and-set attempts before giving up (each failure means another writer succeeded)
MAX_ATTEMPTS = 10_000
#: a decision: (entry to store or None for no write, result for the caller)
Step = Callable[[Entry | None, float], tuple[Entry | None, Any]]
ManyLoader = Callable[[list[str]], Any]


class Host(Protocol):
    """What the async primitives use of the ``Cache`` they are mixed into."""

    tiers: TierStack
    clock: Clock
    codec: EntryCodec
    invalidator: Invalidator

    @property
    def policy(self) -> EntryPolicy: ...

    async def start(self) -> None: ...

    def full_key(self, key: str) -> str: ...

    def entry_policy(self, ttl: Any = UNSET) -> EntryPolicy: ...

    def new_entry(self, value: Any, policy: EntryPolicy, tags: Sequence[str]) -> Entry: ...

    async def get_entry(self, key: str) -> Entry | None: ...

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]: ...

    async def _modify(self, key: str, step: Step) -> Any: ...


class SyncHost(Protocol):
    """What the blocking primitives use of the ``SyncCache`` they are mixed into."""

    io: SyncStack
    portal: Portal

    @property
    def cache(self) -> Host: ...

    def start(self) -> None: ...

    def get_entry(self, key: str) -> Entry | None: ...

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]: ...

    def publish(self, message: Invalidation) -> None: ...


@runtime_checkable
class AtomicTier(Protocol):
    """A tier that can update one key atomically (Redis, SQL)."""

    async def read_versioned(self, key: str) -> tuple[Entry | None, object]:
        """The live entry (or None) and a token naming what is stored (None: nothing)."""

    async def compare_and_set(self, key: str, token: object, entry: Entry) -> bool:
        """Store ``entry`` iff the key still holds what ``token`` names."""

    def read_versioned_sync(self, key: str) -> tuple[Entry | None, object]: ...

    def compare_and_set_sync(self, key: str, token: object, entry: Entry) -> bool: ...


# -- the decisions (no I/O) ---------------------------------------------------------------------
def _add(entry: Entry) -> Step:
    def step(current: Entry | None, now: float) -> tuple[Entry | None, bool]:
        return (None, False) if current is not None else (entry, True)

    return step


def _check_delta(delta: object) -> int:
    if type(delta) is not int:
        raise ConfigError(f"delta must be an int, not {delta!r} ({type(delta).__name__})")
    return delta


def _incr(cache: Host, key: str, delta: int, initial: int | None, policy: EntryPolicy) -> Step:
    def step(current: Entry | None, now: float) -> tuple[Entry | None, int]:
        if current is None:
            if initial is None:
                raise KeyError(key)
            value = initial + delta
            payload = cache.codec.dumps_value(value)
            return policy.make(value, now, (), payload=payload), value
        old = current.value
        if type(old) is not int:
            raise TypeError(
                f"incr/decr need an int under {key!r}, but it holds a {type(old).__name__}"
            )
        value = old + delta
        payload = cache.codec.dumps_value(value)
        new = dataclasses.replace(current, value=value, payload=payload, tag_versions={})
        return new, value

    return step


def _touch(cache: Host, policy: EntryPolicy) -> Step:
    def step(current: Entry | None, now: float) -> tuple[Entry | None, bool]:
        if current is None:
            return None, False
        payload = cache.codec.dumps_value(current.value)
        return policy.make(current.value, now, current.tags, current.cost, payload), True

    return step


def _initial(initial: object) -> int | None:
    if initial is not None and type(initial) is not int:
        raise ConfigError(f"initial must be an int or None, not {initial!r}")
    return initial


def _remaining(entry: Entry | None, now: float) -> float | None:
    if entry is None or entry.is_expired(now):
        return None
    return math.inf if entry.expires is None else entry.expires - now


def _authority(cache: Host) -> TierSlot:
    slot = cache.tiers.slots[-1]
    in_process = slot.local and slot.sync and callable(getattr(slot.tier, "locked", None))
    if not in_process and not isinstance(slot.tier, AtomicTier):
        raise ConfigError(
            f"add/incr/touch need a lowest tier that updates atomically (memory, Redis, SQL); "
            f"{slot.name!r} cannot"
        )
    if not slot.breaker.allow():
        slot.stats.skipped += 1
        raise TierError(slot.name, "atomic update", None)
    return slot


def _live(entry: Entry | None, now: float) -> Entry | None:
    return None if entry is None or entry.is_expired(now) else entry


# -- async driver ---------------------------------------------------------------------------------
class AsyncPrimitives:
    """The primitives of ``Cache`` (mixed into it)."""

    async def _modify(self, key: str, step: Step) -> Any:
        cache = cast(Host, self)
        await cache.start()
        fkey = cache.full_key(key)
        slot = _authority(cache)
        tier: Any = slot.tier
        try:
            for _ in range(MAX_ATTEMPTS):
                now = cache.clock.time()
                if slot.local:
                    new, result = _local_step(cache, slot, fkey, step, now)
                    stored = True
                else:
                    current, token = await tier.read_versioned(fkey)
                    new, result = step(_live(current, now), now)
                    stored = new is None or await tier.compare_and_set(
                        fkey, token, cache.tiers.copy_for(slot, new, now)
                    )
                if stored:
                    break
            else:
                raise TierError(slot.name, "atomic update", RuntimeError("too much contention"))
        except TierError as exc:
            cache.tiers.failed(slot, exc.operation, exc)
            raise
        slot.breaker.success()
        if new is not None:
            slot.stats.sets += 1
            for upper in reversed(cache.tiers.slots[:-1]):
                await cache.tiers.call(upper, "delete", upper.tier.delete_many([fkey]), 0)
            await cache.invalidator.publish(cache.invalidator.overwrite((fkey,)))
        return result

    async def add(
        self, key: str, value: Any, *, ttl: Any = UNSET, tags: Sequence[str] = ()
    ) -> bool:
        """Store ``value`` only if ``key`` holds no live entry; True if it was stored.

        Atomic across processes on a Redis or SQL lowest tier (see ``engine.primitives``).
        """
        cache = cast(Host, self)
        entry = cache.new_entry(value, cache.entry_policy(ttl), tags)
        return bool(await self._modify(key, _add(entry)))

    async def incr(
        self, key: str, delta: int = 1, *, initial: int | None = 0, ttl: Any = UNSET
    ) -> int:
        """Add ``delta`` to the int under ``key`` atomically; returns the new value.

        A missing key starts at ``initial`` (``None``: raise ``KeyError`` instead) and lives
        ``ttl`` (default: the cache's); an existing one keeps its expiry and tags.

        Raises:
            KeyError: the key is missing and ``initial`` is None.
            TypeError: the key holds something other than an int.
            ConfigError: ``delta``/``initial`` are not ints, or no tier can do it atomically.
            TierError: the lowest tier is unavailable.
        """
        cache = cast(Host, self)
        step = _incr(cache, key, _check_delta(delta), _initial(initial), cache.entry_policy(ttl))
        return int(await self._modify(key, step))

    async def decr(
        self, key: str, delta: int = 1, *, initial: int | None = 0, ttl: Any = UNSET
    ) -> int:
        """``incr(key, -delta)``."""
        return await self.incr(key, -_check_delta(delta), initial=initial, ttl=ttl)

    async def touch(self, key: str, ttl: Any = UNSET) -> bool:
        """Give ``key`` a new lifetime of ``ttl`` from now (value and tags kept); False if absent."""
        cache = cast(Host, self)
        return bool(await self._modify(key, _touch(cache, cache.entry_policy(ttl))))

    async def ttl(self, key: str) -> float | None:
        """Seconds until ``key`` expires, ``math.inf`` if it never does, None if it is absent.

        Read from the lowest tier (upper copies may be capped by their tier's TTL).
        """
        cache = cast(Host, self)
        await cache.start()
        fkey = cache.full_key(key)
        slot = cache.tiers.slots[-1]
        if isinstance(slot.tier, AtomicTier) and cache.tiers.usable(slot):
            found = await cache.tiers.call(slot, "get", slot.tier.read_versioned(fkey), MISSING)
            if found is not MISSING:
                return _remaining(found[0], cache.clock.time())
        return _remaining(await cache.get_entry(key), cache.clock.time())

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a live (unexpired) entry."""
        return await cast(Host, self).get_entry(key) is not None

    async def get_or_set_many(
        self,
        keys: Iterable[str],
        loader: ManyLoader,
        *,
        ttl: Any = UNSET,
        tags: Sequence[str] = (),
    ) -> dict[str, Any]:
        """``{key: value}`` for ``keys``: the cached ones, plus ``loader(missing_keys)``'s.

        ``loader`` (sync or async) gets the list of keys not cached and returns a mapping;
        its results are stored in one batch (``None`` only if the cache keeps ``None``).
        Keys it leaves out are absent from the result. Not single-flight per key.
        """
        cache = cast(Host, self)
        wanted = _keys(keys)
        tag_tuple = check_tags(tags)
        policy = cache.entry_policy(ttl)
        found = await cache.get_many(wanted)
        missing = [k for k in wanted if k not in found]
        if missing:
            # leases first, as a read-through load takes them: an invalidation that comes
            # while the loader runs voids them, and the (now stale) results are not stored
            fkeys = {k: cache.full_key(k) for k in missing}
            leases = await asyncio.gather(
                *(cache.tiers.leases(fkeys[k], tag_tuple) for k in missing)
            )
            loaded = loader(missing)
            if inspect.isawaitable(loaded):
                loaded = await loaded
            fresh = _loaded(loaded, missing)
            now = cache.clock.time()
            for key, held in zip(missing, leases, strict=True):
                if key in fresh and (fresh[key] is not None or cache.policy.cache_none):
                    entry = cache.new_entry(fresh[key], policy, tag_tuple)
                    await cache.tiers.write(fkeys[key], entry, held, now)
            found.update(fresh)
        return {k: found[k] for k in wanted if k in found}


MISSING: Any = object()


def _local_step(cache: Host, slot: Any, fkey: str, step: Step, now: float) -> tuple[Any, Any]:
    """``step`` on an in-process authority, atomic under the tier's own (reentrant) lock."""
    tier = slot.tier
    with tier.locked():
        new, result = step(_live(tier.get_sync(fkey), now), now)
        if new is not None:
            tier.set_sync(fkey, cache.tiers.copy_for(slot, new, now))
    return new, result


def _keys(keys: Iterable[str]) -> list[str]:
    """``keys`` without repeats; a bare string is refused (it would be its characters)."""
    if isinstance(keys, str):
        raise ConfigError("keys must be a list of strings, not a single string")
    return list(dict.fromkeys(keys))


def _loaded(loaded: object, missing: list[str]) -> dict[str, Any]:
    if not isinstance(loaded, Mapping):
        raise TypeError(
            f"get_or_set_many's loader must return a mapping, not {type(loaded).__name__}"
        )
    asked = set(missing)
    return {k: v for k, v in loaded.items() if k in asked}


# -- blocking driver ------------------------------------------------------------------------------
class SyncPrimitives:
    """The same primitives for ``cache.sync`` (mixed into ``SyncCache``)."""

    def _modify(self, key: str, step: Step) -> Any:
        sync = cast(SyncHost, self)
        cache = sync.cache
        sync.start()
        fkey = cache.full_key(key)
        slot = _authority(cache)
        tier: Any = slot.tier
        if not slot.local and not slot.sync:
            return sync.portal.run(cache._modify(key, step))
        try:
            for _ in range(MAX_ATTEMPTS):
                now = cache.clock.time()
                if slot.local:
                    new, result = _local_step(cache, slot, fkey, step, now)
                    stored = True
                else:
                    current, token = tier.read_versioned_sync(fkey)
                    new, result = step(_live(current, now), now)
                    stored = new is None or tier.compare_and_set_sync(
                        fkey, token, cache.tiers.copy_for(slot, new, now)
                    )
                if stored:
                    break
            else:
                raise TierError(slot.name, "atomic update", RuntimeError("too much contention"))
        except TierError as exc:
            cache.tiers.failed(slot, exc.operation, exc)
            raise
        slot.breaker.success()
        if new is not None:
            slot.stats.sets += 1
            for upper in reversed(cache.tiers.slots[:-1]):
                sync.io.call(upper, "delete_many", 0, [fkey])
            sync.publish(cache.invalidator.overwrite((fkey,)))
        return result

    def add(self, key: str, value: Any, *, ttl: Any = UNSET, tags: Sequence[str] = ()) -> bool:
        """See ``Cache.add``."""
        cache = cast(SyncHost, self).cache
        entry = cache.new_entry(value, cache.entry_policy(ttl), tags)
        return bool(self._modify(key, _add(entry)))

    def incr(self, key: str, delta: int = 1, *, initial: int | None = 0, ttl: Any = UNSET) -> int:
        """See ``Cache.incr``."""
        cache = cast(SyncHost, self).cache
        step = _incr(cache, key, _check_delta(delta), _initial(initial), cache.entry_policy(ttl))
        return int(self._modify(key, step))

    def decr(self, key: str, delta: int = 1, *, initial: int | None = 0, ttl: Any = UNSET) -> int:
        """See ``Cache.decr``."""
        return self.incr(key, -_check_delta(delta), initial=initial, ttl=ttl)

    def touch(self, key: str, ttl: Any = UNSET) -> bool:
        """See ``Cache.touch``."""
        cache = cast(SyncHost, self).cache
        return bool(self._modify(key, _touch(cache, cache.entry_policy(ttl))))

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
                slot, "get", lambda: tier.read_versioned_sync(fkey), MISSING
            )
            if found is not MISSING:
                return _remaining(found[0], cache.clock.time())
        return _remaining(sync.get_entry(key), cache.clock.time())

    def exists(self, key: str) -> bool:
        """See ``Cache.exists``."""
        return cast(SyncHost, self).get_entry(key) is not None

    def get_or_set_many(
        self,
        keys: Iterable[str],
        loader: ManyLoader,
        *,
        ttl: Any = UNSET,
        tags: Sequence[str] = (),
    ) -> dict[str, Any]:
        """See ``Cache.get_or_set_many`` (``loader`` is a sync callable)."""
        sync = cast(SyncHost, self)
        cache = sync.cache
        wanted = _keys(keys)
        tag_tuple = check_tags(tags)
        policy = cache.entry_policy(ttl)
        found = sync.get_many(wanted)
        missing = [k for k in wanted if k not in found]
        if missing:
            fkeys = {k: cache.full_key(k) for k in missing}  # leased as Cache.get_or_set_many
            leases = [sync.io.leases(fkeys[k], tag_tuple) for k in missing]
            loaded = loader(missing)
            if inspect.isawaitable(loaded):
                raise TypeError("cache.sync.get_or_set_many needs a sync loader")
            fresh = _loaded(loaded, missing)
            for key, held in zip(missing, leases, strict=True):
                if key in fresh and (fresh[key] is not None or cache.policy.cache_none):
                    sync.io.write(
                        fkeys[key],
                        cache.new_entry(fresh[key], policy, tag_tuple),
                        held,
                        cache.clock.time(),
                    )
            found.update(fresh)
        return {k: found[k] for k in wanted if k in found}
