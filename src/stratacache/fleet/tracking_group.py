"""Client-side tracking on every primary: a ``RedisTracker`` per node, following the topology.

Redis reports a key's change only to clients tracking on the node that owns it,
so on a Cluster (or behind Sentinel, where the primary moves) one tracker per
primary is needed. ``TrackingGroup`` keeps one per primary, re-reads the
primaries every ``refresh_interval`` seconds and whenever a tracker goes down
(a failover or a resharding), starts trackers on new primaries and stops those
on nodes that are no longer one. It reports connected only while every current
primary's tracker is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from ..core.fleet import Invalidation
from .topology import Node, Topology
from .tracking import RedisTracker

log = logging.getLogger("stratacache")


class TrackingGroup:
    """One tracker per primary of ``topology`` (see the module docstring).

    Args:
        topology: where the primaries are.
        commands: a Cluster-aware asyncio client of ``topology`` (for the slot map).
        prefix / on_message / on_state / timings: as for ``RedisTracker``.
        refresh_interval: seconds between re-reads of the primaries while all is well.
    """

    def __init__(
        self,
        topology: Topology,
        commands: Any,
        prefix: str,
        on_message: Callable[[Invalidation], None],
        on_state: Callable[[bool], None],
        *,
        health_interval: float,
        reconnect_min: float,
        reconnect_max: float,
        connect_timeout: float,
        refresh_interval: float = 5.0,
    ) -> None:
        self.topology = topology
        self.commands = commands
        self.prefix = prefix
        self.refresh_interval = refresh_interval
        self._timing = {
            "health_interval": health_interval,
            "reconnect_min": reconnect_min,
            "reconnect_max": reconnect_max,
            "connect_timeout": connect_timeout,
        }
        self._on_message = on_message
        self._on_state = on_state
        #: the tracker of each primary now
        self.trackers: dict[Node | None, RedisTracker] = {}
        self.connected = False
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._retired_received = 0
        self._retired_drops = 0

    # -- what RedisBus and tests read ---------------------------------------------------------
    @property
    def supported(self) -> bool:
        return all(t.supported for t in self.trackers.values())

    @property
    def tracking_client_id(self) -> int | None:
        """The server id of the tracking connection, with one primary (for diagnostics)."""
        ids = [t.tracking_client_id for t in self.trackers.values()]
        return ids[0] if len(ids) == 1 else None

    @property
    def received(self) -> int:
        return self._retired_received + sum(t.received for t in self.trackers.values())

    @property
    def drops(self) -> int:
        return self._retired_drops + sum(t.drops for t in self.trackers.values())

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Start a tracker on every primary known now (waiting for each first attempt)."""
        with contextlib.suppress(Exception):  # unreachable now: the watcher keeps trying
            await self._sync_primaries()
        self._report()
        self._task = asyncio.ensure_future(self._watch())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        trackers, self.trackers = self.trackers, {}
        for tracker in trackers.values():
            await tracker.close()
        self.connected = False

    async def _watch(self) -> None:
        delay = self._timing["reconnect_min"]
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                wait = delay if not self.connected else self.refresh_interval
                await asyncio.wait_for(self._changed.wait(), wait)
            self._changed.clear()
            try:
                await self._sync_primaries()
                delay = self._timing["reconnect_min"]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("stratacache: reading the primaries for tracking failed: %r", exc)
                delay = min(delay * 2, self._timing["reconnect_max"])
            self._report()

    async def _sync_primaries(self) -> None:
        primaries = set(await self.topology.primaries(self.commands))
        for node in [n for n in self.trackers if n not in primaries]:
            tracker = self.trackers.pop(node)
            self._retired_received += tracker.received
            self._retired_drops += tracker.drops
            await tracker.close()
        for node in primaries - set(self.trackers):
            tracker = RedisTracker(
                self._connector(node),
                self.prefix,
                self._on_message,
                self._tracker_state,
                **self._timing,
            )
            self.trackers[node] = tracker
            await tracker.start()

    def _connector(self, node: Node | None) -> Callable[..., Any]:
        async def connect(**options: Any) -> Any:
            return self.topology.subscriber(node, **options)

        return connect

    def _tracker_state(self, connected: bool) -> None:
        if not connected:
            self._changed.set()  # a node down: the primaries may have changed
        self._report()

    def _report(self) -> None:
        connected = bool(self.trackers) and all(t.connected for t in self.trackers.values())
        if connected != self.connected:
            self.connected = connected
            self._on_state(connected)


__all__ = ["TrackingGroup"]
