"""One namespace channel's subscription: subscribe, catch up on the generation, listen, reconnect.

Why: the reconnect loop is the part of ``RedisBus`` whose failure makes a multi-level
cache lie; it is one job (no publishing, no lifecycle) and reads on its own. It runs
on the bus thread; the bus learns of every outcome through the callbacks it passes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..core.fleet import Invalidation
from .topology import Node, Topology
from .tracking import listen_with_health
from .wire import decode


class Subscription:
    """The subscription of ``channel`` (see ``RedisBus`` for the failure model).

    Args:
        topology: where the channel's subscriber connects (one Redis, Cluster or Sentinel).
        commands: the bus thread's own command client (reads the generation at ``gen_key``).
        channel: the namespace channel; ``gen_key`` its generation key.
        deliver: called with every message received (and a generation catch-up).
        on_up: called once subscribed (again).
        on_lost: called with the error when a (re)subscribe fails or the subscription dies.
        on_attempt: called after every attempt, whatever its outcome.
        health_interval / reconnect_min / reconnect_max / connect_timeout: as on ``RedisBus``.
    """

    def __init__(
        self,
        topology: Topology,
        commands: Any,
        channel: str,
        gen_key: str,
        *,
        deliver: Callable[[Invalidation], None],
        on_up: Callable[[], None],
        on_lost: Callable[[BaseException], None],
        on_attempt: Callable[[], None],
        health_interval: float,
        reconnect_min: float,
        reconnect_max: float,
        connect_timeout: float,
    ) -> None:
        self.topology = topology
        self.commands = commands
        self.channel = channel
        self.gen_key = gen_key
        self.deliver = deliver
        self.on_up = on_up
        self.on_lost = on_lost
        self.on_attempt = on_attempt
        self.health_interval = health_interval
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.connect_timeout = connect_timeout

    async def run(self) -> None:
        """Subscribe and listen, reconnecting with exponential backoff, until cancelled."""
        delay = self.reconnect_min
        while True:
            client: Any = None
            pubsub: Any = None
            node: Node | None = None
            try:
                node = await asyncio.wait_for(
                    self.topology.node_for(self.commands, self.channel),
                    self.connect_timeout,
                )
                client = self._client(node)
                pubsub = client.pubsub()
                await self._subscribe(pubsub)
                self.on_up()
                self.on_attempt()
                delay = self.reconnect_min
                await self._listen(pubsub, node)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.on_lost(exc)
            finally:
                self.on_attempt()
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
                if client is not None:
                    with contextlib.suppress(Exception):
                        await client.aclose()
                        await client.connection_pool.disconnect()
            await asyncio.sleep(delay)  # backoff between reconnect attempts
            delay = min(delay * 2, self.reconnect_max)

    def _client(self, node: Node | None) -> Any:
        """A client for one subscription on ``node``: no silent reconnects, keepalive on."""
        return self.topology.subscriber(
            node,
            retry=Retry(NoBackoff(), 0),
            socket_keepalive=True,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.connect_timeout,
        )

    async def _subscribe(self, pubsub: Any) -> None:
        """Subscribe, wait for the confirmation, then catch up on the generation."""
        sharded = self.topology.sharded
        confirmation = "ssubscribe" if sharded else "subscribe"

        async def subscribe() -> int:
            if sharded:
                await pubsub.ssubscribe(self.channel)
            else:
                await pubsub.subscribe(self.channel)
            while True:
                reply = await pubsub.get_message(timeout=self.connect_timeout)
                if reply is not None and reply["type"] == confirmation:
                    return int(await self.commands.get(self.gen_key) or 0)

        generation = await asyncio.wait_for(subscribe(), self.connect_timeout)
        if generation:
            self.deliver(Invalidation(clear=True, generation=generation, reason="generation"))

    async def _listen(self, pubsub: Any, node: Node | None) -> None:
        """Apply messages until the connection fails, stays silent past a PING, or the
        primary moves (Sentinel) or the channel's slot does (Cluster)."""

        async def current() -> bool:
            return await asyncio.wait_for(self.topology.still_current(node), self.health_interval)

        await listen_with_health(
            pubsub,
            self.health_interval,
            lambda data: self.deliver(decode(data)),
            "the bus",
            check=current if node is not None else None,
        )
