"""The engine's side of hot keys: reloading a hot key shortly before its soft TTL.

The hot set itself (counting, the fleet's shared set) is ``stratacache.fleet.HotKeys``;
it asks the cache through ``HotKeyHost.refresh_hot``, which lands here, so the
decision, its counter and its signal stay in the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import signals
from .signals import send

if TYPE_CHECKING:
    from .cache import Cache


def refresh_hot(cache: Cache, fkey: str, recipe: Any, horizon: float) -> bool:
    """Reload ``fkey`` in the background if its local entry's soft TTL is within ``horizon``.

    ``recipe`` is ``(loader, policy, tags, function stats, fleet lock)`` as the read-through
    recorded it. True when a refresh started.
    """
    peek = getattr(cache.tiers.top, "peek", None)
    if peek is None:
        return False
    entry = peek(fkey)
    if entry is None or not entry.alive:
        return False
    soft = entry.refresh_after if entry.refresh_after is not None else entry.expires
    if soft is None or soft - cache.clock.time() > horizon:
        return False
    loader, policy, tags, fstats, lock = recipe
    if not cache.refresh_in_background(fkey, loader, policy, tags, fstats, lock, entry):
        return False
    cache.counters.hot_refreshes += 1
    send(signals.refresh_ahead, cache, key=fkey, reason="hot")
    return True


__all__ = ["refresh_hot"]
