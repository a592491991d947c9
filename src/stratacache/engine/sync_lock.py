"""The fleet lock for synchronous callers: ``cache.sync`` and sync functions under ``lock=``.

``run_locked`` is the blocking twin of ``ReadThrough._run_locked``: the same
order of steps, counters and signals. ``SyncCache.load`` calls it for the one
thread of this process that loads a key; the other threads join its future.
The lock itself is any ``SyncFleetLock`` (``stratacache.fleet.RedisLock`` on Redis).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.entry import Entry
from ..core.errors import ConfigError
from ..core.fleet import SyncFleetLock
from . import accounting, signals
from .policy import EntryPolicy
from .signals import send
from .stats import FunctionStats

if TYPE_CHECKING:
    from .cache import Cache
    from .sync import SyncCache

log = logging.getLogger("stratacache")


# -- the locked load -----------------------------------------------------------------------------
def resolve(cache: Cache, lock: Any) -> SyncFleetLock | None:
    """``lock=`` as callers give it (True: the cache's lock) as a blocking lock, or None."""
    if lock is None or lock is False:
        return None
    fleet = cache.readthrough.resolve_lock(lock)
    if not isinstance(fleet, SyncFleetLock):
        raise ConfigError(f"{fleet!r} has no blocking methods: sync callers need e.g. RedisLock")
    return fleet


def run_locked(
    facade: SyncCache,
    fkey: str,
    loader: Callable[[], Any],
    policy: EntryPolicy,
    tags: tuple[str, ...],
    fstats: FunctionStats | None,
    fleet: SyncFleetLock,
    previous: Entry | None,
) -> Entry:
    """Load under the fleet lock, or wait for the holder's value (bounded, then load)."""
    counters = facade.cache.counters
    deadline = time.monotonic() + fleet.wait_timeout
    newer_than = -math.inf if previous is None else previous.created
    waited = woken = False
    while True:
        try:
            attempt = fleet.acquire_sync(fkey)
        except Exception as exc:  # the lock is an optimisation: never fail the caller for it
            counters.lock_errors += 1
            return _fallback(facade, fkey, loader, policy, tags, fstats, "error", exc)
        if attempt.owned:
            counters.lock_acquired += 1
            if waited and not woken:
                counters.lock_takeovers += 1  # the previous holder's lease ran out
            try:
                found = facade._read(fkey, None, newer_than)
                if found is not None:  # stored by a holder that released before we asked
                    return found
                with fleet.hold_sync(fkey, attempt.token):
                    return facade._run_loader(fkey, loader, policy, tags, fstats)
            finally:
                _release(facade, fleet, fkey, attempt.token)
        if not waited:
            waited = True
            counters.lock_waits += 1
            if fstats is not None:
                fstats.lock_waits += 1
            send(signals.lock_wait, facade.cache, key=fkey)
        woken = fleet.wait_sync(fkey, attempt, deadline - time.monotonic())
        found = facade._read(fkey, None, newer_than)
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            return _fallback(facade, fkey, loader, policy, tags, fstats, "timeout", None)


def _fallback(
    facade: SyncCache,
    fkey: str,
    loader: Callable[[], Any],
    policy: EntryPolicy,
    tags: tuple[str, ...],
    fstats: FunctionStats | None,
    reason: str,
    error: BaseException | None,
) -> Entry:
    """Load without the lock: it is unreachable or the holder took too long."""
    accounting.lock_fallback(facade.cache, fkey, fstats, reason, error)
    return facade._run_loader(fkey, loader, policy, tags, fstats)


def _release(facade: SyncCache, fleet: SyncFleetLock, fkey: str, token: str) -> None:
    try:
        fleet.release_sync(fkey, token)
    except Exception as exc:  # it expires on its own after the lease
        facade.cache.counters.lock_errors += 1
        log.warning("stratacache: releasing the fleet lock on %r failed: %r", fkey, exc)
