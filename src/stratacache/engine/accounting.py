"""Counters and signals of read-through events, shared by the async engine and the sync facade.

Each function records one event the same way whichever path saw it: the engine's
counters, the decorated function's counters (when there is one), the blinker signal
(sent only when someone listens) and, for failures, a log line.
"""

from __future__ import annotations

import logging
from typing import Any

from . import signals
from .signals import send
from .stats import CacheStats, FunctionStats

log = logging.getLogger("stratacache")


class Recorder:
    """Where the engine's parts record what happened: counters, signals (sent with the
    cache as sender) and log lines. Parts get this instead of the whole cache."""

    __slots__ = ("counters", "sender")

    def __init__(self, counters: CacheStats, sender: Any) -> None:
        self.counters = counters
        #: the object signals are sent from (the ``Cache``; opaque to the parts)
        self.sender = sender

    def signal(self, signal: Any, **payload: Any) -> None:
        """Send ``signal`` with the cache as sender, only when someone listens."""
        if signal.receivers:
            signal.send(self.sender, **payload)


def refresh_served(rec: Recorder, fkey: str, fstats: FunctionStats | None, early: bool) -> None:
    """A reader got the current value while a refresh starts (XFetch draw, or past the soft TTL)."""
    if early:
        rec.counters.early_refreshes += 1
        if fstats is not None:
            fstats.early_refreshes += 1
        send(signals.early_refresh, rec.sender, key=fkey)
    else:
        rec.counters.stale_served += 1
        if fstats is not None:
            fstats.stale_served += 1
        send(signals.stale_served, rec.sender, key=fkey, reason="revalidate")


def stale_if_error(
    rec: Recorder, fkey: str, fstats: FunctionStats | None, error: BaseException
) -> None:
    """The loader failed and a stale value within its grace window is served instead."""
    rec.counters.stale_served += 1
    rec.counters.stale_if_error += 1
    if fstats is not None:
        fstats.stale_served += 1
    send(signals.stale_served, rec.sender, key=fkey, reason="error")
    log.warning("stratacache: serving stale %r, the loader failed: %r", fkey, error)


def load_failed(rec: Recorder, fkey: str, fstats: FunctionStats | None, error: Exception) -> None:
    """The loader raised (its exception goes on to the caller unless stale is served)."""
    rec.counters.load_errors += 1
    if fstats is not None:
        fstats.load_errors += 1
    send(signals.load_failed, rec.sender, key=fkey, error=error)


def loaded(rec: Recorder, fkey: str, fstats: FunctionStats | None, duration: float) -> None:
    """The loader returned after ``duration`` seconds."""
    rec.counters.loads += 1
    if fstats is not None:
        fstats.loads += 1
    send(signals.loaded, rec.sender, key=fkey, duration=duration)


def refused_set(rec: Recorder, fkey: str) -> None:
    """A loaded value was not stored: an invalidation voided its lease meanwhile."""
    rec.counters.refused_sets += 1
    send(signals.refused_set, rec.sender, key=fkey)


def lock_fallback(
    rec: Recorder,
    fkey: str,
    fstats: FunctionStats | None,
    reason: str,
    error: BaseException | None,
) -> None:
    """Loading without the fleet lock: it is unreachable or the holder took too long."""
    rec.counters.lock_fallbacks += 1
    if fstats is not None:
        fstats.lock_fallbacks += 1
    send(signals.lock_fallback, rec.sender, key=fkey, reason=reason)
    if error is not None:
        log.warning("stratacache: fleet lock failed for %r, loading anyway: %r", fkey, error)
