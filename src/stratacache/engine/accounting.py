"""Counters and signals of read-through events, shared by the async engine and the sync facade.

Each function records one event the same way whichever path saw it: the engine's
counters, the decorated function's counters (when there is one), the blinker signal
(sent only when someone listens) and, for failures, a log line.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import signals
from .signals import send
from .stats import FunctionStats

if TYPE_CHECKING:
    from .cache import Cache

log = logging.getLogger("stratacache")


def refresh_served(cache: Cache, fkey: str, fstats: FunctionStats | None, early: bool) -> None:
    """A reader got the current value while a refresh starts (XFetch draw, or past the soft TTL)."""
    if early:
        cache.counters.early_refreshes += 1
        if fstats is not None:
            fstats.early_refreshes += 1
        send(signals.early_refresh, cache, key=fkey)
    else:
        cache.counters.stale_served += 1
        if fstats is not None:
            fstats.stale_served += 1
        send(signals.stale_served, cache, key=fkey, reason="revalidate")


def stale_if_error(
    cache: Cache, fkey: str, fstats: FunctionStats | None, error: BaseException
) -> None:
    """The loader failed and a stale value within its grace window is served instead."""
    cache.counters.stale_served += 1
    cache.counters.stale_if_error += 1
    if fstats is not None:
        fstats.stale_served += 1
    send(signals.stale_served, cache, key=fkey, reason="error")
    log.warning("stratacache: serving stale %r, the loader failed: %r", fkey, error)


def load_failed(cache: Cache, fkey: str, fstats: FunctionStats | None, error: Exception) -> None:
    """The loader raised (its exception goes on to the caller unless stale is served)."""
    cache.counters.load_errors += 1
    if fstats is not None:
        fstats.load_errors += 1
    send(signals.load_failed, cache, key=fkey, error=error)


def loaded(cache: Cache, fkey: str, fstats: FunctionStats | None, duration: float) -> None:
    """The loader returned after ``duration`` seconds."""
    cache.counters.loads += 1
    if fstats is not None:
        fstats.loads += 1
    send(signals.loaded, cache, key=fkey, duration=duration)


def refused_set(cache: Cache, fkey: str) -> None:
    """A loaded value was not stored: an invalidation voided its lease meanwhile."""
    cache.counters.refused_sets += 1
    send(signals.refused_set, cache, key=fkey)


def lock_fallback(
    cache: Cache,
    fkey: str,
    fstats: FunctionStats | None,
    reason: str,
    error: BaseException | None,
) -> None:
    """Loading without the fleet lock: it is unreachable or the holder took too long."""
    cache.counters.lock_fallbacks += 1
    if fstats is not None:
        fstats.lock_fallbacks += 1
    send(signals.lock_fallback, cache, key=fkey, reason=reason)
    if error is not None:
        log.warning("stratacache: fleet lock failed for %r, loading anyway: %r", fkey, error)
