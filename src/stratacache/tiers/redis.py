"""``RedisTier``: a shared tier on Redis (standalone, Sentinel or Cluster) via redis-py.

Every operation is written once as a generator that yields Redis calls and
receives their results (reads in ``_redis_reads``, writes in ``_redis_writes``); a
blocking driver runs it on a ``redis.Redis`` client (no event-loop hop for sync
callers) and an async driver on a ``redis.asyncio`` client (``_redis_drivers``).
Driver errors become ``TierError``. The single-key hit paths stay inlined here.

Costs: a hit is one GET; ``get_many`` is one MGET; a ``get`` of an entry that
carries tags (unless the caller names them, then one EVALSHA does both) costs one
more MGET of its tag counters; ``get_many`` switches to the get_many script (one
EVALSHA) while the batches it meets hold tagged entries. Concurrent async ``get``s
and leases of one event loop share one MGET per loop turn (``_redis_coalesce``), and
their leased writes (backfills, loads) one pipeline (``_redis_write_coalesce``).
Batches go out in bounded, pipelined chunks (``_redis_batch``); ``invalidate_tags``
is one INCR per tag, whatever the number of entries. On a cluster, tag counters and the epoch are spread over slots,
multi-key reads are split per slot and pipelined per node, and each node has its own
breaker (``_redis_nodes``): a dead primary costs only the keys it holds.
Layout and bookkeeping keys are described in ``_redis_scripts``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from redis.retry import Retry

from ..core.codec import MAX_REDIS_VALUE
from ..core.entry import Entry
from ..core.errors import TierError
from ..core.loops import PerLoop, abandon, on_fork
from ..core.tier import TierContext
from ..fleet.bus import RedisBus
from ..fleet.connection import RedisConnection
from ..fleet.hotkeys import HotKeys
from ..fleet.lock import RedisLock
from . import _redis_atomic as ra
from . import _redis_batch as rb
from . import _redis_drivers as rd
from . import _redis_nodes as rn
from . import _redis_reads as rr
from . import _redis_scripts as rs
from . import _redis_write_coalesce as rwc
from . import _redis_writes as rw
from ._redis_client import (
    ASYNC_DRIVER_ERRORS,
    DRIVER_ERRORS,
    Side,
    abandon_side,
    build_client,
    keep_side,
    timeout,
)
from ._redis_coalesce import ReadCoalescer
from ._redis_config import tier_settings
from ._redis_write_coalesce import WriteCoalescer


class RedisTier:
    """A tier on Redis; entries expire physically (PX) at their end, capped by ``ttl``.

    Args:
        url: ``redis://`` / ``rediss://`` URL (also the first startup node in cluster mode).
        client: an existing ``redis.asyncio`` client to use instead of building one; it is
            used as is from every event loop, so it must suit the loop it is used on. Without
            it the tier builds one client per event loop (redis-py's asyncio clients are bound
            to one) and releases those of closed loops; after ``fork`` the child builds its own.
        sync_client: an existing ``redis.Redis`` client for the sync API.
        ttl: upper bound in seconds on how long an entry is kept.
        max_connections: pool size per client. Past it a call fails fast and the engine answers
            from another tier or the loader, unless ``pool_timeout`` makes callers wait.
        socket_timeout: seconds an operation may take before the tier counts as failed.
        socket_connect_timeout: seconds a connection attempt may take.
        retry: redis-py ``Retry`` policy (default: one quick retry on connection errors).
        pool_timeout: if set, a ``BlockingConnectionPool`` where callers wait this many seconds
            for a free connection (safer for tiny pools; costs ~10% per call in asyncio).
        name: name in stats and logs.
        cluster: connect with ``RedisCluster``.
        startup_nodes: ``["host:port", ...]``: more Cluster startup nodes besides ``url``'s.
        sentinels: ``[(host, port), ...]`` of Redis Sentinels; needs ``service_name``.
        service_name: the Sentinel master name.
        connection: a ``RedisConnection`` naming the Redis (instead of ``url``, ``cluster``,
            ``startup_nodes``, ``sentinels`` and ``service_name``); the default bus and
            fleet lock (``fleet_bus()``, ``fleet_lock()``) are built on the same one.
        max_value_size: bytes one stored entry may take (default: Redis's 512 MiB); a larger
            value is refused at ``set`` with ``SerializationError``.

    Attributes:
        coalesce: concurrent async ``get``s of one event loop ride one MGET, and their
            leased writes (backfills, loads) one pipeline (default True; set to False on
            the instance to send each alone).
        dropped_writes: entries of ``set_many``/``delete_many`` not written because a chunk
            failed (the call also raised ``TierError``); shown in ``cache.stats()``.
        node_errors: cluster reads of which one node's part failed while others answered
            (those keys were misses); shown in ``cache.stats()``.
    """

    shared = True
    #: concurrent async ``get``s of one event loop go out as one MGET (see ``_redis_coalesce``)
    coalesce = True
    #: entries of ``set_many``/``delete_many`` batches not written because a chunk failed
    dropped_writes = 0
    #: cluster calls of which one node's part failed while other nodes answered
    node_errors = 0
    _nodes: rn.NodeHealth | None = None
    #: the last ``get_many`` batch held tagged entries (the next runs the script; ``_redis_reads``)
    expect_tags = False
    _coalescers: PerLoop[ReadCoalescer] | None = None
    #: the leased-write batches of each event loop (``_redis_write_coalesce``)
    write_coalescers: PerLoop[WriteCoalescer] | None = None

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        client: Any = None,
        sync_client: Any = None,
        ttl: float | None = None,
        max_connections: int = 1024,
        socket_timeout: float = 0.5,
        socket_connect_timeout: float = 0.25,
        retry: Retry | None = None,
        pool_timeout: float | None = None,
        name: str = "redis",
        cluster: bool = False,
        sentinels: Sequence[tuple[str, int]] | None = None,
        service_name: str | None = None,
        max_value_size: int = MAX_REDIS_VALUE,
        startup_nodes: Sequence[str | tuple[str, int]] | None = None,
        connection: RedisConnection | None = None,
    ) -> None:
        settings = tier_settings(
            url,
            ttl=ttl,
            max_connections=max_connections,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_connect_timeout,
            pool_timeout=pool_timeout,
            cluster=cluster,
            sentinels=sentinels,
            service_name=service_name,
            max_value_size=max_value_size,
            startup_nodes=startup_nodes,
            connection=connection,
        )
        #: where Redis is: shared with the default bus, fleet lock and hot keys
        self.connection = connection = settings.connection
        self.max_value_size = settings.max_value_size
        self.name = name
        self.ttl = settings.ttl
        self.url = connection.url
        self.cluster = connection.cluster
        self.decode_errors = 0
        self._options = settings.client_options
        self._pool_timeout = settings.pool_timeout
        #: seconds one call may take (a batch chunk's budget grows from it)
        self.op_timeout = settings.socket_timeout
        self._retry = retry
        self._given = (client, sync_client)
        self._build_lock = threading.Lock()
        #: the async client of each event loop (redis-py asyncio clients are bound to one)
        self.sides: PerLoop[Side] | None = None
        #: the blocking client (built at ``start`` unless ``sync_client`` was given)
        self.sync_side: Side | None = Side(sync_client) if sync_client is not None else None
        #: codec, clock and namespace handed over by the engine at ``start``
        self.context = TierContext(namespace="")
        #: the Redis key names of this namespace (see ``_redis_scripts``)
        self.names = rs.KeyNames("", self.cluster)
        on_fork(self)

    def fleet_bus(self) -> RedisBus:
        """A new invalidation bus on this tier's Redis (the cache's default bus)."""
        return RedisBus(connection=self.connection, client=self._given[0])

    def fleet_lock(self) -> RedisLock:
        """A new fleet lock on this tier's Redis (the lock behind ``lock=True``)."""
        return RedisLock(connection=self.connection, client=self._given[0])

    def shares_server(self, service: object) -> bool:
        """Does fleet ``service`` (a lock, a bus) talk to this tier's Redis? Built on this
        tier's connection (``fleet_lock()``, ``RedisLock(connection=...)``), or on one that
        names the same server. While this tier's circuit is open the engine asks it nothing
        (``SlotView.lock_usable``)."""
        other = getattr(service, "connection", None)
        return isinstance(other, RedisConnection) and other.same_server(self.connection)

    def hot_keys(self, **options: Any) -> HotKeys:
        """A new ``HotKeys`` publishing the fleet's hot set on this tier's Redis."""
        return HotKeys(connection=self.connection, **options)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, context: TierContext) -> None:
        self.context = context
        self.names = rs.KeyNames(context.namespace, self.cluster)
        with self._build_lock:  # caches starting this tier from several threads build once
            if self.sides is None:
                given = self._given[0]
                if given is not None:
                    side = Side(given)  # the caller's client, whatever loop it was made for
                    self.sides = PerLoop(lambda: side, keep_side)
                else:
                    self.sides = PerLoop(lambda: Side(self._build(asynchronous=True)), abandon_side)
            if self.sync_side is None:  # never connects here (a cluster's is a LazyClient)
                self.sync_side = Side(self._build(asynchronous=False))

    async def close(self) -> None:
        """Close this loop's async client; release those of other loops without their loops."""
        sides, self.sides = self.sides, None
        self._coalescers = self.write_coalescers = None
        if sides is not None:
            current = sides.pop_current()
            sides.clear()
            if current is not None and self._given[0] is None:
                await current.c.aclose()
        if self.sync_side is not None and self._given[1] is None:
            self.sync_side.c.close()
            self.sync_side = None

    def after_fork(self) -> None:
        """In a forked child: never touch the parent's sockets; build new clients on first use."""
        self._coalescers = self.write_coalescers = None  # the parent's loops' batches
        self._build_lock = threading.Lock()
        if self.sides is not None:
            self.sides.after_fork()
        if self._given[0] is not None:
            abandon(self._given[0])
        # redis-py's blocking pools notice the new pid themselves and reconnect

    def _build(self, asynchronous: bool) -> Any:
        """A client for ``url`` (or the cluster/sentinel it names) with our timeouts."""
        return build_client(
            self.connection,
            asynchronous=asynchronous,
            options=self._options,
            retry=self._retry,
            pool_timeout=self._pool_timeout,
        )

    # -- helpers -----------------------------------------------------------------------------
    def health(self) -> rn.NodeHealth:
        """The per-node breakers of a cluster tier (see ``_redis_nodes``)."""
        nodes = self._nodes
        if nodes is None:
            with self._build_lock:
                if self._nodes is None:
                    self._nodes = rn.NodeHealth(name=self.name)
                nodes = self._nodes
        return nodes

    # -- public async API --------------------------------------------------------------------
    async def get(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
        if self.cluster:
            return await rn.guarded(self, key, "get", self._get(key, tags))
        return await self._get(key, tags)

    async def _get(self, key: str, tags: Sequence[str] | None) -> Entry | None:
        sides = self.sides
        if sides is None or tags or (self.cluster and not self.coalesce):
            return await rd.run(self, "get", lambda: rr.get_op(self, key))
        # The hottest remote path, inlined: a plain GET, or a place in the loop turn's MGET
        # when other reads are in flight. Only when the stored header says the entry is
        # tagged (and the caller did not say so) is the tag check a second trip.
        try:
            if self.coalesce:
                raw = await self._coalescer().read(key, self._send_batch, self._get_alone)
            else:
                raw = await self._get_alone(key)
        except ASYNC_DRIVER_ERRORS as exc:
            raise TierError(self.name, "get", exc) from exc
        if raw is None:
            return None
        if isinstance(raw, Exception):  # its node's part of a cluster batch failed
            raise TierError(self.name, "get", raw) from raw
        if raw[:1] == rs.UNTAGGED:
            return rr.decode_entry(self, raw[1:], key)
        found = await rd.run(self, "get", lambda: rr.fresh_op(self, [key], [raw]))
        return found.get(key)

    def _coalescer(self) -> ReadCoalescer:
        """This event loop's read batches."""
        coalescers = self._coalescers
        if coalescers is None:
            coalescers = self._coalescers = PerLoop(ReadCoalescer, ReadCoalescer.drop)
        return coalescers.get()

    async def _get_alone(self, key: str) -> Any:
        """One GET (the uncoalesced read; driver errors are the caller's to translate)."""
        side = self.sides.get()  # type: ignore[union-attr]
        async with timeout(self.op_timeout):
            return await side.c.get(key)

    async def _send_batch(self, keys: Sequence[str]) -> Any:
        """One MGET of a coalesced batch (per slot, pipelined per node, on a cluster)."""
        side = self.sides.get()  # type: ignore[union-attr]
        if self.cluster:  # per node: a failing node fails only its own keys' reads
            return await rn.send_batch(self, side.c, keys)
        async with timeout(self.op_timeout):
            return await side.c.mget(keys)

    async def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        if self.cluster and self.sides is not None:
            return await rn.get_many(self, keys)
        return await rd.run(self, "get_many", lambda: rr.get_many_op(self, keys))

    async def lease(self, key: str, tags: Sequence[str]) -> object | None:
        if self.cluster or not self.coalesce or self.sides is None:
            call = rd.run(self, "lease", lambda: rr.lease_op(self, key, tags))
            return await (rn.guarded(self, key, "lease", call) if self.cluster else call)
        tokens, wanted = rr.lease_keys(self, key, tags)  # one MGET, coalesced like reads
        try:
            values = await self._coalescer().read_keys(wanted, self._send_batch)
        except ASYNC_DRIVER_ERRORS as exc:
            raise TierError(self.name, "lease", exc) from exc
        return rr.make_lease(key, tokens, values)

    async def set(self, key: str, entry: Entry, lease: object | None = None) -> bool:
        coalesced = self.coalesce and not self.cluster and self.sides is not None
        if coalesced and isinstance(lease, rs.RedisLease):  # a backfill or a load
            return await rwc.leased_set(self, key, entry, lease)
        call = rd.run(self, "set", lambda: rw.set_op(self, key, entry, lease))
        return await (rn.guarded(self, key, "set", call) if self.cluster else call)

    async def set_many(self, entries: Mapping[str, Entry]) -> None:
        if self.cluster and self.sides is not None:  # a node known down costs its keys only
            run = functools.partial(rb.set_many, self, entries)
            return await rn.write_batch(self, "set_many", list(entries), run, None)
        return await rb.set_many(self, entries)

    async def delete_many(self, keys: Sequence[str]) -> int:
        if self.cluster and self.sides is not None:
            run = functools.partial(rb.delete_many, self)
            return await rn.write_batch(self, "delete_many", keys, run, 0)
        return await rb.delete_many(self, keys)

    async def delete_prefix(self, prefix: str) -> int:
        return await rd.run(self, "delete_prefix", lambda: rw.delete_prefix_op(self, prefix))

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        await rd.run(self, "invalidate_tags", lambda: rb.invalidate_tags_op(self, tags))

    async def clear(self) -> None:
        await self.delete_prefix(self.context.namespace + ":")

    async def scan_keys(self, prefix: str, cursor: str, count: int) -> tuple[list[str], str]:
        """One Redis SCAN step (see ``core.tier.KeyScanner``); cluster mode lists every match."""
        return await rd.run(self, "scan", lambda: rr.scan_keys_op(self, prefix, cursor, count))

    # -- public sync API ---------------------------------------------------------------------
    def get_sync(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
        side = self.sync_side
        if self.cluster:
            op = functools.partial(rd.run_sync, self, "get", lambda: rr.get_op(self, key))
            return rn.guarded_sync(self, key, "get", op)
        if side is None or tags:
            return rd.run_sync(self, "get", lambda: rr.get_op(self, key))
        try:
            raw = side.c.get(key)
        except DRIVER_ERRORS as exc:
            raise TierError(self.name, "get", exc) from exc
        if raw is None:
            return None
        if raw[:1] != rs.UNTAGGED:
            return rd.run_sync(self, "get", lambda: rr.get_op(self, key))
        return rr.decode_entry(self, raw[1:], key)

    def get_many_sync(self, keys: Sequence[str]) -> dict[str, Entry]:
        if self.cluster and self.sync_side is not None:
            return rn.get_many_sync(self, keys)
        return rd.run_sync(self, "get_many", lambda: rr.get_many_op(self, keys))

    def lease_sync(self, key: str, tags: Sequence[str]) -> object | None:
        op = functools.partial(rd.run_sync, self, "lease", lambda: rr.lease_op(self, key, tags))
        return rn.guarded_sync(self, key, "lease", op) if self.cluster else op()

    def set_sync(self, key: str, entry: Entry, lease: object | None = None) -> bool:
        op = functools.partial(rd.run_sync, self, "set", lambda: rw.set_op(self, key, entry, lease))
        return rn.guarded_sync(self, key, "set", op) if self.cluster else op()

    def set_many_sync(self, entries: Mapping[str, Entry]) -> None:
        if self.cluster and self.sync_side is not None:
            run = functools.partial(rb.set_many_sync, self, entries)
            return rn.write_batch_sync(self, "set_many", list(entries), run, None)
        return rb.set_many_sync(self, entries)

    def delete_many_sync(self, keys: Sequence[str]) -> int:
        if self.cluster and self.sync_side is not None:
            run = functools.partial(rb.delete_many_sync, self)
            return rn.write_batch_sync(self, "delete_many", keys, run, 0)
        return rb.delete_many_sync(self, keys)

    def delete_prefix_sync(self, prefix: str) -> int:
        return rd.run_sync(self, "delete_prefix", lambda: rw.delete_prefix_op(self, prefix))

    def invalidate_tags_sync(self, tags: Sequence[str]) -> None:
        rd.run_sync(self, "invalidate_tags", lambda: rb.invalidate_tags_op(self, tags))

    def clear_sync(self) -> None:
        self.delete_prefix_sync(self.context.namespace + ":")

    # -- atomic read-modify-write (``_redis_atomic``; used by add/incr/touch) -------------------
    async def read_versioned(self, key: str) -> tuple[Entry | None, object]:
        return await rd.run(self, "read_versioned", lambda: ra.read_versioned_op(self, key))

    async def compare_and_set(self, key: str, token: object, entry: Entry) -> bool:
        return await rd.run(self, "cas", lambda: ra.compare_and_set_op(self, key, token, entry))

    def read_versioned_sync(self, key: str) -> tuple[Entry | None, object]:
        return rd.run_sync(self, "read_versioned", lambda: ra.read_versioned_op(self, key))

    def compare_and_set_sync(self, key: str, token: object, entry: Entry) -> bool:
        return rd.run_sync(self, "cas", lambda: ra.compare_and_set_op(self, key, token, entry))
