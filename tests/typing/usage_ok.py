"""Typed uses of stratacache that must pass ``mypy --strict`` (checked by test_mypy.py)."""

from __future__ import annotations

import stratacache as sc
from stratacache.engine.cache import Cache as CacheEngine

cache = sc.Cache(tiers=[sc.MemoryTier(maxsize=100)], namespace="typing", default_ttl=60)


@cache.cached(ttl=60, key="user:{user_id}", tags=["user:{user_id}"])
async def get_user(user_id: int) -> dict[str, int]:
    return {"id": user_id}


@cache.cached(ttl=60)
def report(day: str, *, limit: int = 10) -> list[str]:
    return [day] * limit


@sc.cached(cache, ttl=None, refresh_after=30)
def square(x: int) -> int:
    return x * x


class Shop:
    @cache.cached(ignore=("self",))
    def price(self, item: str) -> float:
        return 1.0

    @cache.cached(ignore=("self",))
    async def stock(self, item: str) -> int:
        return 1


async def use_async() -> None:
    user: dict[str, int] = await get_user(1)
    await get_user.invalidate(1)
    again: dict[str, int] = await get_user.refresh(user_id=1)
    key: str = get_user.key(1)
    refreshed: int = await get_user.refresh_hot()
    count: int = await Shop().stock("apple")
    stats: sc.StatsReport = cache.stats()
    rate: float = stats["tiers"]["memory"]["hit_rate"]
    await cache.set("k", 1, ttl=5.0, tags=["t"])
    await cache.set("k", 1, ttl=None)
    fetch: sc.AsyncCachedFunction[[int], dict[str, int]] = get_user
    print(user, again, key, refreshed, count, rate, fetch)


def use_sync() -> None:
    lines: list[str] = report("mon", limit=2)
    report.invalidate("mon", limit=2)
    fresh: list[str] = report.refresh("mon")
    counters: sc.FunctionStats = report.stats
    n: int = square(3)
    cost: float = Shop().price("apple")
    Shop.price.invalidate(Shop(), "apple")
    Shop().price.invalidate("apple")
    bound_key: str = Shop().price.key("apple")
    cache.sync.set("k", 1, ttl=30)
    value: object = cache.sync.get("k")
    loads: int = cache.sync.stats()["engine"]["loads"]
    typed: sc.CachedFunction[[int], int] = square
    print(lines, fresh, counters, n, cost, value, loads, typed, bound_key, report.__wrapped__("x"))


async def use_front_doors() -> None:
    built: sc.Cache = sc.Cache.from_url("memory://", namespace="typing")
    from_env: sc.Cache = sc.Cache.from_env({"STRATACACHE_URL": "memory://"})
    from_dict: sc.Cache = sc.Cache.from_dict({"tiers": "memory://"})
    summary: sc.warming.WarmSummary = await built.warm(concurrency=4)
    engine = CacheEngine([sc.MemoryTier()])
    doubled = sc.cached(engine, ttl=5)(lambda x: 2 * x)
    rule = built.invalidate_on(object(), keys="user:{id}", reason="typing")
    rule.disconnect()
    print(from_env, from_dict, summary.warmed, doubled)


class Mine(sc.Cache):
    pass


def subclass_builds_itself() -> Mine:
    return Mine.from_url("memory://")


def default_ttl(ttl: float | sc.Unset | None = sc.UNSET) -> None:
    cache.sync.set("k", 1, ttl=ttl)
