"""The fleet protocols: what the engine needs from services shared by every process.

An invalidation bus tells the other processes of a namespace to drop their local
copies (``Invalidation`` messages, ``InvalidationBus``), optionally holding the
namespace generation (``GenerationStore``); a fleet lock lets one process across
the fleet run a loader on a miss (``FleetLock`` for async callers, ``SyncFleetLock``
for blocking ones, both answering ``LockAttempt``). The engine talks to these
protocols only; their Redis implementations live in ``stratacache.fleet`` (a bus over
a SQL tier's database, ``SQLBus``, beside the SQL tier). A hot
set (``HotSet``) counts the keys the read-through loads and shares the fleet's
hottest ones; it reaches the cache it serves only through ``HotKeyHost``.

A bus must report connection loss, after which the engine serves local entries
only within its staleness bound until the bus is back (messages may have been
missed meanwhile). A message with ``generation`` > 0 tells receivers to move to
that namespace generation (``Cache.flush_namespace`` bumps it to outdate a whole
namespace in O(1)).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Invalidation:
    """One invalidation as sent between processes (keys and prefixes are full keys)."""

    keys: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    clear: bool = False
    reason: str | None = None
    origin: str = ""
    #: who asked for it (user, service, "admin-api" ...), for the audit trail
    actor: str | None = None
    #: epoch seconds when the origin issued it (measures bus lag; audit time)
    at: float = 0.0
    #: namespace generation the receivers must move to (0: unchanged)
    generation: int = 0


@runtime_checkable
class InvalidationBus(Protocol):
    """Transport for ``Invalidation`` messages between processes of one namespace."""

    async def start(
        self,
        namespace: str,
        origin: str,
        on_message: Callable[[Invalidation], None],
        on_state: Callable[[bool], None],
    ) -> None:
        """Subscribe; call ``on_message`` for others' messages, ``on_state(connected)`` on changes."""

    async def publish(self, message: Invalidation) -> None:
        """Send ``message`` to every other process (best effort; errors are the bus's to log)."""

    async def close(self) -> None:
        """Unsubscribe and release the connection."""


@runtime_checkable
class GenerationStore(Protocol):
    """A shared namespace generation counter (offered by buses that have shared storage)."""

    async def load_generation(self) -> int:
        """The current generation of the namespace (0 when never flushed)."""

    async def bump_generation(self) -> int:
        """Atomically increment the generation and return the new value."""


@dataclass(frozen=True, slots=True)
class LockAttempt:
    """The outcome of one ``acquire``: ours (``owned``) or the current holder's token and lease."""

    owned: bool
    token: str
    ttl: float  # seconds left on the holder's lease (ours when owned)


@runtime_checkable
class FleetLock(Protocol):
    """What the read-through needs from a distributed recompute lock."""

    lease: float
    wait_timeout: float

    async def acquire(self, key: str) -> LockAttempt:
        """Try once to take the lock on ``key``; never blocks on the holder."""

    async def release(self, key: str, token: str) -> bool:
        """Release our lock on ``key`` and wake its waiters; False if it was no longer ours."""

    def hold(self, key: str, token: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Keep our lock on ``key`` alive (renewing its lease) inside the block."""

    async def wait(self, key: str, holder: LockAttempt, timeout: float) -> bool:
        """Wait up to ``timeout`` for ``holder`` to release ``key``; True when it is gone."""

    async def close(self) -> None:
        """Stop listening and release connections."""


@runtime_checkable
class SyncFleetLock(Protocol):
    """The blocking twin of ``FleetLock``, used by ``cache.sync`` and sync functions."""

    lease: float
    wait_timeout: float

    def acquire_sync(self, key: str) -> LockAttempt:
        """``acquire``, blocking."""

    def release_sync(self, key: str, token: str) -> bool:
        """``release``, blocking."""

    def hold_sync(self, key: str, token: str) -> contextlib.AbstractContextManager[None]:
        """``hold``: the lease is renewed on a daemon thread inside the block."""

    def wait_sync(self, key: str, holder: LockAttempt, timeout: float) -> bool:
        """``wait``, blocking the calling thread."""


@runtime_checkable
class FleetSource(Protocol):
    """A shared tier that builds fleet services on its own connection (e.g. ``RedisTier``).

    The engine's defaults (a bus for a local tier above a shared one, the lock behind
    ``lock=True``) are built through this, so the engine never names an implementation.
    """

    def fleet_bus(self) -> InvalidationBus | None:
        """A new invalidation bus on this tier's connection (not started; None: none is
        needed, e.g. a private in-memory database no other process can reach)."""

    def fleet_lock(self) -> FleetLock | None:
        """A new fleet lock on this tier's connection (not started; None: cannot)."""


@runtime_checkable
class HotSet(Protocol):
    """Access tracking of the hottest keys, fed by the read-through's slow path."""

    def record(self, fkey: str, recipe: Any = None) -> None:
        """Count one access of full key ``fkey``; ``recipe`` (opaque) reloads it while hot."""

    def top(self, n: int | None = None) -> list[tuple[str, int]]:
        """``(full key, estimated accesses)`` of this process, hottest first."""

    async def fleet_hot(self, namespace: str, limit: int = 1000) -> list[str]:
        """The fleet's hottest full keys of ``namespace``, hottest first (empty: not shared)."""

    async def close(self) -> None:
        """Stop background work and release connections."""


class HotKeyHost(Protocol):
    """What a hot set may ask of the cache it serves (the engine implements it)."""

    namespace: str

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background until it ends or the cache closes."""

    def attach_hot(self, hot: HotSet) -> None:
        """Feed ``hot`` from the read-through from now on."""

    def refresh_hot(self, fkey: str, recipe: Any, horizon: float) -> bool:
        """Reload ``fkey`` in the background if its soft TTL is within ``horizon`` seconds."""


__all__ = [
    "FleetLock",
    "FleetSource",
    "GenerationStore",
    "HotKeyHost",
    "HotSet",
    "Invalidation",
    "InvalidationBus",
    "LockAttempt",
    "SyncFleetLock",
]
