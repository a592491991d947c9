"""Cold-key stampede across processes: loader runs and callers' latency, with a fleet lock.

A cold key whose loader takes 50 ms is hit by 200 concurrent callers spread over
4 OS processes (50 each), all released at once, through Redis:

- *stratacache*: ``@cache.cached(lock=True)`` with ``RedisLock`` (memory + Redis tiers);
- *aiocache*: ``cached_stampede`` on ``RedisCache`` (its Redis lock, polled);
- *cashews*: ``@cache(lock=True)`` on Redis.

Each round uses a fresh key; figures are over every caller of every round. The
loader counts its runs in Redis. Target for stratacache: exactly one run per
round and p99 <= 1.3x the loader time.

    python benchmarks/bench_stampede.py [--redis URL] [--rounds 5] [--procs 4] [--callers 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOADER_SECONDS = 0.050
LIBS = ("stratacache", "aiocache", "cashews")


async def build(
    lib: str, url: str, namespace: str, runs: Any
) -> tuple[Callable[[int], Awaitable[Any]], Any]:
    """The decorated loader for ``lib`` and a coroutine function closing its resources."""

    async def load(x: int) -> dict[str, int]:
        await runs.incr(f"{namespace}:runs:{x}")
        await asyncio.sleep(LOADER_SECONDS)
        return {"x": x}

    if lib == "stratacache":
        import stratacache as sc
        from stratacache.fleet.lock import RedisLock

        cache = sc.Cache(tiers=[sc.MemoryTier(), sc.RedisTier(url)], namespace=namespace)
        cache.readthrough.lock = RedisLock(url, lease=5)
        await cache.start()
        await cache.readthrough.lock.start()
        return cache.cached(ttl=60, lock=True)(load), cache.close
    if lib == "aiocache":
        from aiocache import RedisCache, cached_stampede

        host, port, db = _split(url)
        decorated = cached_stampede(
            lease=5,
            ttl=60,
            cache=RedisCache,
            endpoint=host,
            port=port,
            db=db,
            namespace=namespace,
            pool_max_size=256,
        )(load)
        return decorated, _noop
    if lib == "cashews":
        from cashews import Cache as CashewsCache

        cashews = CashewsCache()
        cashews.setup(url, client_side=False)
        return cashews(ttl="1m", lock=True, key=namespace + ":stampede:{x}")(load), cashews.close
    raise SystemExit(f"unknown library {lib!r}")


async def _noop() -> None:
    return None


def _split(url: str) -> tuple[str, int, int]:
    from urllib.parse import urlparse

    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 6379, int((parsed.path or "/0")[1:] or 0)


async def worker(lib: str, url: str, namespace: str, callers: int, rounds: int) -> None:
    """One process: per round, wait for the go signal, then run ``callers`` concurrent calls."""
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(url)
    fn, close = await build(lib, url, namespace, client)
    latencies: list[list[float]] = []

    async def one(x: int) -> float:
        start = time.perf_counter()
        await fn(x)
        return time.perf_counter() - start

    await fn(-os.getpid())  # open connections and load scripts outside the measured rounds
    for r in range(rounds):
        await client.rpush(f"{namespace}:ready", os.getpid())
        await client.blpop([f"{namespace}:go:{r}"])
        latencies.append(await asyncio.gather(*(one(r) for _ in range(callers))))
    await close()
    await client.aclose()
    print(json.dumps(latencies))


def run_lib(lib: str, url: str, procs: int, callers: int, rounds: int) -> dict[str, Any]:
    """Start ``procs`` workers for ``lib``, release each round together, gather the figures."""
    import redis

    client = redis.Redis.from_url(url)
    namespace = f"bs{uuid.uuid4().hex[:8]}"
    env = dict(
        os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        lib,
        "--redis",
        url,
        "--namespace",
        namespace,
        "--callers",
        str(callers),
        "--rounds",
        str(rounds),
    ]
    workers = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(procs)
    ]
    for r in range(rounds):
        deadline = time.monotonic() + 30
        while client.llen(f"{namespace}:ready") < procs * (r + 1):
            if time.monotonic() > deadline:
                raise SystemExit("workers did not get ready")
            time.sleep(0.005)
        client.rpush(f"{namespace}:go:{r}", *["go"] * procs)
    results = []
    for proc in workers:
        out, _ = proc.communicate(timeout=120)
        results.append(json.loads(out.strip().splitlines()[-1]))
    runs = [int(client.get(f"{namespace}:runs:{r}") or 0) for r in range(rounds)]
    client.close()
    lat = sorted(x for res in results for rnd in res for x in rnd)
    return {
        "runs": runs,
        "calls": len(lat),
        "median": statistics.median(lat),
        "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "max": lat[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--libs", default=",".join(LIBS))
    parser.add_argument("--worker")
    parser.add_argument("--namespace")
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args.worker, args.redis, args.namespace, args.callers, args.rounds))
        return
    print(
        f"cold key, loader {LOADER_SECONDS * 1000:.0f} ms, {args.procs} processes x "
        f"{args.callers} callers, {args.rounds} rounds, Redis {args.redis}"
    )
    print(
        f"{'library':<14}{'runs/round':>14}{'median ms':>11}{'p99 ms':>9}{'max ms':>9}{'p99/loader':>12}"
    )
    for lib in args.libs.split(","):
        fig = run_lib(lib, args.redis, args.procs, args.callers, args.rounds)
        runs = "/".join(str(n) for n in fig["runs"])
        print(
            f"{lib:<14}{runs:>14}{fig['median'] * 1000:>11.1f}{fig['p99'] * 1000:>9.1f}"
            f"{fig['max'] * 1000:>9.1f}{fig['p99'] / LOADER_SECONDS:>11.2f}x"
        )


if __name__ == "__main__":
    main()
