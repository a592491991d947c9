"""L1 hits through decorators: stratacache against the in-process caches people already use.

Sync: a decorated one-argument function, every call a hit on one of 128 warm
keys, against ``functools.lru_cache``, ``cachetools.cached`` (``LRUCache`` and
``TTLCache``), ``cachebox.cached`` and a ``dogpile.cache`` memory region.
stratacache runs as configured in production: a TTL on every entry and hit
counting on. Targets: at most 0.75x cachetools' LRU decorator (stretch: within
4x of ``functools.lru_cache``).

Async: the same over an ``async def``, against the plain coroutine call (no
cache at all), ``aiocache.cached``, cashews' ``@cache`` on ``mem://`` and
cachebox's decorator on the coroutine function. Target: at most 6x the plain
call.

Numbers are ns per call with the bare loop's cost subtracted, medians of
interleaved repeats (see ``_common``).

    python benchmarks/bench_l1.py [--repeats 15] [--rounds 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    Result,
    arun_interleaved,
    atime_loop,
    empty_loop,
    print_table,
    run_interleaved,
    time_loop,
    verdict,
)

import stratacache as sc

KEYS = list(range(128))
TTL = 600


def compute(x: int) -> int:
    return x * 2


async def acompute(x: int) -> int:
    return x * 2


def sync_candidates() -> dict[str, Callable[[Any], Any]]:
    """Each library's decorator around ``compute``, as documented for an in-memory cache."""
    import cachebox
    import cachetools
    from dogpile.cache import make_region

    cache = sc.Cache([sc.MemoryTier(maxsize=10_000, ttl=TTL)], namespace="bench-l1")
    region = make_region().configure("dogpile.cache.memory", expiration_time=TTL)
    return {
        "stratacache": cache.cached(ttl=TTL)(compute),
        "functools.lru_cache": functools.lru_cache(maxsize=10_000)(compute),
        "cachetools LRUCache": cachetools.cached(cachetools.LRUCache(10_000))(compute),
        "cachetools TTLCache": cachetools.cached(cachetools.TTLCache(10_000, ttl=TTL))(compute),
        "cachebox LRUCache": cachebox.cached(cachebox.LRUCache(10_000))(compute),
        "cachebox TTLCache": cachebox.cached(cachebox.TTLCache(10_000, TTL))(compute),
        "dogpile memory region": region.cache_on_arguments()(compute),
    }


def async_candidates() -> dict[str, Callable[[Any], Awaitable[Any]]]:
    import cachebox
    import cashews
    from aiocache import cached as aiocache_cached

    cache = sc.Cache([sc.MemoryTier(maxsize=10_000, ttl=TTL)], namespace="bench-l1-async")
    cashews_cache = cashews.Cache()
    cashews_cache.setup("mem://")
    return {
        "stratacache": cache.cached(ttl=TTL)(acompute),
        "plain async call": acompute,
        "aiocache.cached": aiocache_cached(ttl=TTL)(acompute),
        "cashews mem://": cashews_cache(ttl=TTL)(acompute),
        "cachebox on async def": cachebox.cached(cachebox.LRUCache(10_000))(acompute),
    }


def bench_sync(repeats: int, rounds: int) -> dict[str, float]:
    candidates = sync_candidates()
    for fn in candidates.values():  # warm every cache: every timed call is a hit
        for k in KEYS:
            fn(k)
    overhead = min(empty_loop(KEYS, rounds) for _ in range(5))
    samples = {
        name: (lambda fn=fn: time_loop(fn, KEYS, rounds) - overhead)
        for name, fn in candidates.items()
    }
    results = run_interleaved(samples, repeats)
    return print_table(
        "Sync decorated-function L1 hit", results, subject="stratacache", unit="ns per hit"
    )


async def bench_async(repeats: int, rounds: int) -> dict[str, float]:
    candidates = async_candidates()
    for fn in candidates.values():
        for k in KEYS:
            await fn(k)
    overhead = min(empty_loop(KEYS, rounds) for _ in range(5))

    def sample(fn: Callable[[Any], Awaitable[Any]]) -> Callable[[], Awaitable[float]]:
        async def run() -> float:
            return await atime_loop(fn, KEYS, rounds) - overhead

        return run

    results: dict[str, Result] = await arun_interleaved(
        {name: sample(fn) for name, fn in candidates.items()}, repeats
    )
    return print_table(
        "Async decorated-function L1 hit", results, subject="stratacache", unit="ns per hit"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2000, help="passes over the keys per sample")
    args = parser.parse_args()
    sync_ratios = bench_sync(args.repeats, args.rounds)
    async_ratios = asyncio.run(bench_async(args.repeats, max(1, args.rounds // 4)))
    print("\nTargets")
    print(verdict("sync vs cachetools LRUCache", sync_ratios["cachetools LRUCache"], 0.75))
    print(verdict("sync vs functools.lru_cache (stretch)", sync_ratios["functools.lru_cache"], 4))
    print(verdict("async vs plain async call", async_ratios["plain async call"], 6))


if __name__ == "__main__":
    main()
