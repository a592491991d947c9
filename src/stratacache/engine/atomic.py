"""Read-modify-write decisions (no I/O) for ``engine.primitives``' two drivers.

``add``, ``incr``/``decr`` and ``touch`` are decided on one tier, the *authority*
(the lowest tier of the stack); each decision is a pure ``Step`` from the entry
found there (or None) to the entry to store and the caller's result. ``Host``
and ``SyncHost`` say what the drivers use of the clients they are mixed into.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from ..core.clock import Clock
from ..core.codec import EntryCodec
from ..core.entry import Entry
from ..core.errors import (
    ConfigError,
    DeserializationError,
    MissingKeyError,
    TierError,
    WrongTypeError,
)
from ..core.fleet import Invalidation
from ..core.portal import Portal
from .invalidation import Invalidator
from .policy import UNSET, EntryPolicy
from .readthrough import ReadThrough
from .stack import TierSlot, TierStack
from .sync_readthrough import SyncReadThrough
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
    readthrough: ReadThrough

    @property
    def policy(self) -> EntryPolicy: ...

    async def start(self) -> None: ...

    def full_key(self, key: str) -> str: ...

    def entry_policy(self, ttl: Any = UNSET) -> EntryPolicy: ...

    def new_entry(self, value: Any, policy: EntryPolicy, tags: Sequence[str]) -> Entry: ...

    async def get_entry(self, key: str) -> Entry | None: ...

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]: ...

    async def modify(self, key: str, step: Step, unreadable: Any = ...) -> Any: ...


class SyncHost(Protocol):
    """What the blocking primitives use of the ``SyncCache`` they are mixed into."""

    io: SyncStack
    portal: Portal
    loading: SyncReadThrough

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
def add_step(entry: Entry) -> Step:
    def step(current: Entry | None, now: float) -> tuple[Entry | None, bool]:
        return (None, False) if current is not None else (entry, True)

    return step


def check_delta(delta: object) -> int:
    if type(delta) is not int:
        raise ConfigError(f"delta must be an int, not {delta!r} ({type(delta).__name__})")
    return delta


def incr_step(cache: Host, key: str, delta: int, initial: int | None, policy: EntryPolicy) -> Step:
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


def touch_step(cache: Host, policy: EntryPolicy) -> Step:
    def step(current: Entry | None, now: float) -> tuple[Entry | None, bool]:
        if current is None:
            return None, False
        payload = cache.codec.dumps_value(current.value)
        return policy.make(current.value, now, current.tags, current.cost, payload), True

    return step


def initial_value(initial: object) -> int | None:
    if initial is not None and type(initial) is not int:
        raise ConfigError(f"initial must be an int or None, not {initial!r}")
    return initial


def remaining(entry: Entry | None, now: float) -> float | None:
    if entry is None or entry.is_expired(now):
        return None
    return math.inf if entry.expires is None else entry.expires - now


def authority(cache: Host) -> TierSlot:
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


def live(entry: Entry | None, now: float) -> Entry | None:
    return None if entry is None or entry.is_expired(now) else entry


MISSING: Any = object()


def local_step(cache: Host, slot: Any, fkey: str, step: Step, now: float) -> tuple[Any, Any]:
    """``step`` on an in-process authority, atomic under the tier's own (reentrant) lock."""
    tier = slot.tier
    with tier.locked():
        new, result = step(live(tier.get_sync(fkey), now), now)
        if new is not None:
            tier.set_sync(fkey, cache.tiers.copy_for(slot, new, now))
    return new, result


def unique_keys(keys: Iterable[str]) -> list[str]:
    """``keys`` without repeats; a bare string is refused (it would be its characters)."""
    if isinstance(keys, str):
        raise ConfigError("keys must be a list of strings, not a single string")
    return list(dict.fromkeys(keys))


def loaded_subset(loaded: object, missing: list[str]) -> dict[str, Any]:
    if not isinstance(loaded, Mapping):
        raise WrongTypeError(
            f"get_or_set_many's loader must return a mapping, not {type(loaded).__name__}"
        )
    asked = set(missing)
    return {k: v for k, v in loaded.items() if k in asked}


#: ``modify``'s ``unreadable`` default: raise when the authority holds what cannot be read
RAISE: Any = object()


def unreadable_answer(slot: TierSlot, exc: DeserializationError, result: Any) -> Any:
    """The answer when the authority holds a value this process cannot open (mid-way through
    a key rotation): ``result`` if the operation has a safe one, else a clear ``TierError``.
    Never "absent": that would overwrite a value other processes read. Not a tier failure."""
    if result is not RAISE:
        return result
    raise TierError(slot.name, "atomic update", exc) from exc


async def readable_versioned(tier: Any, fkey: str) -> Any:
    """``read_versioned``, with a value this process cannot open as MISSING (a read: a miss)."""
    try:
        return await tier.read_versioned(fkey)
    except DeserializationError:
        return MISSING


def readable_versioned_sync(tier: Any, fkey: str) -> Any:
    """``readable_versioned``, blocking."""
    try:
        return tier.read_versioned_sync(fkey)
    except DeserializationError:
        return MISSING


#: what ``update_plan`` asks its driver: a call on the authority tier (``read_versioned`` or
#: ``compare_and_set``, blocking twins for the blocking driver) and its arguments
TierRequest = tuple[str, tuple[Any, ...]]


def update_plan(
    cache: Host, slot: TierSlot, fkey: str, step: Step
) -> Generator[TierRequest, Any, tuple[Entry | None, Any, DeserializationError | None]]:
    """The compare-and-set loop of ``modify``, free of I/O: ``(new entry, result, blocked)``.

    A driver answers each request with the tier's reply (throwing a decode error in).
    A value this process cannot open ends the loop with that error as ``blocked``, for the
    driver to answer outside its tier-failure handling (``unreadable_answer``). Raises
    ``TierError`` after ``MAX_ATTEMPTS`` lost races.
    """
    for _ in range(MAX_ATTEMPTS):
        now = cache.clock.time()
        if slot.local:
            new, result = local_step(cache, slot, fkey, step, now)
            return new, result, None
        try:
            current, token = yield "read_versioned", (fkey,)
        except DeserializationError as exc:
            return None, None, exc
        new, result = step(live(current, now), now)
        if new is None:
            return new, result, None
        if (yield "compare_and_set", (fkey, token, cache.tiers.copy_for(slot, new, now))):
            return new, result, None
    raise TierError(slot.name, "atomic update", RuntimeError("too much contention"))
