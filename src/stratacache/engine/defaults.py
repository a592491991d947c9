"""Safe defaults: the invalidation bus and the fleet lock a cache gets without asking.

A cache whose process-local tier sits above a shared Redis tier would otherwise
let each process serve a value another process invalidated until its local
copy expires. So unless told otherwise (``bus=False``), such a cache runs a
``RedisBus`` on that tier's Redis, and ``lock=True`` calls use a ``RedisLock``
on it. A tier offers its connection through ``fleet_options()`` (a mapping
with ``url`` and ``client``); a shared tier that cannot (a Redis Cluster, a
Sentinel set) needs an explicit ``bus=`` or ``bus=False``; other shared tiers (SQL,
aiocache) have no channel of their own and get no default bus.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

from ..core.errors import ConfigError
from ..core.fleet import FleetLock, InvalidationBus
from ..core.tier import Tier


class AutoType:
    """Typed marker for "derive it from the tiers" (the default of ``bus=`` and ``lock=``)."""

    _instance: AutoType | None = None

    def __new__(cls) -> AutoType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "AUTO"


log = logging.getLogger("stratacache")

#: the default of ``Cache(bus=..., lock=...)``: built from the cache's shared Redis tier
AUTO: Final = AutoType()


def _shared_source(tiers: Sequence[Tier]) -> tuple[Tier | None, dict[str, Any] | None]:
    """The first Redis-like shared tier (below a local one, or any with a known connection:
    a cache without a local tier still tells other processes), and its connection.

    Shared tiers with no ``fleet_options`` (SQL, aiocache) get no default bus: a SQL tier
    has no channel to carry invalidations (pass ``bus=RedisBus(url)`` to add one).
    """
    seen_local = False
    for tier in tiers:
        if not getattr(tier, "shared", True):
            seen_local = True
            continue
        options = getattr(tier, "fleet_options", None)
        if not callable(options):
            continue
        found = options()
        if seen_local:
            return tier, found
        if found is not None:
            # no local tier here, but other processes may keep local copies of this
            # namespace: this cache's invalidations must reach them
            return tier, found
    return None, None


def _warn_if_uncoordinated(tiers: Sequence[Tier]) -> None:
    """A local tier above a shared one that no bus can reach (SQL): say what that means."""
    local = [t for t in tiers if not getattr(t, "shared", True)]
    shared = [t for t in tiers if getattr(t, "shared", True)]
    if local and shared and tiers.index(local[0]) < tiers.index(shared[0]):
        log.warning(
            "stratacache: local tier %r sits above shared tier %r with no invalidation bus: "
            "other processes' invalidations reach this process only when its local copies "
            "expire (the local tier's ttl); pass bus=RedisBus(url) to keep them coherent, "
            "or bus=False to silence this",
            local[0].name,
            shared[0].name,
        )


def default_bus(tiers: Sequence[Tier], bus: Any) -> InvalidationBus | None:
    """The bus a cache runs: ``bus`` as given, none for ``False``, else derived from ``tiers``.

    Raises:
        ConfigError: a local tier sits above a shared tier whose connection cannot be
            derived, and no bus (or ``bus=False``) was given.
    """
    if bus is False:
        return None
    if bus is not AUTO and bus is not None:
        if not isinstance(bus, InvalidationBus):
            raise ConfigError(f"bus must be an InvalidationBus or False, not {bus!r}")
        return bus
    tier, options = _shared_source(tiers)
    if tier is None:
        _warn_if_uncoordinated(tiers)
        return None  # no Redis to carry messages: nothing to build
    if options is None:
        raise ConfigError(
            f"the local tier above shared tier {tier.name!r} needs an invalidation bus to stay "
            "coherent across processes: pass bus=RedisBus(url) (or bus=False to accept stale "
            "local copies for up to the local tier's TTL)"
        )
    from .redis_bus import RedisBus

    return RedisBus(options["url"], client=options.get("client"))


def default_lock(tiers: Sequence[Tier], lock: Any) -> FleetLock | None:
    """The fleet lock behind ``lock=True``: ``lock`` as given, else one on the shared Redis tier."""
    if lock is False:
        return None
    if lock is not AUTO and lock is not None:
        if not isinstance(lock, FleetLock):
            raise ConfigError(f"lock must be a FleetLock (e.g. RedisLock) or False, not {lock!r}")
        return lock
    for tier in tiers:
        options = getattr(tier, "fleet_options", None)
        if getattr(tier, "shared", True) and callable(options):
            found = options()
            if found is not None:
                from .lock import RedisLock

                return RedisLock(found["url"], client=found.get("client"))
    return None


__all__ = ["AUTO", "AutoType", "default_bus", "default_lock"]
