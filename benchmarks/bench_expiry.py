"""A hot key under steady load passes its expiry: loader calls and latency around expiry.

One process, ``--clients`` tasks calling the same cached coroutine in a loop
(a 1 ms pause between calls) for ``--seconds``; the loader takes 50 ms and
the TTL is ``--ttl`` seconds, so the key expires several times during the run:

- *stratacache*: memory + Redis, ``refresh_after=0.75*ttl`` (stale-while-revalidate)
  and XFetch on (``early_refresh_beta=1``);
- *aiocache*: ``cached_stampede`` on Redis; *cashews*: ``@cache(lock=True)`` on Redis.

Reported per library: loader calls after the first load, grouped into expiry
events (runs less than ttl/4 apart) with the largest group, the
callers' p99 in the *expiry windows* (calls that started from 100 ms before a
loader run began until 100 ms after it ended) and in steady state (every other
call), and their ratio. Target for stratacache: one loader call per expiry and
an expiry-window p99 within 1.5x of steady state.

    python benchmarks/bench_expiry.py [--redis URL] [--seconds 8] [--ttl 2] [--clients 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

LOADER_SECONDS = 0.050
WINDOW = 0.100
LIBS = ("stratacache", "aiocache", "cashews")


async def build(
    lib: str, url: str, namespace: str, ttl: float, load: Callable[[int], Awaitable[Any]]
) -> tuple[Callable[[int], Awaitable[Any]], Callable[[], Awaitable[None]]]:
    """``load`` decorated by ``lib``, and a coroutine function closing its resources."""
    if lib == "stratacache":
        import stratacache as sc

        cache = sc.Cache(
            tiers=[sc.MemoryTier(), sc.RedisTier(url)], namespace=namespace, early_refresh_beta=1.0
        )
        await cache.start()
        return cache.cached(ttl=ttl, refresh_after=0.75 * ttl)(load), cache.close
    if lib == "aiocache":
        from urllib.parse import urlparse

        from aiocache import RedisCache, cached_stampede

        parsed = urlparse(url)
        decorated = cached_stampede(
            lease=5,
            ttl=ttl,
            cache=RedisCache,
            endpoint=parsed.hostname or "127.0.0.1",
            port=parsed.port or 6379,
            db=int((parsed.path or "/0")[1:] or 0),
            namespace=namespace,
            pool_max_size=256,
        )(load)

        async def nothing() -> None:
            return None

        return decorated, nothing
    if lib == "cashews":
        from cashews import Cache as CashewsCache

        cashews = CashewsCache()
        cashews.setup(url, client_side=False)
        return cashews(ttl=ttl, lock=True, key=namespace + ":hot:{x}")(load), cashews.close
    raise SystemExit(f"unknown library {lib!r}")


async def run_lib(lib: str, url: str, seconds: float, ttl: float, clients: int) -> dict[str, Any]:
    namespace = f"be{uuid.uuid4().hex[:8]}"
    runs: list[tuple[float, float]] = []

    async def load(x: int) -> dict[str, int]:
        start = time.perf_counter()
        await asyncio.sleep(LOADER_SECONDS)
        runs.append((start, time.perf_counter()))
        return {"x": x}

    fn, close = await build(lib, url, namespace, ttl, load)
    await fn(1)  # the first (cold) load is not an expiry
    runs.clear()
    calls: list[tuple[float, float]] = []
    stop = time.perf_counter() + seconds

    async def client() -> None:
        while (start := time.perf_counter()) < stop:
            await fn(1)
            calls.append((start, time.perf_counter() - start))
            await asyncio.sleep(0.001)

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - began
    await close()
    windows = [(s - WINDOW, e + WINDOW) for s, e in runs]
    near = [lat for t, lat in calls if any(a <= t <= b for a, b in windows)]
    steady = [lat for t, lat in calls if not any(a <= t <= b for a, b in windows)]
    return {
        "calls": len(calls),
        "loader_calls": len(runs),
        "events": _events([s for s, _ in runs], ttl / 4),
        "elapsed": elapsed,
        "steady_p99": _p99(steady),
        "near_p99": _p99(near),
        "steady_median": statistics.median(steady) if steady else 0.0,
    }


def _events(starts: list[float], gap: float) -> list[int]:
    """Loader runs grouped into expiry events (runs less than ``gap`` apart): runs per event."""
    groups: list[int] = []
    last = -1e9
    for start in sorted(starts):
        if start - last > gap:
            groups.append(0)
        groups[-1] += 1
        last = start
    return groups


def _p99(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--ttl", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--libs", default=",".join(LIBS))
    args = parser.parse_args()
    print(
        f"hot key, loader {LOADER_SECONDS * 1000:.0f} ms, ttl {args.ttl} s, {args.clients} "
        f"clients for {args.seconds} s, Redis {args.redis}"
    )
    print(
        f"{'library':<13}{'calls':>8}{'loads':>7}{'events':>8}{'max loads/event':>17}{'steady p99 ms':>15}"
        f"{'expiry p99 ms':>15}{'ratio':>8}"
    )
    for lib in args.libs.split(","):
        fig = asyncio.run(run_lib(lib, args.redis, args.seconds, args.ttl, args.clients))
        ratio = fig["near_p99"] / fig["steady_p99"] if fig["steady_p99"] else float("nan")
        print(
            f"{lib:<13}{fig['calls']:>8}{fig['loader_calls']:>7}{len(fig['events']):>8}"
            f"{max(fig['events'], default=0):>17}{fig['steady_p99'] * 1000:>15.2f}"
            f"{fig['near_p99'] * 1000:>15.2f}{ratio:>7.2f}x"
        )


if __name__ == "__main__":
    main()
