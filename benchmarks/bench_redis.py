"""Redis-tier hits against a raw redis-py GET of the same 1 KB value.

- p50 latency of one hit, async (``await cache.get``) and sync (``cache.sync.get``),
  each against raw redis-py (``await r.get`` / ``r.get``) on the same server, with
  aiocache's ``RedisCache`` and cashews' ``redis://`` backend side by side.
  Target: at most 1.15x the raw p50.
- throughput with 64 concurrent tasks reading hot keys, against raw redis-py GETs,
  aiocache and cashews. stratacache coalesces the reads issued in one event-loop turn
  into one MGET. Target: at least 2x the raw redis-py throughput.
- misses with 64 concurrent tasks: ``get_or_set`` of new keys (read, load, leased write
  back), with and without coalescing (the leased writes of one loop turn go out as one
  pipeline), against raw redis-py doing a GET and a SET per key.
- ``get_many`` of 100 keys: the number of round trips (counted on the wire by a
  connection that counts the packets it sends) and its p50 against one raw MGET
  and against 100 raw GETs. Target: at most 2x one raw MGET.

stratacache runs with the Redis tier alone, so every hit is a Redis round trip
(with an L1 in front, a hot key never reaches Redis at all). ``RedisTier.get
alone`` calls the tier without the engine, which splits the overhead over raw
redis-py between the tier (script, decoding) and the engine (tier walk, counters).

    python benchmarks/bench_redis.py [--redis-url redis://127.0.0.1:6379/0] [--repeats 9]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import redis
import redis.asyncio as aredis
from _common import (
    Result,
    arun_interleaved,
    fmt_ns,
    percentile,
    print_table,
    run_interleaved,
    verdict,
)

import stratacache as sc

VALUE = "x" * 1024  # the same 1 KB value for every library
HOT_KEYS = 64
CONCURRENCY = 64


class CountingConnection(aredis.Connection):
    """An asyncio connection that counts the packets it writes: one per round trip."""

    sent = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        await super().send_packed_command(command, check_health)


async def p50_async(get: Callable[[str], Awaitable[Any]], keys: list[str], ops: int) -> float:
    """p50 in ns of ``ops`` sequential awaited gets."""
    clock = time.perf_counter_ns
    latencies = []
    for i in range(ops):
        key = keys[i % len(keys)]
        start = clock()
        await get(key)
        latencies.append(clock() - start)
    return percentile(latencies, 0.5)


def p50_sync(get: Callable[[str], Any], keys: list[str], ops: int) -> float:
    clock = time.perf_counter_ns
    latencies = []
    for i in range(ops):
        key = keys[i % len(keys)]
        start = clock()
        get(key)
        latencies.append(clock() - start)
    return percentile(latencies, 0.5)


async def throughput(get: Callable[[str], Awaitable[Any]], keys: list[str], ops: int) -> float:
    """Operations per second of ``CONCURRENCY`` tasks sharing ``ops`` gets."""
    per_task = ops // CONCURRENCY

    async def task(offset: int) -> None:
        for i in range(per_task):
            await get(keys[(offset + i) % len(keys)])

    start = time.perf_counter()
    await asyncio.gather(*(task(n) for n in range(CONCURRENCY)))
    return per_task * CONCURRENCY / (time.perf_counter() - start)


async def paired_p50(
    candidates: dict[str, Callable[[str], Awaitable[Any]]], keys: list[str], rounds: int
) -> dict[str, float]:
    """p50 in ns of each candidate, calling all of them once per round, in turn."""
    lat: dict[str, list[int]] = {n: [] for n in candidates}
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for i in range(rounds):
            key = keys[i % len(keys)]
            for name, get in candidates.items():
                start = clock()
                await get(key)
                lat[name].append(clock() - start)
    finally:
        gc.enable()
    return {n: percentile(v, 0.5) for n, v in lat.items()}


def paired_p50_sync(
    candidates: dict[str, Callable[[str], Any]], keys: list[str], rounds: int
) -> dict[str, float]:
    """The blocking twin of ``paired_p50``."""
    lat: dict[str, list[int]] = {n: [] for n in candidates}
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for i in range(rounds):
            key = keys[i % len(keys)]
            for name, get in candidates.items():
                start = clock()
                get(key)
                lat[name].append(clock() - start)
    finally:
        gc.enable()
    return {n: percentile(v, 0.5) for n, v in lat.items()}


async def main_async(url: str, repeats: int, ops: int) -> None:
    run = uuid.uuid4().hex[:8]
    keys = [f"k{i}" for i in range(HOT_KEYS)]
    raw = aredis.Redis.from_url(url)
    raw_sync = redis.Redis.from_url(url)
    raw_prefix = f"bench-raw-{run}:"
    for k in keys:
        await raw.set(raw_prefix + k, VALUE)

    # The measured cache uses the tier's own client; a twin on a packet-counting client
    # (same namespace) is used only to count get_many's round trips.
    tier = sc.RedisTier(url=url)
    cache = sc.Cache([tier], namespace=f"bench{run}")
    await cache.start()
    counting_pool = aredis.ConnectionPool.from_url(url, connection_class=CountingConnection)
    counting = aredis.Redis(connection_pool=counting_pool)
    counted = sc.Cache([sc.RedisTier(url=url, client=counting)], namespace=f"bench{run}", bus=False)
    await counted.start()
    await cache.set_many({k: VALUE for k in keys}, ttl=3600)

    import cashews
    from aiocache import RedisCache

    parsed = urlparse(url)
    aio = RedisCache(
        endpoint=parsed.hostname or "127.0.0.1",
        port=parsed.port or 6379,
        db=int((parsed.path or "/0")[1:] or 0),
        namespace=f"bench-aiocache-{run}",
    )
    cashews_cache = cashews.Cache()
    cashews_cache.setup(url, client_side=False)
    for k in keys:
        await aio.set(k, VALUE, ttl=3600)
        await cashews_cache.set(f"bench-cashews-{run}:{k}", VALUE, expire=3600)
    for k in keys:  # warm scripts and pools
        await cache.get(k)
        cache.sync.get(k)

    async def raw_get(k: str) -> Any:
        return await raw.get(raw_prefix + k)

    async def cashews_get(k: str) -> Any:
        return await cashews_cache.get(f"bench-cashews-{run}:{k}")

    assert await cache.get(keys[0]) == VALUE and await raw_get(keys[0]) == VALUE.encode()

    # -- async p50 ----------------------------------------------------------------------------
    async def tier_get(k: str) -> Any:
        return await tier.get(cache.full_key(k))

    async_candidates: dict[str, Callable[[str], Awaitable[Any]]] = {
        "stratacache (async)": cache.get,
        "raw redis-py asyncio GET": raw_get,
        "RedisTier.get alone": tier_get,
        "aiocache RedisCache": aio.get,
        "cashews redis://": cashews_get,
    }

    def p50_of(get: Callable[[str], Awaitable[Any]]) -> Callable[[], Awaitable[float]]:
        return lambda: p50_async(get, keys, ops)

    results = await arun_interleaved({n: p50_of(g) for n, g in async_candidates.items()}, repeats)
    async_ratios = print_table(
        "Redis hit p50, async", results, subject="stratacache (async)", unit="p50 latency"
    )

    # -- sync p50 -----------------------------------------------------------------------------
    sync_facade = cache.sync

    def raw_sync_get(k: str) -> Any:
        return raw_sync.get(raw_prefix + k)

    sync_results = run_interleaved(
        {
            "stratacache (sync)": lambda: p50_sync(sync_facade.get, keys, ops),
            "raw redis-py GET": lambda: p50_sync(raw_sync_get, keys, ops),
            "RedisTier.get_sync alone": lambda: p50_sync(
                lambda k: tier.get_sync(cache.full_key(k)), keys, ops
            ),
        },
        repeats,
    )
    sync_ratios = print_table(
        "Redis hit p50, sync", sync_results, subject="stratacache (sync)", unit="p50 latency"
    )

    # -- call-by-call interleaving: each round calls every candidate once, in turn, so slow
    # drift of a noisy machine hits all of them alike (the block-interleaved tables above
    # measure each candidate over a run of consecutive calls) ---------------------------------
    paired = await paired_p50(
        {"stratacache": cache.get, "raw": raw_get, "tier": tier_get}, keys, ops * repeats
    )
    paired_sync = paired_p50_sync(
        {
            "stratacache": sync_facade.get,
            "raw": raw_sync_get,
            "tier": lambda k: tier.get_sync(cache.full_key(k)),
        },
        keys,
        ops * repeats,
    )
    print("\nRedis hit p50, call-by-call interleaved (gc off), stratacache / raw redis-py")
    print(
        f"  async: {paired['stratacache'] / paired['raw']:.2f}x (tier alone "
        f"{paired['tier'] / paired['raw']:.2f}x)"
    )
    print(
        f"  sync:  {paired_sync['stratacache'] / paired_sync['raw']:.2f}x (tier alone "
        f"{paired_sync['tier'] / paired_sync['raw']:.2f}x)"
    )

    # -- 64-task throughput ---------------------------------------------------------------------
    tp_ops = ops * 8

    def tp_of(get: Callable[[str], Awaitable[Any]]) -> Callable[[], Awaitable[float]]:
        return lambda: throughput(get, keys, tp_ops)

    tp_results = await arun_interleaved(
        {
            "stratacache (async)": tp_of(cache.get),
            "raw redis-py asyncio GET": tp_of(raw_get),
            "aiocache RedisCache": tp_of(aio.get),
            "cashews redis://": tp_of(cashews_get),
        },
        repeats,
    )
    tp_ratios = print_table(
        f"Redis hit throughput, {CONCURRENCY} concurrent tasks",
        tp_results,
        subject="stratacache (async)",
        unit="gets/s, higher is better",
        formatter=lambda v: f"{v:,.0f}/s",
    )

    # -- 64 concurrent misses: read, load, write back under a lease ----------------------------
    # Each load's write is a leased set (the set script); the async tier sends the leased
    # writes of one loop turn as one pipeline. "coalesce off" sends each alone (its reads too).
    tier_off = sc.RedisTier(url=url)
    tier_off.coalesce = False
    cache_off = sc.Cache([tier_off], namespace=f"bench{run}off")
    await cache_off.start()
    fresh = iter(range(10**9))

    def loader() -> str:
        return VALUE

    async def load_through(c: sc.Cache) -> None:
        await c.get_or_set(f"miss{next(fresh)}", loader, ttl=600)

    async def raw_load() -> None:
        key = f"{raw_prefix}miss{next(fresh)}"
        if await raw.get(key) is None:
            await raw.set(key, VALUE, px=600_000)

    async def miss_throughput(load: Callable[[], Awaitable[Any]], ops: int) -> float:
        per_task = ops // CONCURRENCY

        async def task() -> None:
            for _ in range(per_task):
                await load()

        start = time.perf_counter()
        await asyncio.gather(*(task() for _ in range(CONCURRENCY)))
        return per_task * CONCURRENCY / (time.perf_counter() - start)

    miss_ops = ops * 2
    miss_results = await arun_interleaved(
        {
            "stratacache get_or_set": lambda: miss_throughput(
                lambda: load_through(cache), miss_ops
            ),
            "stratacache, coalesce off": lambda: miss_throughput(
                lambda: load_through(cache_off), miss_ops
            ),
            "raw redis-py GET + SET": lambda: miss_throughput(raw_load, miss_ops),
        },
        repeats,
    )
    miss_ratios = print_table(
        f"Misses loaded and written back, {CONCURRENCY} concurrent tasks",
        miss_results,
        subject="stratacache get_or_set",
        unit="loads/s, higher is better",
        formatter=lambda v: f"{v:,.0f}/s",
    )
    await cache_off.clear()
    await cache_off.close()
    async for key in raw.scan_iter(match=f"{raw_prefix}miss*", count=1000):
        await raw.delete(key)

    # -- get_many of 100 keys -----------------------------------------------------------------
    many = [f"m{i}" for i in range(100)]
    await cache.set_many({k: VALUE for k in many}, ttl=3600)
    for k in many:
        await raw.set(raw_prefix + k, VALUE)
    await counted.get_many(many)
    before = CountingConnection.sent
    got = await counted.get_many(many)
    trips = CountingConnection.sent - before
    assert len(got) == 100, len(got)
    raw_many = [raw_prefix + k for k in many]
    full_many = [cache.full_key(k) for k in many]

    async def one_sample(fn: Callable[[], Awaitable[Any]], n: int = 200) -> float:
        clock = time.perf_counter_ns
        lat = []
        for _ in range(n):
            start = clock()
            await fn()
            lat.append(clock() - start)
        return percentile(lat, 0.5)

    async def hundred_gets() -> None:
        for k in raw_many:
            await raw.get(k)

    many_results: dict[str, Result] = await arun_interleaved(
        {
            "stratacache get_many(100)": lambda: one_sample(lambda: cache.get_many(many)),
            "RedisTier.get_many alone": lambda: one_sample(lambda: tier.get_many(full_many)),
            "raw MGET of 100": lambda: one_sample(lambda: raw.mget(raw_many)),
            "raw 100 x GET": lambda: one_sample(hundred_gets, 20),
        },
        repeats,
    )
    many_ratios = print_table(
        "get_many of 100 keys", many_results, subject="stratacache get_many(100)", unit="p50"
    )
    print(f"  round trips for one stratacache get_many(100): {trips}")

    print("\nTargets")
    print(verdict("async hit p50 vs raw", async_ratios["raw redis-py asyncio GET"], 1.15))
    print(verdict("sync hit p50 vs raw", sync_ratios["raw redis-py GET"], 1.15))
    print(
        verdict(
            f"throughput with {CONCURRENCY} tasks vs raw",
            tp_ratios["raw redis-py asyncio GET"],
            2.0,
            at_most=False,
        )
    )
    print(verdict("get_many(100) p50 vs one raw MGET", many_ratios["raw MGET of 100"], 2.0))
    print(
        f"  misses with {CONCURRENCY} tasks: {miss_ratios['stratacache, coalesce off']:.2f}x "
        f"the uncoalesced tier's loads/s, {miss_ratios['raw redis-py GET + SET']:.2f}x raw"
    )
    print(f"  get_many(100) round trips: {trips} (target 1) {'OK' if trips == 1 else 'MISSED'}")
    print(f"  (raw async GET p50 here: {fmt_ns(results['raw redis-py asyncio GET'].median)})")

    await cache.clear()
    await cache.close()
    await counted.close()
    await raw.delete(*[raw_prefix + k for k in keys + many])
    await aio.clear()
    await aio.close()
    await cashews_cache.clear()
    await cashews_cache.close()
    await raw.aclose()
    await counting.aclose()
    raw_sync.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--ops", type=int, default=2000, help="gets per p50 sample")
    args = parser.parse_args()
    asyncio.run(main_async(args.redis_url, args.repeats, args.ops))


if __name__ == "__main__":
    main()
