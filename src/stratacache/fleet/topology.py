"""Where a fleet service subscribes and sends: one Redis, a Cluster's nodes, a Sentinel primary.

Pub/sub is a per-connection affair, so a subscriber needs a plain client on one
node, chosen afresh on every (re)connect:

- one Redis: the URL (or a given client's connection settings);
- Cluster: the primary owning a channel's slot (sharded pub/sub), or each primary
  (tracking), from a slot map refreshed before each reconnect, so a failover or a
  resharding is followed;
- Sentinel: the primary the sentinels name now; ``still_current`` tells a quiet
  subscriber that a failover moved the primary elsewhere.

Commands (publishing, the generation counter, lock and hot-set keys) go through a
Cluster- or Sentinel-aware client, which routes each key to its slot's node.
"""

from __future__ import annotations

import random
from typing import Any

import redis.asyncio as aredis

from .connection import NODE_OPTIONS, RedisConnection, is_cluster, node_client_like

Node = tuple[str, int]


class Topology:
    """How one fleet service reaches its Redis (built from a connection or a given client)."""

    def __init__(self, connection: RedisConnection, given: Any = None) -> None:
        self.connection = connection
        self.given = given
        if given is not None:
            self.mode = "cluster" if is_cluster(given) else "single"
        else:
            self.mode = connection.mode
        self._sentinel: Any = None

    @property
    def sharded(self) -> bool:
        """Whether channels are shard channels (``SPUBLISH``/``SSUBSCRIBE``): on a Cluster."""
        return self.mode == "cluster"

    def commands(self, **options: Any) -> Any:
        """A new asyncio client for commands (the given client itself, if any)."""
        if self.given is not None:
            return self.given
        return self.connection.client(asynchronous=True, **options)

    def own_commands(self, **options: Any) -> Any:
        """A new asyncio client for commands on the calling loop, never the given one itself
        (a background thread's loop must not bind the caller's client to it)."""
        given = self.given
        if given is None:
            return self.connection.client(asynchronous=True, **options)
        if is_cluster(given):
            nodes = given.nodes_manager.startup_nodes.values()
            host, port = next(iter(nodes)).host, next(iter(nodes)).port
            kwargs = dict(given.nodes_manager.connection_kwargs)
            kwargs = {k: v for k, v in kwargs.items() if k in NODE_OPTIONS}
            startup = [aredis.cluster.ClusterNode(n.host, n.port) for n in nodes]
            return aredis.RedisCluster(host=host, port=port, startup_nodes=startup, **kwargs)
        return self.subscriber(None, **options)

    async def node_for(self, commands: Any, channel: str) -> Node | None:
        """The node to subscribe to ``channel`` on now (None: the URL's, one Redis)."""
        if self.mode == "cluster":
            await refresh_slots(commands)
            node = commands.get_node_from_key(channel)
            return str(node.host), int(node.port)
        if self.mode == "sentinel":
            return await self.primary()
        return None

    async def primaries(self, commands: Any) -> list[Node | None]:
        """Every primary now (a Cluster's, refreshed; else the one node)."""
        if self.mode == "cluster":
            await refresh_slots(commands)
            nodes: list[Node | None] = [
                (str(n.host), int(n.port)) for n in commands.get_primaries()
            ]
            return nodes
        if self.mode == "sentinel":
            return [await self.primary()]
        return [None]

    async def primary(self) -> Node:
        """The Sentinel primary now (raises a redis error while none is known)."""
        if self._sentinel is None:
            self._sentinel = self.connection.sentinel(asynchronous=True)
        host, port = await self._sentinel.discover_master(self.connection.service_name)
        return str(host), int(port)

    async def still_current(self, node: Node | None) -> bool:
        """False once a Sentinel failover named another primary than ``node``."""
        if self.mode != "sentinel" or node is None:
            return True
        return await self.primary() == node

    def subscriber(self, node: Node | None, **options: Any) -> aredis.Redis:
        """A plain asyncio client on ``node`` (None: the URL's or the given client's server)."""
        if node is not None:
            if self.given is not None:
                return node_client_like(self.given, node[0], node[1], **options)
            client: aredis.Redis = self.connection.node_client(node[0], node[1], **options)
            return client
        if self.given is not None:
            base = self.given.connection_pool
            kwargs = {**base.connection_kwargs, **options}
            pool = aredis.ConnectionPool(connection_class=base.connection_class, **kwargs)
            return aredis.Redis(connection_pool=pool)
        pool = aredis.ConnectionPool.from_url(self.connection.url, **options)
        return aredis.Redis(connection_pool=pool)

    async def any_node(self, commands: Any) -> Node | None:
        """Some node to listen on for broadcast (classic) pub/sub: any primary will do."""
        nodes = await self.primaries(commands)
        return random.choice(nodes)

    def forget(self) -> None:
        """Let go of the Sentinel client without closing it (another loop's, a parent's)."""
        self._sentinel = None

    async def close(self) -> None:
        sentinel, self._sentinel = self._sentinel, None
        if sentinel is not None:
            for client in sentinel.sentinels:
                await client.aclose()


async def refresh_slots(commands: Any) -> None:
    """Make a Cluster client (re)read the slot map (it connects here if it never did)."""
    manager = commands.nodes_manager
    if getattr(commands, "_initialize", False) or not manager.slots_cache:
        # never fully initialized (its command table may still name a dead node): all of it
        await commands.initialize()
    else:
        await manager.initialize()


__all__ = ["Node", "Topology", "refresh_slots"]
