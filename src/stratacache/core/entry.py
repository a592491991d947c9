"""``Entry``: a cached value and the metadata that decides its freshness.

Timeline of one entry (wall-clock seconds)::

    created ── fresh ──► refresh_after ── stale-while-revalidate ──► expires ── stale-if-error ──► stale_until
                         (soft TTL)                                  (hard TTL)                    (gone from tiers)

``deadline`` is not stored anywhere: it is the in-process fast-path bound
(``refresh_after`` pulled forward by the early-refresh window) and is set to
``-inf`` when the entry is removed from memory, so a decorator that still holds
a reference to the object sees it dead without any lookup.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Readers skip the XFetch check while ``now < refresh_after - XFETCH_HORIZON * cost * beta``;
#: the chance of an early refresh that far out is ``e**-10`` per read.
XFETCH_HORIZON = 10.0

_DEAD = -math.inf


@dataclass(slots=True, eq=False)
class Entry:
    """One cached value with its freshness metadata (all times are epoch seconds)."""

    value: Any
    created: float
    expires: float | None = None
    refresh_after: float | None = None
    stale_until: float | None = None
    cost: float = 0.0
    tags: tuple[str, ...] = ()
    tag_versions: Mapping[str, int] = field(default_factory=dict)
    size: int = 0
    deadline: float = field(default=math.inf, repr=False)
    #: the serialized value, carried from the write path to byte-storing tiers so a value is
    #: encoded once per write; local tiers drop it (they keep the object itself)
    payload: bytes | None = field(default=None, repr=False)
    #: called once when the entry is killed (decorator memos drop their slots); not copied
    watchers: list[Callable[[], object]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.deadline = self.compute_deadline()

    def compute_deadline(self, beta: float = 1.0) -> float:
        """The time until which a read may return this entry without any other check."""
        soft = self.refresh_after if self.refresh_after is not None else self.expires
        if soft is None:
            return math.inf
        return soft - XFETCH_HORIZON * self.cost * beta

    def kill(self) -> None:
        """Mark the entry dead for every holder of a reference (used on eviction/invalidation)."""
        self.deadline = _DEAD
        watchers, self.watchers = self.watchers, None
        if watchers:
            for watcher in watchers:
                watcher()

    @property
    def alive(self) -> bool:
        """False once the entry was removed from its memory tier."""
        return self.deadline != _DEAD

    def is_fresh(self, now: float) -> bool:
        """Before the soft TTL (or the hard one when there is no soft TTL)."""
        soft = self.refresh_after if self.refresh_after is not None else self.expires
        return soft is None or now < soft

    def is_expired(self, now: float) -> bool:
        """At or past the hard TTL: never served as a normal hit."""
        return self.expires is not None and now >= self.expires

    def is_gone(self, now: float) -> bool:
        """Past every grace window: not even servable as stale."""
        end = self.stale_until if self.stale_until is not None else self.expires
        return end is not None and now >= end

    def remaining(self, now: float) -> float | None:
        """Seconds a tier must keep the entry (up to ``stale_until``), or None for no expiry."""
        end = self.stale_until if self.stale_until is not None else self.expires
        return None if end is None else end - now

    def keep_for(self, now: float, cap: float | None) -> float | None:
        """Seconds a tier whose TTL cap is ``cap`` keeps this entry (None: no expiry; <= 0: gone)."""
        remaining = self.remaining(now)
        if cap is not None and (remaining is None or remaining > cap):
            return cap
        return remaining


_new = object.__new__


def trusted(
    value: Any,
    created: float,
    expires: float | None,
    refresh_after: float | None,
    stale_until: float | None,
    cost: float,
    tags: tuple[str, ...],
    tag_versions: Mapping[str, int],
    size: int,
) -> Entry:
    """``Entry(...)`` of fields already checked (a decoded entry), without ``__init__``'s
    calls: a batch read builds one per key. A test holds it equal to ``Entry``."""
    entry: Entry = _new(Entry)
    entry.value = value
    entry.created = created
    entry.expires = expires
    entry.refresh_after = refresh_after
    entry.stale_until = stale_until
    entry.cost = cost
    entry.tags = tags
    entry.tag_versions = tag_versions
    entry.size = size
    entry.payload = None
    entry.watchers = None
    soft = refresh_after if refresh_after is not None else expires
    entry.deadline = math.inf if soft is None else soft - XFETCH_HORIZON * cost
    return entry
