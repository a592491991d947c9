"""Wrong uses of stratacache that ``mypy --strict`` must reject (checked by test_mypy.py).

Each line expected to fail ends with ``# E: <mypy error code>``.
"""

from __future__ import annotations

import stratacache as sc
from stratacache.engine.cache import Cache as CacheEngine

cache = sc.Cache(tiers=[sc.MemoryTier(maxsize=100)])


@cache.cached(ttl=60)
def report(day: str) -> list[str]:
    return [day]


@cache.cached(ttl=60)
async def get_user(user_id: int) -> dict[str, int]:
    return {"id": user_id}


async def misuse() -> None:
    report(1)  # E: arg-type
    report.invalidat("mon")  # E: attr-defined
    total: int = report("mon")  # E: assignment
    cache.sync.sett("k", 1)  # E: attr-defined
    user: dict[str, int] = get_user(1)  # E: assignment
    await get_user("1")  # E: arg-type
    cache.cached(tll=5)  # E: call-arg
    cache.cached(ttl="5")  # E: arg-type
    await cache.set("k", 1, ttl="5")  # E: arg-type
    cache.stats()["tiers"]["memory"]["hit_ratio"]  # E: typeddict-item
    sc.MemoryTeir()  # E: attr-defined
    await cache.incr("n", ttl="5")  # E: arg-type
    print(total, user)
    await cache.warm(concurency=4)  # E: call-arg
    cache.invalidate_on(object(), key="k")  # E: call-arg
    sc.Cache.from_dict("memory://")  # E: arg-type
    engine: CacheEngine = CacheEngine([sc.MemoryTier()])
    engine.cached(ttl=5)  # E: attr-defined
    built: int = sc.Cache.from_url("memory://")  # E: assignment
    print(built)
