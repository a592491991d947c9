"""Health of each Redis Cluster node, so one failing node does not switch a whole tier off.

Why: the engine's circuit breaker covers a tier. On a cluster, a dead primary would
trip it and every key, on every healthy node, would go to the loaders until the
breaker closed. Here the tier keeps a small breaker per node: after ``threshold``
consecutive failures of calls that touched only that node, calls for keys on it fail
fast with ``NodeDownError`` (a miss for those keys, which the engine does not count
against the tier's breaker) for ``cooldown`` seconds; then one call is let through,
and the first success closes it. The node of a key is the one the client's slot map
names, so a failover (a replica promoted, the map refreshed) routes around it alone.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.entry import Entry
from ..core.errors import NodeDownError, TierError
from . import _redis_drivers as rd
from . import _redis_reads as rr
from ._redis_client import timeout

if TYPE_CHECKING:
    from .redis import RedisTier

T = TypeVar("T")
log = logging.getLogger("stratacache")


class NodeHealth:
    """Consecutive failures and open circuits of cluster nodes, by node name (``host:port``)."""

    def __init__(
        self,
        threshold: int = 3,
        cooldown: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        name: str = "redis",
    ) -> None:
        self.name = name
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}
        self._lock = threading.Lock()
        #: calls refused because their node was down, and times a node's circuit opened
        self.refused = 0
        self.opened = 0

    def node_of(self, client: Any, key: str) -> str | None:
        """The name of the primary serving ``key`` (None: the slot map is not known yet)."""
        try:
            return str(client.nodes_manager.get_node_from_slot(client.keyslot(key)).name)
        except Exception:  # no slot map yet, or a slot not covered: no guard for this call
            return None

    def is_down(self, node: str | None) -> bool:
        """Skip ``node`` now? After the cool-down one call goes through (and re-arms it)."""
        if node is None or not self._open_until:
            return False
        with self._lock:
            until = self._open_until.get(node)
            if until is None:
                return False
            now = self._clock()
            if now >= until:
                self._open_until[node] = now + self.cooldown  # one trial call
                return False
            self.refused += 1
            return True

    def check(self, node: str | None, tier: str, operation: str) -> None:
        """Raise ``NodeDownError`` when ``node`` is down."""
        if self.is_down(node):
            raise NodeDownError(tier, operation, node or "")

    def failed(self, node: str | None) -> None:
        if node is None:
            return
        with self._lock:
            count = self._failures.get(node, 0) + 1
            self._failures[node] = count
            opens = count >= self.threshold and node not in self._open_until
            if opens:
                self._open_until[node] = self._clock() + self.cooldown
                self.opened += 1
        if opens:  # one line per state change, not one per refused call
            log.warning(
                "stratacache: tier %r: cluster node %s down after %d failures;"
                " its keys are misses until it answers again",
                self.name,
                node,
                count,
            )

    def succeeded(self, node: str | None) -> None:
        if node is None or node not in self._failures:
            return
        with self._lock:
            self._failures.pop(node, None)
            was_down = self._open_until.pop(node, None) is not None
        if was_down:
            log.warning("stratacache: tier %r: cluster node %s is back", self.name, node)

    def down_nodes(self) -> list[str]:
        """Nodes whose circuit is open now."""
        now = self._clock()
        return [n for n, until in list(self._open_until.items()) if until > now]


# -- the tier's calls, guarded per node (cluster mode only) ------------------------------------
async def guarded(tier: RedisTier, key: str, operation: str, call: Awaitable[T]) -> T:
    """Await ``call`` (an operation on ``key``) unless its node is down; attribute failures."""
    health = tier.health()
    node = health.node_of(tier.sides.get().c, key) if tier.sides is not None else None
    if health.is_down(node):
        if isinstance(call, Coroutine):
            call.close()  # never started
        raise NodeDownError(tier.name, operation, node or "")
    try:
        result = await call
    except NodeDownError:
        raise
    except TierError:
        health.failed(node)
        raise
    health.succeeded(node)
    return result


def guarded_sync(tier: RedisTier, key: str, operation: str, call: Callable[[], T]) -> T:
    """The blocking twin of ``guarded``."""
    health = tier.health()
    node = health.node_of(tier.sync_side.c, key) if tier.sync_side is not None else None
    health.check(node, tier.name, operation)
    try:
        result = call()
    except NodeDownError:
        raise
    except TierError:
        health.failed(node)
        raise
    health.succeeded(node)
    return result


def _split(
    health: NodeHealth, client: Any, keys: Sequence[str]
) -> tuple[list[str], list[str | None], list[str | None]]:
    """``(keys on nodes not known down, those nodes, the nodes known down)``."""
    groups = _by_node(health, client, keys)
    down = [n for n in groups if health.is_down(n)]
    wanted = [k for n, ks in groups.items() if n not in down for k in ks]
    return wanted, [n for n in groups if n not in down], down


def _settle(
    tier: RedisTier, operation: str, touched: list[str | None], skipped: int, down: list[Any]
) -> None:
    """After a batch's healthy part succeeded: close its nodes; report the skipped part."""
    health = tier.health()
    for node in touched:
        health.succeeded(node)
    if down:
        tier.dropped_writes += skipped
        raise NodeDownError(tier.name, operation, down[0] or "")


async def write_batch(
    tier: RedisTier,
    operation: str,
    keys: Sequence[str],
    run: Callable[[list[str]], Awaitable[T]],
    empty: T,
) -> T:
    """``run`` a write batch (``set_many``/``delete_many``) on the keys of live nodes only.

    Keys on nodes known down are not sent: they count in ``dropped_writes`` and, once the
    rest is written, the call raises ``NodeDownError`` (a partial write is never silent).
    A failure is charged to a node only when the batch touched that node alone.
    """
    assert tier.sides is not None
    wanted, touched, down = _split(tier.health(), tier.sides.get().c, keys)
    result = empty
    if wanted:
        try:
            result = await run(wanted)
        except NodeDownError:
            raise
        except TierError:
            if len(touched) == 1:
                tier.health().failed(touched[0])
            raise
    _settle(tier, operation, touched, len(keys) - len(wanted), down)
    return result


def write_batch_sync(
    tier: RedisTier,
    operation: str,
    keys: Sequence[str],
    run: Callable[[list[str]], T],
    empty: T,
) -> T:
    """The blocking twin of ``write_batch``."""
    assert tier.sync_side is not None
    wanted, touched, down = _split(tier.health(), tier.sync_side.c, keys)
    result = empty
    if wanted:
        try:
            result = run(wanted)
        except NodeDownError:
            raise
        except TierError:
            if len(touched) == 1:
                tier.health().failed(touched[0])
            raise
    _settle(tier, operation, touched, len(keys) - len(wanted), down)
    return result


def _by_node(health: NodeHealth, client: Any, keys: Iterable[str]) -> dict[str | None, list[str]]:
    groups: dict[str | None, list[str]] = {}
    for key in keys:
        groups.setdefault(health.node_of(client, key), []).append(key)
    return groups


def _merge(
    tier: RedisTier, health: NodeHealth, parts: list[tuple[str | None, Any]]
) -> dict[str, Entry]:
    """Join per-node results: a failed node's keys are misses, unless every node failed."""
    found: dict[str, Entry] = {}
    errors = []
    for node, result in parts:
        if isinstance(result, TierError):
            health.failed(node)
            tier.node_errors += 1
            errors.append(result)
        elif isinstance(result, BaseException):
            raise result
        else:
            health.succeeded(node)
            found.update(result)
    if errors and len(errors) == len(parts):
        raise errors[0]
    return found


async def get_many(tier: RedisTier, keys: Sequence[str]) -> dict[str, Entry]:
    """``get_many`` one node at a time (concurrently): a node that fails costs only its keys."""
    health = tier.health()
    assert tier.sides is not None
    groups = _by_node(health, tier.sides.get().c, keys)
    wanted = [(n, ks) for n, ks in groups.items() if not health.is_down(n)]

    async def one(part: list[str]) -> dict[str, Entry]:
        return await rd.run(tier, "get_many", lambda: rr.get_many_op(tier, part))

    results = await asyncio.gather(*(one(ks) for _, ks in wanted), return_exceptions=True)
    return _merge(tier, health, [(n, r) for (n, _), r in zip(wanted, results, strict=True)])


def get_many_sync(tier: RedisTier, keys: Sequence[str]) -> dict[str, Entry]:
    """The blocking twin of ``get_many`` (nodes one after the other)."""
    health = tier.health()
    assert tier.sync_side is not None
    parts: list[tuple[str | None, Any]] = []
    for node, part in _by_node(health, tier.sync_side.c, keys).items():
        if health.is_down(node):
            continue
        try:
            op = functools.partial(rr.get_many_op, tier, part)
            parts.append((node, rd.run_sync(tier, "get_many", op)))
        except TierError as exc:
            parts.append((node, exc))
    return _merge(tier, health, parts)


async def send_batch(tier: RedisTier, client: Any, keys: Sequence[str]) -> list[Any]:
    """A coalesced batch on a cluster: one MGET per node; a failed node's keys get its error."""
    health = tier.health()
    groups = list(_by_node(health, client, keys).items())

    async def one(part: list[str]) -> Any:
        async with timeout(tier.op_timeout):
            return await client.mget_nonatomic(part)

    results = await asyncio.gather(*(one(ks) for _, ks in groups), return_exceptions=True)
    replies: dict[str, Any] = {}
    for (_, part), result in zip(groups, results, strict=True):
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result
        failed = isinstance(result, Exception)
        for i, key in enumerate(part):
            replies[key] = result if failed else result[i]
    return [replies[k] for k in keys]
