"""Key pages and entry descriptions over every tier kind that can list its keys."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.tiers import test_redis_cluster

import stratacache as sc
from stratacache.admin.inspect import describe, key_page
from stratacache.admin.problems import Problem
from stratacache.core.tier import KeyScanner

cluster_url = test_redis_cluster.cluster_url  # the 3-primary cluster fixture


def memory(redis_url: str, sqlite_url: str) -> sc.MemoryTier:
    return sc.MemoryTier()


def redis(redis_url: str, sqlite_url: str) -> sc.RedisTier:
    return sc.RedisTier(url=redis_url)


def sqlite(redis_url: str, sqlite_url: str) -> sc.SQLTier:
    return sc.SQLTier(url=sqlite_url)


@pytest.fixture
def postgres_maker(postgres_url: str) -> Callable[[str, str], sc.SQLTier]:
    """A maker of SQL tiers on the test's private PostgreSQL schema."""
    return lambda redis_url, sqlite_url: sc.SQLTier(url=postgres_url)


@pytest.mark.parametrize("make", [memory, redis, sqlite, "postgres"])
@pytest.mark.parametrize("limit", [1, 7, 50])
async def test_pages_list_every_key_of_the_prefix_once(
    make: Callable[[str, str], sc.MemoryTier] | str,
    limit: int,
    redis_url: str,
    sqlite_url: str,
    request: pytest.FixtureRequest,
) -> None:
    """Following cursors lists every key under the prefix (other keys and namespaces never)."""
    if make == "postgres":
        make = request.getfixturevalue("postgres_maker")
    assert callable(make)
    tier = make(redis_url, sqlite_url)
    assert isinstance(tier, KeyScanner)
    async with sc.Cache([tier], namespace="insp") as cache:
        for i in range(23):
            await cache.set(f"user:{i}", i)
        await cache.set("other", 0)
        async with sc.Cache([make(redis_url, sqlite_url)], namespace="insp2") as neighbour:
            await neighbour.set("user:x", 1)
            seen: list[str] = []
            cursor = ""
            for _ in range(100):
                page = await key_page(cache, "user:", limit, cursor, None)
                assert len(page["keys"]) <= max(limit, 10)
                seen.extend(page["keys"])
                if page["cursor"] is None:
                    break
                cursor = page["cursor"]
        assert sorted(set(seen)) == sorted(f"user:{i}" for i in range(23))


async def test_describe_reports_each_tier(redis_url: str, sqlite_url: str) -> None:
    """An entry held by two tiers shows in both; a missing key is a 404 problem."""
    tiers = [sc.MemoryTier(), sc.SQLTier(url=sqlite_url, ttl=60)]
    async with sc.Cache(tiers, namespace="insp") as cache:
        await cache.set("k", [1, 2], ttl=300, tags=["t"])
        data = await describe(cache, "k", with_value=True)
        assert data["value"] == [1, 2]
        assert data["tiers"]["memory"]["expires_in"] == pytest.approx(300, abs=5)
        assert data["tiers"]["sql"]["kept_for"] == pytest.approx(60, abs=5)
        assert data["tiers"]["sql"]["tags"] == ["t"]
        with pytest.raises(Problem) as missing:
            await describe(cache, "nothing", with_value=False)
        assert missing.value.status == 404


async def test_listing_prefers_redis_and_takes_a_tier_name(redis_url: str, sqlite_url: str) -> None:
    """Over memory -> Redis -> SQL, keys come from Redis (SCAN) unless a tier is named."""
    tiers = [sc.MemoryTier(), sc.RedisTier(url=redis_url), sc.SQLTier(url=sqlite_url)]
    async with sc.Cache(tiers, namespace="pick") as cache:
        await cache.set("k", 1)
        assert (await key_page(cache, "", 10, "", None))["tier"] == "redis"
        by_name = await key_page(cache, "", 10, "", "sql")
        assert by_name == {"tier": "sql", "keys": ["k"], "cursor": None}


@pytest.mark.slow
async def test_cluster_listing_pages_by_offset(cluster_url: str) -> None:
    """On a Redis Cluster, every key of every primary is listed once across pages."""
    tier = sc.RedisTier(url=cluster_url, cluster=True)
    async with sc.Cache([tier], namespace="cl") as cache:
        for i in range(30):
            await cache.set(f"user:{i}", i)
        seen: list[str] = []
        cursor = ""
        while True:
            page = await key_page(cache, "user:", 7, cursor, None)
            assert len(page["keys"]) <= 7
            seen.extend(page["keys"])
            if page["cursor"] is None:
                break
            cursor = page["cursor"]
        assert sorted(seen) == sorted(f"user:{i}" for i in range(30))
