"""Safe defaults: the invalidation bus and the fleet lock a cache gets without asking.

A cache whose process-local tier sits above a shared tier would otherwise let
each process serve a value another process invalidated until its local copy
expires. So unless told otherwise (``bus=False``), such a cache runs a bus built
by its first shared tier that can (``core.fleet.FleetSource``: ``fleet_bus()``,
``fleet_lock()``): a ``RedisBus`` on a Redis tier's connection (one Redis,
Sentinel or a Cluster; ``lock=True`` calls use a ``RedisLock`` on it), else a
``SQLBus`` on a SQL tier's database. Redis tiers come first: a cache with both
gets the Redis bus. The engine sees only the protocols. A shared tier that
builds none (aiocache) leaves the cache without a bus, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

from ..core.errors import ConfigError
from ..core.fleet import FleetLock, FleetSource, InvalidationBus
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


def _shared_source(tiers: Sequence[Tier]) -> FleetSource | None:
    """The shared tier to build fleet services on (below a local one or not: a cache
    without a local tier still tells other processes): the first one with a fleet lock
    to offer (Redis), else the first that builds fleet services at all (SQL).

    Shared tiers that cannot (aiocache) get no default bus.
    """
    sources = [t for t in tiers if getattr(t, "shared", True) and isinstance(t, FleetSource)]
    for tier in sources:
        if getattr(tier, "offers_lock", True):
            return tier
    return sources[0] if sources else None


def _warn_if_uncoordinated(tiers: Sequence[Tier]) -> None:
    """A local tier above a shared one that no bus can reach (SQL): say what that means."""
    local = [t for t in tiers if not getattr(t, "shared", True)]
    shared = [t for t in tiers if getattr(t, "shared", True)]
    if local and shared and tiers.index(local[0]) < tiers.index(shared[0]):
        log.warning(
            "stratacache: local tier %r sits above shared tier %r with no invalidation bus: "
            "other processes' invalidations reach this process only when its local copies "
            "expire (the local tier's ttl); pass bus=RedisBus(url) or SQLBus(url) to keep "
            "them coherent, or bus=False to silence this",
            local[0].name,
            shared[0].name,
        )


def default_bus(tiers: Sequence[Tier], bus: Any) -> InvalidationBus | None:
    """The bus a cache runs: ``bus`` as given, none for ``False``, else derived from ``tiers``.

    Raises:
        ConfigError: ``bus`` is neither an ``InvalidationBus`` nor a bool/``None``; ``bus=True``
            and no shared tier builds one; or a local tier sits above a shared tier that
            cannot build a bus and none was given.
    """
    if bus is False:
        return None
    if bus is not AUTO and bus is not None and bus is not True:
        if not isinstance(bus, InvalidationBus):
            raise ConfigError(f"bus must be an InvalidationBus, True or False, not {bus!r}")
        return bus
    source = _shared_source(tiers)
    if source is None and bus is True:
        raise ConfigError(
            "bus=True needs a shared Redis tier to build it on: pass bus=RedisBus(url)"
        )
    if source is None:
        _warn_if_uncoordinated(tiers)
        return None  # no Redis to carry messages: nothing to build
    built = source.fleet_bus()
    if built is None and bus is True:
        raise ConfigError(
            f"bus=True: shared tier {getattr(source, 'name', source)!r} builds no bus"
        )
    return built  # None: the source needs none (a private in-memory SQLite database)


def default_lock(tiers: Sequence[Tier], lock: Any) -> FleetLock | None:
    """The fleet lock behind ``lock=True``: ``lock`` as given, else one on the shared Redis tier.

    Raises:
        ConfigError: ``lock`` is not a ``FleetLock``/bool/None, or ``lock=True`` and no shared
            Redis tier can build one.
    """
    if lock is False:
        return None
    if lock is not AUTO and lock is not None and lock is not True:
        if not isinstance(lock, FleetLock):
            raise ConfigError(
                f"lock must be a FleetLock (e.g. RedisLock), True or False, not {lock!r}"
            )
        return lock
    source = _shared_source(tiers)
    built = None if source is None else source.fleet_lock()
    if built is None and lock is True:
        raise ConfigError(
            "lock=True needs a shared Redis tier to build it on: pass lock=RedisLock(url)"
        )
    return built


__all__ = ["AUTO", "AutoType", "default_bus", "default_lock"]
