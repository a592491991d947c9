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
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from ..core.entry import Entry
from ..core.errors import (
    CacheKeyError,
    ConfigError,
    DeserializationError,
    MissingKeyError,
    TierError,
    WrongTypeError,
)
from ..core.fleet import Invalidation
from ..core.keys import MAX_KEY_LENGTH
from ..core.sentinel import Unset
from .policy import UNSET, EntryPolicy

if TYPE_CHECKING:
    from .cache import Cache
    from .stack import TierSlot
    from .sync import SyncCache

#: compare-and-set attempts before giving up (each failure means another writer succeeded)
MAX_ATTEMPTS = 10_000
#: a decision: (entry to store or None for no write, result for the caller)
Step = Callable[[Entry | None, float], tuple[Entry | None, Any]]
ManyLoader = Callable[[list[str]], Any]


@runtime_checkable
class AtomicTier(Protocol):
    """A tier that can update one key atomically (Redis, SQL)."""

    async def read_versioned(self, key: str) -> tuple[Entry | None, object]:
        """The live entry (or None) and a token naming what is stored (None: nothing)."""

    async def compare_and_set(self, key: str, token: object, entry: Entry) -> bool:
        """Store ``entry`` iff the key still holds what ``token`` names."""

    def read_versioned_sync(self, key: str) -> tuple[Entry | None, object]: ...

    def compare_and_set_sync(self, key: str, token: object, entry: Entry) -> bool: ...


def check_tags(tags: object) -> tuple[str, ...]:
    """``tags`` as a tuple of non-empty strings, checked at the call (never a tier's failure).

    Raises:
        ConfigError: ``tags`` is a single string or not iterable.
        CacheKeyError: a tag is not a non-empty string (as ``invalidate(tags=...)`` says).
    """
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise ConfigError(f"tags must be a list of strings, not {tags!r}")
    checked = tuple(tags)
    for tag in checked:
        if not isinstance(tag, str) or not tag:
            raise CacheKeyError(f"each tag must be a non-empty string, not {tag!r}")
        if len(tag) > MAX_KEY_LENGTH:
            raise CacheKeyError(
                f"a tag is {len(tag)} characters long; the limit is {MAX_KEY_LENGTH}"
            )
    return checked


# -- the decisions (no I/O) ---------------------------------------------------------------------
def _add(entry: Entry) -> Step:
    def step(current: Entry | None, now: float) -> tuple[Entry | None, bool]:
        return (None, False) if current is not None else (entry, True)

    return step


def _check_delta(delta: object) -> int:
    if type(delta) is not int:
        raise ConfigError(f"delta must be an int, not {delta!r} ({type(delta).__name__})")
    return delta


def _incr(cache: Cache, key: str, delta: int, initial: int | None, policy: EntryPolicy) -> Step:
    def step(current: Entry | None, now: float) -> tuple[Entry | None, int]:
        if current is None:
            if initial is None:
                raise MissingKeyError(key)
            value = initial + delta
            payload = cache.codec.dumps_value(value)
            return policy.make(value, now, (), payload=payload), value
        old = current.value
        if type(old) is not int:
            raise WrongTypeError(
                f"incr/decr need an int under {key!r}, but it holds a {type(old).__name__}"
            )
        value = old + delta
        payload = cache.codec.dumps_value(value)
        new = dataclasses.replace(current, value=value, payload=payload, tag_versions={})
        return new, value

    return step


def _touch(cache: Cache, policy: EntryPolicy) -> Step:
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


def _authority(cache: Cache) -> TierSlot:
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


#: ``_modify``'s ``unreadable`` default: raise when the authority holds what cannot be read
RAISE: Any = object()


def _unreadable(slot: TierSlot, exc: DeserializationError, result: Any) -> Any:
    """The answer when the authority holds a value this process cannot open (mid-way through
    a key rotation): ``result`` if the operation has a safe one, else a clear ``TierError``.
    Never "absent": that would overwrite a value other processes read. Not a tier failure."""
    if result is not RAISE:
        return result
    raise TierError(slot.name, "atomic update", exc) from exc


# -- async driver ---------------------------------------------------------------------------------
class AsyncPrimitives:
    """The primitives of ``Cache`` (mixed into it)."""

    async def _modify(self, key: str, step: Step, unreadable: Any = RAISE) -> Any:
        cache = cast("Cache", self)
        await cache.start()
        fkey = cache.full_key(key)
        slot = _authority(cache)
        tier: Any = slot.tier
        blocked: DeserializationError | None = None
        try:
            for _ in range(MAX_ATTEMPTS):
                now = cache.clock.time()
                if slot.local:
                    new, result = _local_step(cache, slot, fkey, step, now)
                    stored = True
                else:
                    try:
                        current, token = await tier.read_versioned(fkey)
                    except DeserializationError as exc:
                        blocked = exc  # answered below, outside the tier-failure handler
                        break
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
        if blocked is not None:
            return _unreadable(slot, blocked, unreadable)
        slot.breaker.success()
        if new is not None:
            slot.stats.sets += 1
            for upper in reversed(cache.tiers.slots[:-1]):
                await cache.tiers.call(upper, "delete", upper.tier.delete_many([fkey]), 0)
            await cache._publish(
                Invalidation(keys=(fkey,), reason="overwrite", origin=cache.origin)
            )
        return result

    async def add(
        self, key: str, value: Any, *, ttl: float | Unset | None = UNSET, tags: Sequence[str] = ()
    ) -> bool:
        """Store ``value`` only if ``key`` holds no live entry; True if it was stored.

        Atomic across processes on a Redis or SQL lowest tier (see ``engine.primitives``).
        A live value this process cannot read (signed with a key it does not hold) counts as
        an entry: False. ``incr``/``decr``/``touch`` raise ``TierError`` on such a value.
        """
        cache = cast("Cache", self)
        entry = cache._new_entry(value, cache.entry_policy(ttl), tags)
        return bool(await self._modify(key, _add(entry), unreadable=False))

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
            KeyError: the key is missing and ``initial`` is None.
            TypeError: the key holds something other than an int.
            ConfigError: ``delta``/``initial`` are not ints, or no tier can do it atomically.
            TierError: the lowest tier is unavailable.
        """
        cache = cast("Cache", self)
        step = _incr(cache, key, _check_delta(delta), _initial(initial), cache.entry_policy(ttl))
        return int(await self._modify(key, step))

    async def decr(
        self,
        key: str,
        delta: int = 1,
        *,
        initial: int | None = 0,
        ttl: float | Unset | None = UNSET,
    ) -> int:
        """``incr(key, -delta)``."""
        return await self.incr(key, -_check_delta(delta), initial=initial, ttl=ttl)

    async def touch(self, key: str, ttl: float | Unset | None = UNSET) -> bool:
        """Give ``key`` a new lifetime of ``ttl`` from now (value and tags kept); False if absent."""
        cache = cast("Cache", self)
        return bool(await self._modify(key, _touch(cache, cache.entry_policy(ttl))))

    async def ttl(self, key: str) -> float | None:
        """Seconds until ``key`` expires, ``math.inf`` if it never does, None if it is absent.

        Read from the lowest tier (upper copies may be capped by their tier's TTL).
        """
        cache = cast("Cache", self)
        await cache.start()
        fkey = cache.full_key(key)
        slot = cache.tiers.slots[-1]
        if isinstance(slot.tier, AtomicTier) and cache.tiers.usable(slot):
            read = _readable_versioned(slot.tier, fkey)
            found = await cache.tiers.call(slot, "get", read, MISSING)
            if found is not MISSING:
                return _remaining(found[0], cache.clock.time())
        return _remaining(await cache.get_entry(key), cache.clock.time())

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a live (unexpired) entry."""
        return await cast("Cache", self).get_entry(key) is not None

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
        Keys it leaves out are absent from the result. Not single-flight per key.
        """
        cache = cast("Cache", self)
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
                    entry = cache._new_entry(fresh[key], policy, tag_tuple)
                    await cache.tiers.write(fkeys[key], entry, held, now)
            found.update(fresh)
        return {k: found[k] for k in wanted if k in found}


MISSING: Any = object()


async def _readable_versioned(tier: Any, fkey: str) -> Any:
    """``read_versioned``, with a value this process cannot open as MISSING (a read: a miss)."""
    try:
        return await tier.read_versioned(fkey)
    except DeserializationError:
        return MISSING


def _readable_versioned_sync(tier: Any, fkey: str) -> Any:
    try:
        return tier.read_versioned_sync(fkey)
    except DeserializationError:
        return MISSING


def _local_step(cache: Any, slot: Any, fkey: str, step: Step, now: float) -> tuple[Any, Any]:
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
        raise WrongTypeError(
            f"get_or_set_many's loader must return a mapping, not {type(loaded).__name__}"
        )
    asked = set(missing)
    return {k: v for k, v in loaded.items() if k in asked}


# -- blocking driver ------------------------------------------------------------------------------
class SyncPrimitives:
    """The same primitives for ``cache.sync`` (mixed into ``SyncCache``)."""

    def _modify(self, key: str, step: Step, unreadable: Any = RAISE) -> Any:
        sync = cast("SyncCache", self)
        cache = sync.cache
        sync.start()
        fkey = cache.full_key(key)
        slot = _authority(cache)
        tier: Any = slot.tier
        if not slot.local and not slot.sync:
            return sync.portal.run(cache._modify(key, step, unreadable))
        blocked: DeserializationError | None = None
        try:
            for _ in range(MAX_ATTEMPTS):
                now = cache.clock.time()
                if slot.local:
                    new, result = _local_step(cache, slot, fkey, step, now)
                    stored = True
                else:
                    try:
                        current, token = tier.read_versioned_sync(fkey)
                    except DeserializationError as exc:
                        blocked = exc  # answered below, outside the tier-failure handler
                        break
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
        if blocked is not None:
            return _unreadable(slot, blocked, unreadable)
        slot.breaker.success()
        if new is not None:
            slot.stats.sets += 1
            for upper in reversed(cache.tiers.slots[:-1]):
                sync.io.call(upper, "delete_many", 0, [fkey])
            sync._publish(Invalidation(keys=(fkey,), reason="overwrite", origin=cache.origin))
        return result

    def add(
        self, key: str, value: Any, *, ttl: float | Unset | None = UNSET, tags: Sequence[str] = ()
    ) -> bool:
        """See ``Cache.add``."""
        cache = cast("SyncCache", self).cache
        entry = cache._new_entry(value, cache.entry_policy(ttl), tags)
        return bool(self._modify(key, _add(entry), unreadable=False))

    def incr(
        self,
        key: str,
        delta: int = 1,
        *,
        initial: int | None = 0,
        ttl: float | Unset | None = UNSET,
    ) -> int:
        """See ``Cache.incr``."""
        cache = cast("SyncCache", self).cache
        step = _incr(cache, key, _check_delta(delta), _initial(initial), cache.entry_policy(ttl))
        return int(self._modify(key, step))

    def decr(
        self,
        key: str,
        delta: int = 1,
        *,
        initial: int | None = 0,
        ttl: float | Unset | None = UNSET,
    ) -> int:
        """See ``Cache.decr``."""
        return self.incr(key, -_check_delta(delta), initial=initial, ttl=ttl)

    def touch(self, key: str, ttl: float | Unset | None = UNSET) -> bool:
        """See ``Cache.touch``."""
        cache = cast("SyncCache", self).cache
        return bool(self._modify(key, _touch(cache, cache.entry_policy(ttl))))

    def ttl(self, key: str) -> float | None:
        """See ``Cache.ttl``."""
        sync = cast("SyncCache", self)
        cache = sync.cache
        sync.start()
        slot = cache.tiers.slots[-1]
        if isinstance(slot.tier, AtomicTier) and slot.sync and cache.tiers.usable(slot):
            fkey = cache.full_key(key)
            tier: Any = slot.tier
            found = cache.tiers.call_sync(
                slot, "get", lambda: _readable_versioned_sync(tier, fkey), MISSING
            )
            if found is not MISSING:
                return _remaining(found[0], cache.clock.time())
        return _remaining(sync.get_entry(key), cache.clock.time())

    def exists(self, key: str) -> bool:
        """See ``Cache.exists``."""
        return cast("SyncCache", self).get_entry(key) is not None

    def get_or_set_many(
        self,
        keys: Iterable[str],
        loader: ManyLoader,
        *,
        ttl: float | Unset | None = UNSET,
        tags: Sequence[str] = (),
    ) -> dict[str, Any]:
        """See ``Cache.get_or_set_many`` (``loader`` is a sync callable)."""
        sync = cast("SyncCache", self)
        cache = sync.cache
        wanted = _keys(keys)
        tag_tuple = check_tags(tags)
        policy = cache.entry_policy(ttl)
        found = sync.get_many(wanted)
        missing = [k for k in wanted if k not in found]
        if missing:
            fkeys = {k: cache.full_key(k) for k in missing}  # leased as Cache.get_or_set_many
            leases = [sync.leases(fkeys[k], tag_tuple) for k in missing]
            loaded = loader(missing)
            if inspect.isawaitable(loaded):
                raise WrongTypeError("cache.sync.get_or_set_many needs a sync loader")
            fresh = _loaded(loaded, missing)
            for key, held in zip(missing, leases, strict=True):
                if key in fresh and (fresh[key] is not None or cache.policy.cache_none):
                    sync._write(fkeys[key], cache._new_entry(fresh[key], policy, tag_tuple), held)
            found.update(fresh)
        return {k: found[k] for k in wanted if k in found}
