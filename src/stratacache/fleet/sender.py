"""The sending side of ``RedisBus``: publish clients per event loop, a blocking one, fail-fast.

Commands go through the topology's command client (Cluster- or Sentinel-aware:
``SPUBLISH`` on a Cluster, routed to the channel's slot), one per event loop
(redis-py asyncio clients are bound to one) or the caller's given client as is,
and a blocking client for sync callers. When to give up on a publish is
``RedisBus``'s decision (see ``RedisBus.publish``).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import redis.retry
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from ..core.fleet import Invalidation
from ..core.loops import PerLoop, abandon
from .topology import Topology
from .wire import encode


class Sender:
    """Publishes to one Redis topology with ``timeout``-bounded commands."""

    def __init__(self, topology: Topology, timeout: float) -> None:
        self.topology = topology
        self.timeout = timeout
        #: messages sent
        self.published = 0
        self._clients: PerLoop[Any] = self._per_loop()
        self._blocking: Any = None

    def _per_loop(self) -> PerLoop[Any]:
        given = self.topology.given
        if given is not None:
            return PerLoop(lambda: given, _keep)
        return PerLoop(
            lambda: self.topology.commands(
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(ExponentialBackoff(cap=0.05, base=0.005), 1),
            ),
            abandon,
        )

    def client(self) -> Any:
        """The asyncio command client of the running loop."""
        return self._clients.get()

    async def publish(self, channel: str, message: Invalidation) -> None:
        data = encode(_stamped(message))
        client = self._clients.get()
        if self.topology.sharded:
            await client.spublish(channel, data)
        else:
            await client.publish(channel, data)
        self.published += 1

    def publish_sync(self, channel: str, message: Invalidation) -> None:
        data = encode(_stamped(message))
        blocking = self._blocking
        if blocking is None:
            blocking = self._blocking = self.topology.connection.client(
                asynchronous=False,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=redis.retry.Retry(ExponentialBackoff(cap=0.05, base=0.005), 1),
            )
        if self.topology.sharded:
            blocking.spublish(channel, data)
        else:
            blocking.publish(channel, data)
        self.published += 1

    async def close(self) -> None:
        clients, self._clients = self._clients, self._per_loop()
        current = clients.pop_current()
        clients.clear()
        if current is not None and self.topology.given is None:
            await current.aclose()
        blocking, self._blocking = self._blocking, None
        if blocking is not None:
            blocking.close()

    def after_fork(self) -> None:
        """In a forked child: never use the parent's sockets (a given client's included)."""
        self._clients.after_fork()
        if self.topology.given is not None:
            abandon(self.topology.given)
        self._blocking = None


def _stamped(message: Invalidation) -> Invalidation:
    return message if message.at else replace(message, at=time.time())


def _keep(_: object) -> None:
    return None


__all__ = ["Sender"]
