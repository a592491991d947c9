"""Bounded degradation: what a process serves from its local tiers while the bus is down.

Without the invalidation bus a process may miss another process's
invalidation, so its local copies can no longer be trusted indefinitely. Rather
than distrust them all (which sends every read to Redis or, with Redis down
too, to the loader), the process keeps serving local entries that are younger
than ``staleness_bound`` seconds (1 s by default): a missed invalidation can
then make a local read at most that stale. Single-flight is unchanged, so a
key is loaded about once per bound per process. When the bus is back the
local tiers are emptied once (messages may have been missed) and the normal
promise returns.

Entering degraded mode removes local entries older than the bound and caps the
fast-path deadline of the others (decorators' memo included) at
``created + bound``; every copy written into a local tier meanwhile gets the
same cap, and the tier stack treats an older local entry as a miss.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from ..core.entry import Entry


class _Slot(Protocol):
    local: bool
    tier: Any


class _Stack(Protocol):
    """What this module needs of a tier stack (``TierStack``)."""

    degraded_bound: float | None

    @property
    def slots(self) -> Any: ...

    def clear_slot_now(self, slot: Any) -> None: ...

    def keep_recent_now(self, slot: Any, since: float, bound: float) -> bool: ...

    def clear_local_now(self) -> None: ...


log = logging.getLogger("stratacache")

#: default seconds a local entry may be served while the bus is down
STALENESS_BOUND = 1.0


def too_old(stack: _Stack, slot: _Slot, entry: Entry, now: float) -> bool:
    """Is ``entry`` from local ``slot`` past the staleness bound (only while degraded)?"""
    bound = stack.degraded_bound
    return bound is not None and slot.local and entry.created < now - bound


def cap(entry: Entry, bound: float) -> None:
    """Keep the fast path from serving ``entry`` past ``created + bound``."""
    limit = entry.created + bound
    if entry.deadline > limit:
        entry.deadline = limit


def enter(stack: _Stack, bound: float, now: float) -> None:
    """The bus is lost: keep only local entries younger than ``bound``, capped to it."""
    stack.degraded_bound = bound
    for slot in stack.slots:
        if not slot.local:
            continue
        if not stack.keep_recent_now(slot, now - bound, bound):
            stack.clear_slot_now(slot)
    log.warning(
        "stratacache: invalidation bus lost; serving local entries younger than %.3gs", bound
    )


def leave(stack: _Stack) -> None:
    """The bus is back: drop what was cached meanwhile (messages may be lost), trust again."""
    stack.clear_local_now()
    stack.degraded_bound = None
    log.info("stratacache: invalidation bus back; local tiers emptied once and trusted again")
