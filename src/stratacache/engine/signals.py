"""The blinker signals stratacache emits, in one place.

Every signal is sent with the ``Cache`` as sender and keyword payloads. They
are sent only when a receiver is connected (``signal.receivers`` is checked
first), and never from the decorator's in-memory fast path, so an unused
signal costs nothing.

=================  ==========================================================
signal             payload
=================  ==========================================================
``hit``            key, tier (name of the tier that answered)
``miss``           key
``set``            key, tags
``loaded``         key, duration (seconds the loader took)
``load_failed``    key, error
``stale_served``   key, reason ("revalidate" or "error")
``early_refresh``  key
``invalidated``    keys, tags, prefixes, reason, actor, origin ("local" or "remote")
``cleared``        origin, generation (> 0: a namespace flush), reason, actor
``tier_error``     tier, operation, error
``refused_set``    key (a write voided by an invalidation that raced it)
``bus_state``      connected (bool)
``lock_wait``      key (this process waits for another's load of it)
``lock_fallback``  key, reason ("timeout", "error" or "circuit_open"): loading without the lock
``warmed``         key, ok (bool), error (None or the exception)
``warm_done``      warmed, failed, took (seconds): one ``warm()`` finished
``refresh_ahead``  key, reason ("scheduled" or "hot")
``evicted``        key, tier: a memory tier dropped an entry to stay within its bounds
``breaker_state``  tier, open (bool): a tier's circuit opened or closed
=================  ==========================================================
"""

from __future__ import annotations

from typing import Any

from blinker import Namespace

signals = Namespace()

hit = signals.signal("stratacache.hit")
evicted = signals.signal("stratacache.evicted")
miss = signals.signal("stratacache.miss")
set_ = signals.signal("stratacache.set")
loaded = signals.signal("stratacache.loaded")
load_failed = signals.signal("stratacache.load_failed")
stale_served = signals.signal("stratacache.stale_served")
early_refresh = signals.signal("stratacache.early_refresh")
invalidated = signals.signal("stratacache.invalidated")
cleared = signals.signal("stratacache.cleared")
tier_error = signals.signal("stratacache.tier_error")
refused_set = signals.signal("stratacache.refused_set")
bus_state = signals.signal("stratacache.bus_state")
lock_wait = signals.signal("stratacache.lock_wait")
lock_fallback = signals.signal("stratacache.lock_fallback")
warmed = signals.signal("stratacache.warmed")
warm_done = signals.signal("stratacache.warm_done")
refresh_ahead = signals.signal("stratacache.refresh_ahead")
breaker_state = signals.signal("stratacache.breaker_state")


def send(signal: Any, sender: Any, **payload: Any) -> None:
    """Send ``signal`` only when someone listens (free otherwise)."""
    if signal.receivers:
        signal.send(sender, **payload)
