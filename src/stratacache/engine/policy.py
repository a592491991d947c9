"""I/O-free freshness policy shared by the async engine and the sync facade."""

from __future__ import annotations

import dataclasses
import enum
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

from ..core.durations import MAX_SECONDS, MIN_SECONDS, check_fraction, check_optional
from ..core.entry import Entry
from ..core.errors import ConfigError
from ..core.sentinel import UNSET as UNSET  # re-exported: the typed default sentinel

_PLAIN = (float, int)  # exact types: bool, a subclass of int, is never a duration


class Freshness(enum.Enum):
    """What a reader may do with an entry it found."""

    FRESH = "fresh"  # serve
    EARLY = "early"  # serve, and refresh in the background (XFetch drew an early recompute)
    STALE = "stale"  # past the soft TTL: serve, refresh in the background (stale-while-revalidate)
    EXPIRED = "expired"  # past the hard TTL: load; serve only if the loader fails (stale-if-error)


def classify(entry: Entry, now: float, beta: float, rand: float | None = None) -> Freshness:
    """Decide how fresh ``entry`` is at ``now``; XFetch (Vattani et al.) with weight ``beta``."""
    if entry.expires is not None and now >= entry.expires:
        return Freshness.EXPIRED
    soft = entry.refresh_after if entry.refresh_after is not None else entry.expires
    if soft is None:
        return Freshness.FRESH
    if now >= soft:
        return Freshness.STALE
    if beta > 0 and entry.cost > 0:
        r = rand if rand is not None else random.random()
        if now - entry.cost * beta * math.log(max(r, 1e-300)) >= soft:
            return Freshness.EARLY
    return Freshness.FRESH


@dataclasses.dataclass(frozen=True, slots=True)
class EntryPolicy:
    """How long a newly written entry lives: TTLs are seconds relative to the write.

    Every duration passes ``check_duration`` (``ConfigError`` naming the field otherwise):
    ``ttl=None`` means no expiry, ``refresh_after=None`` no soft TTL, ``stale_ttl=None``
    or 0 no stale-if-error window; ``jitter`` is a fraction in [0, 1].
    """

    ttl: float | None
    refresh_after: float | None = None
    stale_ttl: float = 0.0
    jitter: float = 0.0
    cache_none: bool = True
    #: a predicate on a loaded value: store it only when this returns True (None: always)
    store_if: Callable[[Any], bool] | None = None

    def stores(self, value: object) -> bool:
        """Whether a loaded ``value`` is written to the tiers (``cache_none`` and ``store_if``)."""
        if value is None and not self.cache_none:
            return False
        return self.store_if is None or bool(self.store_if(value))

    def __post_init__(self) -> None:
        ttl, soft, stale = self.ttl, self.refresh_after, self.stale_ttl
        if not (  # plain in-range numbers (the common case) skip the full check
            (ttl is None or (type(ttl) in _PLAIN and MIN_SECONDS <= ttl <= MAX_SECONDS))
            and (soft is None or (type(soft) in _PLAIN and MIN_SECONDS <= soft <= MAX_SECONDS))
            and type(stale) in _PLAIN
            and (stale == 0 or MIN_SECONDS <= stale <= MAX_SECONDS)
            and type(self.jitter) in _PLAIN
            and 0 <= self.jitter <= 1
        ):
            # frozen: normalize through object.__setattr__ (None stale_ttl is 0)
            init = object.__setattr__
            init(self, "ttl", check_optional("ttl", ttl))
            init(self, "refresh_after", check_optional("refresh_after", soft))
            init(self, "stale_ttl", check_optional("stale_ttl", stale, zero_ok=True) or 0.0)
            init(self, "jitter", check_fraction("jitter", self.jitter))
        if (
            self.refresh_after is not None
            and self.ttl is not None
            and self.refresh_after > self.ttl
        ):
            raise ConfigError("refresh_after must not exceed ttl")

    def make(
        self,
        value: object,
        now: float,
        tags: Sequence[str] = (),
        cost: float = 0.0,
        payload: bytes | None = None,
    ) -> Entry:
        """A new entry for ``value`` written at ``now``; jitter stretches TTLs by up to ``jitter``."""
        stretch = 1.0 + random.random() * self.jitter if self.jitter else 1.0
        expires = None if self.ttl is None else now + self.ttl * stretch
        soft = None if self.refresh_after is None else now + self.refresh_after * stretch
        stale_until = None if expires is None else expires + self.stale_ttl
        return Entry(
            value=value,
            created=now,
            expires=expires,
            refresh_after=soft,
            stale_until=stale_until,
            cost=cost,
            tags=tuple(tags),
            size=len(payload) if payload is not None else 0,
            payload=payload,
        )


def cap(entry: Entry, tier_ttl: float | None, now: float, local: bool = False) -> Entry:
    """A copy of ``entry`` as one tier may keep it: within its TTL cap ``tier_ttl``.

    Each tier gets its own object, so a memory tier killing its copy never kills another's;
    ``local`` tiers keep the value object, not its serialized ``payload``.
    """
    end = entry.stale_until if entry.stale_until is not None else entry.expires
    limit = None if tier_ttl is None else now + tier_ttl
    if limit is None or (end is not None and end <= limit):
        return Entry(  # not dataclasses.replace: this runs on every write and backfill
            entry.value,
            entry.created,
            entry.expires,
            entry.refresh_after,
            entry.stale_until,
            entry.cost,
            entry.tags,
            entry.tag_versions,
            entry.size,
            payload=None if local else entry.payload,
        )
    return Entry(
        value=entry.value,
        created=entry.created,
        expires=_min(entry.expires, limit),
        refresh_after=_min(entry.refresh_after, limit),
        stale_until=_min(entry.stale_until, limit),
        cost=entry.cost,
        tags=entry.tags,
        tag_versions=entry.tag_versions,
        size=entry.size,
        payload=None if local else entry.payload,
    )


def _min(value: float | None, limit: float) -> float:
    return limit if value is None else min(value, limit)


def check_loader(loader: object) -> None:
    """``ConfigError`` unless ``loader`` is callable: a bad loader fails at the call, hit or miss."""
    if not callable(loader):
        raise ConfigError(
            f"loader must be callable (a function or coroutine function), not {loader!r}"
        )


def store_predicate(
    condition: Callable[[Any], bool] | None, unless: Callable[[Any], bool] | None
) -> Callable[[Any], bool] | None:
    """One "store this result?" predicate from ``condition=`` (store when true) and ``unless=``
    (do not store when true); ``ConfigError`` if either is given but not callable."""
    for name, given in (("condition", condition), ("unless", unless)):
        if given is not None and not callable(given):
            raise ConfigError(f"{name} must be a predicate on the result, not {given!r}")
    if unless is None:
        return condition
    if condition is None:
        return lambda value: not unless(value)
    return lambda value: bool(condition(value)) and not unless(value)
