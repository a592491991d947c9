"""The invalidation bus protocol: how one process tells the others to drop their L1 copies.

The engine publishes an ``Invalidation`` after applying it locally; every
other process applies it to its *local* (non-shared) tiers only. A bus must
report connection loss, after which the engine serves local entries only within
its staleness bound until the bus is back (messages may have been missed
meanwhile; see ``engine.degradation``).

A bus may also hold the namespace *generation* (``GenerationStore``): the
counter ``Cache.flush_namespace`` bumps to outdate a whole namespace in O(1).
A message with ``generation`` > 0 tells receivers to move to that generation.
"""

from __future__ import annotations

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
