"""stratacache from asyncio: the async client, a decorated coroutine and single-flight.

python examples/async_example.py                                      # memory + SQLite
REDIS_URL=redis://127.0.0.1:6379/0 python examples/async_example.py   # memory + Redis + SQLite
"""

from __future__ import annotations

import asyncio
import os
import tempfile

import stratacache as sc


def build_cache(sqlite_path: str) -> sc.Cache:
    """L1 in memory (short TTL), Redis when REDIS_URL is set, then SQLite."""
    tiers: list[sc.Tier] = [sc.MemoryTier(maxsize=1_000, ttl=30)]
    if os.environ.get("REDIS_URL"):
        tiers.append(sc.RedisTier(url=os.environ["REDIS_URL"]))
    tiers.append(sc.SQLTier(url=f"sqlite:///{sqlite_path}"))
    return sc.Cache(tiers=tiers, namespace=f"example-async-{os.getpid()}", default_ttl=300)


async def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        cache = build_cache(os.path.join(workdir, "cache.db"))
        calls: list[str] = []

        @cache.cached(ttl=60, key="report:{day}", tags=["reports"])
        async def daily_report(day: str) -> list[int]:
            """Pretend this is an expensive aggregation."""
            calls.append(day)
            await asyncio.sleep(0.05)
            return [1, 2, 3]

        async with cache:
            # 20 concurrent callers of a cold key: the function runs once (single-flight)
            results = await asyncio.gather(*(daily_report("2024-01-01") for _ in range(20)))
            assert all(r == [1, 2, 3] for r in results)
            assert calls == ["2024-01-01"]

            await cache.set("k", {"a": 1}, ttl=60, tags=["user:1"])
            assert await cache.get("k") == {"a": 1}
            await cache.set_many({"x": 1, "y": 2}, ttl=60)
            assert await cache.get_many(["x", "y", "z"]) == {"x": 1, "y": 2}

            async def load_price() -> float:
                return 9.99

            assert await cache.get_or_set("price:7", load_price, ttl=60) == 9.99

            await cache.invalidate(keys=["x"], tags=["user:1", "reports"], prefix="price:")
            assert await cache.get("k") is None and await cache.get("x") is None
            await daily_report("2024-01-01")
            assert calls == ["2024-01-01", "2024-01-01"]

            stats = cache.stats()
            for name, tier in stats["tiers"].items():
                print(f"{name:<8} hits={tier['hits']} misses={tier['misses']}")
            await cache.clear()
    print("async example: ok")


if __name__ == "__main__":
    asyncio.run(main())
