"""The fleet protocols: what the engine needs from services shared by every process.

An invalidation bus tells the other processes of a namespace to drop their local
copies (``Invalidation`` messages, ``InvalidationBus``), optionally holding the
namespace generation (``GenerationStore``); a fleet lock lets one process across
the fleet run a loader on a miss (``FleetLock`` for async callers, ``SyncFleetLock``
for blocking ones, both answering ``LockAttempt``). The engine talks to these
protocols only; their Redis implementations live in ``stratacache.fleet``.

A bus must report connection loss, after which the engine serves local entries
only within its staleness bound until the bus is back (messages may have been
missed meanwhile). A message with ``generation`` > 0 tells receivers to move to
that namespace generation (``Cache.flush_namespace`` bumps it to outdate a whole
namespace in O(1)).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


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


__all__ = [
    "FleetLock",
    "GenerationStore",
    "Invalidation",
    "InvalidationBus",
    "LockAttempt",
    "SyncFleetLock",
]
