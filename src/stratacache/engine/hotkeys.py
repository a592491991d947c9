"""The engine's side of hot keys: reloading a hot key shortly before its soft TTL.

The hot set itself (counting, the fleet's shared set) is ``stratacache.fleet.HotKeys``;
it asks the cache through ``HotKeyHost.refresh_hot``, which lands here, so the
decision, its counter and its signal stay in the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.clock import Clock
from ..core.tier import Tier
from . import signals
from .signals import send
from .stats import CacheStats


def refresh_hot(
    sender: object,
    top: Tier,
    clock: Clock,
    counters: CacheStats,
    refresh: Callable[..., bool],
    fkey: str,
    recipe: Any,
    horizon: float,
) -> bool:
    """Reload ``fkey`` in the background if its local entry's soft TTL is within ``horizon``.

    ``recipe`` is ``(loader, policy, tags, function stats, fleet lock)`` as the read-through
    recorded it; ``refresh`` starts a background reload (``Cache.refresh_in_background``).
    True when a refresh started.
    """
    peek = getattr(top, "peek", None)
    if peek is None:
        return False
    entry = peek(fkey)
    if entry is None or not entry.alive:
        return False
    soft = entry.refresh_after if entry.refresh_after is not None else entry.expires
    if soft is None or soft - clock.time() > horizon:
        return False
    loader, policy, tags, fstats, lock = recipe
    if not refresh(fkey, loader, policy, tags, fstats, lock, entry):
        return False
    counters.hot_refreshes += 1
    send(signals.refresh_ahead, sender, key=fkey, reason="hot")
    return True


__all__ = ["refresh_hot"]
