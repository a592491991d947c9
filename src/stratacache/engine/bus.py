"""The invalidation bus protocol: how one process tells the others to drop their L1 copies.

The engine publishes an ``Invalidation`` after applying it locally; every
other process applies it to its *local* (non-shared) tiers only. A bus must
report connection loss, after which the engine stops trusting its local tiers
until the bus is back (messages may have been missed meanwhile).
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
