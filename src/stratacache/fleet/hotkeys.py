"""Hot keys: approximate access frequency in fixed memory, refresh-ahead, fleet hot set.

``CountMinSketch`` counts key accesses in ``width x depth`` integers whatever the
number of keys (estimates are never below the true count, and above it by at
most ``e/width`` of all counts with probability ``1 - e**-depth``); a key's
counters follow a BLAKE2b digest, never ``hash()``, so every process and every
``PYTHONHASHSEED`` counts it in the same places. ``TopK``
keeps the ``k`` keys with the highest estimates. Counts are halved every
``decay_every`` records, so the set follows what is hot *now*.

``HotKeys`` is fed from the read-through slow path (the decorator's in-memory
fast path stays untouched: a hit there costs nothing extra). A background tick
refreshes the hottest keys shortly before their soft TTL and publishes the hot
set to a Redis sorted set, from which a fresh process warms its L1
(``await cache.warm(from_hot=True)``). The tracker reaches its cache only through
``HotKeyHost`` (the reload decision, counters and signals are the engine's).
"""

from __future__ import annotations

import asyncio
import logging
from array import array
from collections.abc import Callable
from hashlib import blake2b
from typing import Any

from ..core.durations import check_duration, check_optional
from ..core.errors import ConfigError
from ..core.fleet import HotKeyHost
from ..core.loops import PerLoop, abandon, on_fork
from .connection import RedisConnection

log = logging.getLogger("stratacache")
#: what it takes to reload a key: (loader, policy, tags, function stats, fleet lock)
Recipe = tuple[Callable[[], Any], Any, tuple[str, ...], Any, Any]


class CountMinSketch:
    """Approximate counts of keys in ``width * depth`` integers, with halving decay."""

    __slots__ = ("depth", "rows", "width")

    def __init__(self, width: int = 2048, depth: int = 4) -> None:
        if width < 1 or depth < 1:
            raise ConfigError("CountMinSketch width and depth must be >= 1")
        self.width = width
        self.depth = depth
        self.rows = [array("q", bytes(8 * width)) for _ in range(depth)]

    def _slots(self, key: str) -> list[int]:
        # a keyed digest, not hash(): the same key lands in the same counters in every
        # process and under every PYTHONHASHSEED, so fleets agree on what is hot
        digest = blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        h1 = int.from_bytes(digest[:8], "little")
        h2 = int.from_bytes(digest[8:], "little") | 1  # double hashing: h1 + i*h2
        return [(h1 + i * h2) % self.width for i in range(self.depth)]

    def add(self, key: str, count: int = 1) -> int:
        """Count ``key`` and return its new estimate (conservative update)."""
        slots = self._slots(key)
        rows = self.rows
        estimate = min(rows[i][s] for i, s in enumerate(slots)) + count
        for i, s in enumerate(slots):
            if rows[i][s] < estimate:  # conservative update: less over-counting
                rows[i][s] = estimate
        return estimate

    def estimate(self, key: str) -> int:
        """Never below the true count of ``key`` since the last decay."""
        return min(self.rows[i][s] for i, s in enumerate(self._slots(key)))

    def decay(self) -> None:
        """Halve every counter, so old popularity fades."""
        for row in self.rows:
            for i, value in enumerate(row):
                if value:
                    row[i] = value >> 1


class TopK:
    """The ``k`` keys with the highest estimates seen (a dict plus a cached floor)."""

    __slots__ = ("counts", "floor", "k")

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ConfigError("TopK k must be >= 1")
        self.k = k
        self.counts: dict[str, int] = {}
        self.floor = 0

    def offer(self, key: str, estimate: int) -> str | None:
        """Consider ``key`` at ``estimate``; returns the key evicted to make room, if any."""
        counts = self.counts
        if key in counts or len(counts) < self.k:
            counts[key] = estimate
            if len(counts) == self.k:
                self.floor = min(counts.values())
            return None
        if estimate <= self.floor:
            return None
        loser = min(counts, key=counts.__getitem__)
        del counts[loser]
        counts[key] = estimate
        self.floor = min(counts.values())
        return loser

    def decay(self) -> None:
        for key in self.counts:
            self.counts[key] >>= 1
        self.floor >>= 1

    def top(self, n: int | None = None) -> list[tuple[str, int]]:
        """``(key, estimate)`` hottest first."""
        ranked = sorted(self.counts.items(), key=lambda kv: kv[1], reverse=True)
        return ranked if n is None else ranked[:n]


class HotKeys:
    """Access tracking, refresh-ahead of the hottest keys and the fleet's hot set.

    Args:
        k: how many hot keys to track.
        width / depth: size of the count-min sketch.
        decay_every: records between halvings of every count.
        url / client / connection: Redis where the hot set is published (None: not
            published); ``RedisTier.hot_keys()`` passes the tier's connection.
        interval: seconds between background ticks (refresh-ahead).
        horizon: a hot key is refreshed when its soft TTL is less than this many seconds
            away (default: twice ``interval``).
        publish_every: seconds between publications of the hot set.
        prefix: prefix of the Redis key of the hot set.
    """

    def __init__(
        self,
        *,
        k: int = 128,
        width: int = 2048,
        depth: int = 4,
        decay_every: int = 100_000,
        url: str | None = None,
        client: Any = None,
        interval: float = 1.0,
        horizon: float | None = None,
        publish_every: float = 10.0,
        prefix: str = "sc",
        connection: RedisConnection | None = None,
    ) -> None:
        interval = check_duration("HotKeys interval", interval)
        publish_every = check_duration("HotKeys publish_every", publish_every)
        horizon = check_optional("HotKeys horizon", horizon, zero_ok=True)
        if decay_every < 1:
            raise ConfigError("HotKeys decay_every must be >= 1")
        self.sketch = CountMinSketch(width, depth)
        self.topk = TopK(k)
        self.recipes: dict[str, Recipe] = {}
        self.decay_every = decay_every
        self.interval = interval
        self.horizon = 2 * interval if horizon is None else horizon
        self.publish_every = publish_every
        self.prefix = prefix
        if connection is None and url is not None:
            connection = RedisConnection(url)
        #: where the hot set is published (None: not published unless ``client`` is given)
        self.connection = connection
        self.url = url if connection is None else connection.url
        self._given = client
        #: one client per event loop when built from ``url`` (asyncio clients are loop-bound)
        self._clients: PerLoop[Any] = PerLoop(self._build_client, abandon)
        self._records = 0
        self._cache: HotKeyHost | None = None
        self._task: asyncio.Task[None] | None = None
        on_fork(self)

    def _build_client(self) -> Any:
        if self.connection is None:
            raise ConfigError("HotKeys has no Redis to publish to (pass url= or connection=)")
        return self.connection.client(asynchronous=True)

    def after_fork(self) -> None:
        """In a forked child: never use the parent's connections; tick again on next use."""
        self._clients.after_fork()
        self._task = None

    def attach(self, cache: HotKeyHost) -> HotKeys:
        """Make this the tracker of ``cache`` (fed by its read-through)."""
        self._cache = cache
        cache.attach_hot(self)
        return self

    # -- counting (the slow path) ------------------------------------------------------------
    def record(self, fkey: str, recipe: Recipe | None = None) -> None:
        """Count one access of ``fkey``; remember how to reload it while it is hot."""
        estimate = self.sketch.add(fkey)
        loser = self.topk.offer(fkey, estimate)
        if loser is not None:
            self.recipes.pop(loser, None)
        if recipe is not None and fkey in self.topk.counts:
            self.recipes[fkey] = recipe
        self._records += 1
        if self._records % self.decay_every == 0:
            self.sketch.decay()
            self.topk.decay()
        if (self._task is None or self._task.done()) and self._cache is not None:
            self._task = self._cache.spawn(self._run())  # again in a new loop: the old one died

    def top(self, n: int | None = None) -> list[tuple[str, int]]:
        """The hottest keys with their estimated access counts, hottest first."""
        return self.topk.top(n)

    # -- background work ---------------------------------------------------------------------
    async def _run(self) -> None:
        ticks_per_publish = max(1, round(self.publish_every / self.interval))
        tick = 0
        try:
            while True:
                await asyncio.sleep(self.interval)
                await self.refresh_ahead()
                tick += 1
                if tick % ticks_per_publish == 0:
                    await self.publish()
        finally:
            self._task = None

    async def refresh_ahead(self) -> int:
        """Start a background refresh of every hot key whose soft TTL is near; returns how many."""
        cache = self._cache
        if cache is None:
            return 0
        started = 0
        for fkey, _count in self.topk.top():
            recipe = self.recipes.get(fkey)
            if recipe is not None and cache.refresh_hot(fkey, recipe, self.horizon):
                started += 1
        return started

    # -- the fleet's hot set -----------------------------------------------------------------
    def hot_key(self, namespace: str) -> str:
        """The Redis sorted set holding the fleet's hot keys of ``namespace``."""
        return f"{self.prefix}:hot:{namespace}"

    def _redis(self) -> Any:
        if self._given is not None or self.connection is None:
            return self._given
        return self._clients.get()

    async def publish(self) -> int:
        """Merge this process's hot set into the fleet's (one pipeline); returns keys sent."""
        client = self._redis()
        if client is None or self._cache is None or not self.topk.counts:
            return 0
        name = self.hot_key(self._cache.namespace)
        try:
            pipe = client.pipeline(transaction=False)
            pipe.zadd(name, dict(self.topk.counts))
            pipe.zremrangebyrank(name, 0, -(4 * self.topk.k) - 1)  # bounded, like everything
            pipe.expire(name, max(60, int(self.publish_every * 30)))
            await pipe.execute()
        except Exception as exc:
            log.warning("stratacache: publishing hot keys failed: %r", exc)
            return 0
        return len(self.topk.counts)

    async def fleet_hot(self, namespace: str, limit: int = 1000) -> list[str]:
        """The fleet's hottest keys of ``namespace``, hottest first (full keys)."""
        client = self._redis()
        if client is None:
            return []
        raw = await client.zrevrange(self.hot_key(namespace), 0, limit - 1)
        return [k.decode() if isinstance(k, bytes) else str(k) for k in raw]

    async def close(self) -> None:
        """Stop the background tick and release the Redis connection."""
        task, self._task = self._task, None
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        current = self._clients.pop_current()
        self._clients.clear()
        if current is not None:
            await current.aclose()


__all__ = ["CountMinSketch", "HotKeys", "TopK"]
