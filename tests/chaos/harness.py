"""Load, fault and measurement for the chaos scenarios.

Two caches of one namespace (distinct origins: two "processes" as far as the
bus is concerned) share a Redis with the default bus and lock. Worker tasks
call ``get_or_set`` and a decorated function on a few keys whose truth is a
version counter; an invalidator bumps a key's version, then invalidates it
(by key or tag) through one cache. Every read records when it started and what
version it got; every invalidation when it returned. A fault is injected for a
while and lifted; the report says what callers saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import stratacache as sc

KEYS = [f"k{i}" for i in range(8)]
STALENESS_BOUND = 1.0  # the caches' staleness_bound (the default)
STALE_MARGIN = 0.25  # bus lag and scheduling allowance on top of the bound
SOCKET_TIMEOUT = 0.2


def group(key: str) -> str:
    return f"g{int(key[1:]) % 3}"


@dataclass
class Report:
    """What a scenario's callers saw (printed by the tests, asserted on)."""

    calls: int = 0
    exceptions: int = 0
    wrong_values: int = 0
    stale_reads: int = 0
    slowest_call: float = 0.0
    back_after: float | None = None  # seconds from the fault lifted to Redis used again
    loads_during_outage: int = 0
    outage: float = 0.0
    redis_errors: int = 0  # tier errors counted (shows the fault bit)
    errors: list[str] = field(default_factory=list)
    buses_up: bool = False  # every bus connected and local tiers trusted at the end

    def line(self, name: str) -> str:
        return (
            f"{name}: calls={self.calls} exceptions={self.exceptions} wrong={self.wrong_values} "
            f"stale_beyond_bound={self.stale_reads} slowest={self.slowest_call:.3f}s "
            f"redis_used_again_after={self.back_after} "
            f"loads_during_outage={self.loads_during_outage} (outage {self.outage:.1f}s, "
            f"{len(KEYS)} keys x 2 caches) redis_errors={self.redis_errors}"
        )


class Load:
    """The concurrent workload over two caches, with its bookkeeping."""

    def __init__(
        self,
        url: str,
        namespace: str,
        tier: Callable[[], sc.RedisTier] | None = None,
        lock: bool = False,
    ) -> None:
        self.lock = lock  # lock=True on every read (the fleet lock on the same Redis)
        self.tier = tier or (lambda: sc.RedisTier(url=url, socket_timeout=SOCKET_TIMEOUT))
        self.caches = [self._cache(namespace) for _ in range(2)]
        self.truth: Counter[str] = Counter()
        self.invalidated: dict[str, list[tuple[int, float]]] = {k: [] for k in KEYS}
        self.report = Report()
        self.loads: list[float] = []
        self.stop = asyncio.Event()
        self.decorated = [self._decorate(c) for c in self.caches]
        self.redis_hits: list[float] = []  # when a read was answered by Redis

    def _cache(self, namespace: str) -> sc.Cache:
        return sc.Cache(
            tiers=[sc.MemoryTier(ttl=30), self.tier()],
            namespace=namespace,
            default_ttl=30,
            breaker_threshold=3,
        )

    def _decorate(self, cache: sc.Cache) -> Callable[[str, str], Awaitable[str]]:
        @cache.cached(key="{key}", tags=["{tag}"], lock=self.lock)
        async def item(key: str, tag: str) -> str:
            return self._load(key)

        return item

    def _load(self, key: str) -> str:
        self.loads.append(time.monotonic())
        return f"{key}:{self.truth[key]}"

    async def _read(self, worker: int) -> None:
        rng = random.Random(worker)
        cache_no = worker % 2
        cache, item = self.caches[cache_no], self.decorated[cache_no]
        while not self.stop.is_set():
            key = rng.choice(KEYS)
            started = time.monotonic()
            try:
                if rng.random() < 0.5:
                    value = await item(key, group(key))
                else:
                    value = await cache.get_or_set(
                        key, lambda key=key: self._load(key), tags=[group(key)], lock=self.lock
                    )
            except Exception as exc:
                self.report.exceptions += 1
                self.report.errors.append(repr(exc))
                continue
            took = time.monotonic() - started
            self.report.calls += 1
            self.report.slowest_call = max(self.report.slowest_call, took)
            self._check(key, value, started)
            await asyncio.sleep(rng.random() * 0.004)

    def _check(self, key: str, value: Any, started: float) -> None:
        prefix = key + ":"
        if not isinstance(value, str) or not value.startswith(prefix):
            self.report.wrong_values += 1
            return
        version = int(value[len(prefix) :])
        if version > self.truth[key]:
            self.report.wrong_values += 1
            return
        allowed = started - STALENESS_BOUND - STALE_MARGIN
        for new_version, returned in self.invalidated[key]:
            if returned < allowed and version < new_version:
                self.report.stale_reads += 1
                return

    async def _invalidate(self) -> None:
        rng = random.Random(99)
        while not self.stop.is_set():
            key = rng.choice(KEYS)
            self.truth[key] += 1
            try:
                if rng.random() < 0.7:
                    await self.caches[0].invalidate(keys=[key])
                else:
                    await self.caches[0].invalidate(tags=[group(key)])
            except Exception as exc:
                self.report.exceptions += 1
                self.report.errors.append(repr(exc))
            returned = time.monotonic()
            if rng.random() < 0.7:
                self.invalidated[key].append((self.truth[key], returned))
            else:
                for other in KEYS:  # a tag invalidation outdates the whole group
                    if group(other) == group(key):
                        self.invalidated[other].append((self.truth[other], returned))
            await asyncio.sleep(0.05)

    def _on_hit(self, sender: Any, **payload: Any) -> None:
        if payload.get("tier") == "redis":
            self.redis_hits.append(time.monotonic())

    async def run(
        self,
        fault: Callable[[], Awaitable[None]],
        lift: Callable[[], Awaitable[None]],
        outage: float = 2.0,
        warmup: float = 1.0,
        after: float = 2.0,
    ) -> Report:
        """Load for ``warmup``, fault for ``outage``, lift, load for ``after``; the report."""
        from stratacache.engine import signals

        async with contextlib.AsyncExitStack() as stack:
            for cache in self.caches:
                await stack.enter_async_context(cache)
                signals.hit.connect(self._on_hit, sender=cache)
                stack.callback(signals.hit.disconnect, self._on_hit, sender=cache)
            tasks = [asyncio.ensure_future(self._read(w)) for w in range(8)]
            tasks.append(asyncio.ensure_future(self._invalidate()))
            await asyncio.sleep(warmup)
            down = time.monotonic()
            await fault()
            await asyncio.sleep(outage)
            await lift()
            back = time.monotonic()
            self.report.outage = back - down
            self.report.loads_during_outage = sum(1 for t in self.loads if down <= t < back)
            await asyncio.sleep(after)
            self.report.buses_up = all(
                bool(getattr(c.bus, "connected", True)) and c.tiers.local_trusted
                for c in self.caches
            )
            self.stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        self.report.redis_errors = sum(c.stats()["tiers"]["redis"]["errors"] for c in self.caches)
        hits = [t for t in self.redis_hits if t >= back]
        self.report.back_after = round(hits[0] - back, 3) if hits else None
        return self.report
