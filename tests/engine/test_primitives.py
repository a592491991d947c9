"""add / incr / decr / touch / ttl / exists / get_or_set_many on every tier and stack, async and sync."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.tiers.test_redis_cluster import cluster_url  # noqa: F401  (the cluster fixture)

import stratacache as sc

STACKS = [
    "memory",
    "redis",
    "sqlite",
    "postgres",
    "memory+redis",
    "memory+sqlite",
    "memory+redis+postgres",
]


@pytest.fixture(params=STACKS)
def stack_url(request: pytest.FixtureRequest) -> str:
    """A from_url string for each stack under test (real Redis, SQLite and PostgreSQL)."""
    parts = []
    for name in request.param.split("+"):
        if name == "memory":
            parts.append("memory://")
        elif name == "redis":
            parts.append(request.getfixturevalue("redis_url"))
        elif name == "sqlite":
            parts.append(request.getfixturevalue("sqlite_url"))
        else:
            parts.append(request.getfixturevalue("postgres_url"))
    return ",".join(parts)


@pytest.fixture
def make(stack_url: str) -> Iterator[Callable[..., sc.Cache]]:
    """Build caches on the stack (closed after the test)."""
    made: list[sc.Cache] = []

    def build(**options: Any) -> sc.Cache:
        cache = sc.Cache.from_url(stack_url, namespace="prim", **options)
        made.append(cache)
        return cache

    yield build
    for cache in made:
        cache.sync.close()


async def test_async_primitives(make: Callable[..., sc.Cache]) -> None:
    """Each primitive does what it says on every stack (async)."""
    cache = make()
    async with cache:
        assert await cache.add("a", 1) is True
        assert await cache.add("a", 2) is False
        assert await cache.get("a") == 1
        assert await cache.exists("a") and not await cache.exists("nope")
        assert await cache.incr("n") == 1
        assert await cache.incr("n", 5) == 6
        assert await cache.decr("n", 2) == 4
        assert await cache.get("n") == 4
        with pytest.raises(KeyError):
            await cache.incr("absent", initial=None)
        assert not await cache.exists("absent")
        await cache.set("s", "text")
        with pytest.raises(TypeError):
            await cache.incr("s")
        assert await cache.get("s") == "text"
        await cache.set("t", "v", ttl=10)
        remaining = await cache.ttl("t")
        assert remaining is not None and 0 < remaining <= 10
        assert await cache.touch("t", ttl=1000) is True
        remaining = await cache.ttl("t")
        assert remaining is not None and 10 < remaining <= 1000
        assert await cache.get("t") == "v"
        assert await cache.touch("absent") is False
        await cache.set("forever", 1, ttl=None)
        assert await cache.ttl("forever") == math.inf
        assert await cache.ttl("absent") is None
        await cache.set("x", 1)
        calls: list[list[str]] = []

        async def load(keys: list[str]) -> dict[str, int]:
            calls.append(keys)
            return {k: len(k) for k in keys}

        got = await cache.get_or_set_many(["x", "yy", "zzz"], load)
        assert got == {"x": 1, "yy": 2, "zzz": 3} and calls == [["yy", "zzz"]]
        assert await cache.get_or_set_many(["yy", "zzz"], load) == {"yy": 2, "zzz": 3}
        assert len(calls) == 1


def test_sync_primitives(make: Callable[..., sc.Cache]) -> None:
    """cache.sync has the same primitives with the same results."""
    s = make().sync
    assert s.add("a", 1) is True and s.add("a", 2) is False and s.get("a") == 1
    assert s.incr("n") == 1 and s.incr("n", 5) == 6 and s.decr("n", 2) == 4 and s.get("n") == 4
    with pytest.raises(KeyError):
        s.incr("absent", initial=None)
    s.set("s", "text")
    with pytest.raises(TypeError):
        s.incr("s")
    s.set("t", "v", ttl=10)
    assert s.touch("t", ttl=1000) is True and 10 < s.ttl("t") <= 1000
    assert s.exists("t") and not s.exists("absent") and s.ttl("absent") is None
    got = s.get_or_set_many(["t", "q"], lambda keys: {k: k * 2 for k in keys})
    assert got == {"t": "v", "q": "qq"} and s.get("q") == "qq"


async def test_add_from_many_tasks_sets_once(make: Callable[..., sc.Cache]) -> None:
    """Of 20 concurrent adds of one key, exactly one stores its value."""
    async with make() as cache:
        results = await asyncio.gather(*(cache.add("once", i) for i in range(20)))
        assert results.count(True) == 1
        assert await cache.get("once") == results.index(True)


async def test_incr_from_many_tasks_adds_up(make: Callable[..., sc.Cache]) -> None:
    """50 increments of 1, 10 at a time concurrently, end at 50 (waves of 10 keep the
    contention without asking a starved machine for 50 new connections at once)."""
    async with make() as cache:
        for _ in range(5):
            await asyncio.gather(*(cache.incr("c") for _ in range(10)))
        assert await cache.get("c") == 50


def _incr_worker(url: str, n: int) -> None:
    cache = sc.Cache.from_url(url, namespace="prim")
    for _ in range(n):
        cache.sync.incr("procs")
    cache.sync.close()


@pytest.mark.slow
@pytest.mark.parametrize("parts", ["redis", "postgres", "memory+redis", "sqlite"])
def test_incr_from_several_processes_adds_up(parts: str, request: pytest.FixtureRequest) -> None:
    """4 OS processes x 50 increments on a shared tier end at 200, read from any stack."""
    names = {"redis": "redis_url", "postgres": "postgres_url", "sqlite": "sqlite_url"}
    url = ",".join(
        "memory://" if p == "memory" else request.getfixturevalue(names[p])
        for p in parts.split("+")
    )
    cache = sc.Cache.from_url(url, namespace="prim")
    cache.sync.start()  # tables created once, before the workers race to
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_incr_worker, args=(url, 50)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    assert cache.sync.get("procs") == 200
    cache.sync.close()


async def test_incr_invalidates_the_local_copy(redis_url: str) -> None:
    """After incr, this process's memory tier no longer serves the old value."""
    async with sc.Cache.from_url(f"memory://,{redis_url}", namespace="prim") as cache:
        await cache.set("n", 1)
        assert await cache.get("n") == 1
        await cache.incr("n")
        assert await cache.get("n") == 2


@pytest.mark.parametrize("delta", [1.5, "1", True, None])
async def test_bad_delta_is_a_config_error(delta: Any) -> None:
    """A non-int delta is a ConfigError, nothing written."""
    async with sc.Cache([sc.MemoryTier()]) as cache:
        with pytest.raises(sc.ConfigError):
            await cache.incr("k", delta)
        assert not await cache.exists("k")


async def test_incr_past_64_bits_keeps_exact_ints(redis_url: str) -> None:
    """Counters are Python ints: past 64 bits they stay exact (no wraparound)."""
    async with sc.Cache.from_url(redis_url, namespace="prim") as cache:
        await cache.set("big", 2**64 - 1)
        assert await cache.incr("big") == 2**64
        assert await cache.get("big") == 2**64


async def test_incr_on_a_down_authority_raises_tier_error(redis_factory: Any) -> None:
    """With its Redis down, incr raises TierError (no made-up count) and counts the error."""
    server = redis_factory()
    cache = sc.Cache.from_url(
        f"memory://,{server.url}?socket_timeout=0.2", namespace="p", bus=False
    )
    async with cache:
        await cache.incr("n")
        server.stop()
        with pytest.raises(sc.TierError):
            await cache.incr("n")
        assert cache.stats()["tiers"]["redis"]["errors"] >= 1


@pytest.mark.parametrize("tags", [[1], [None], [""], "user:1", [b"x"], 5])
@pytest.mark.parametrize("call", ["set", "add", "get_or_set", "set_many"])
def test_bad_tags_are_config_errors_not_tier_failures(redis_url: str, call: str, tags: Any) -> None:
    """A tag that is not a non-empty string is a clear error at the call; no tier counts an error."""
    cache = sc.Cache.from_url(f"memory://,{redis_url}", namespace="prim", bus=False)
    s = cache.sync
    calls: dict[str, Callable[[], Any]] = {
        "set": lambda: s.set("k", 1, tags=tags),
        "add": lambda: s.add("k", 1, tags=tags),
        "get_or_set": lambda: s.get_or_set("k", lambda: 1, tags=tags),
        "set_many": lambda: s.set_many({"k": 1}, tags=tags),
    }
    with pytest.raises((sc.ConfigError, sc.CacheKeyError), match="tag"):
        calls[call]()
    assert not s.exists("k")
    assert all(t["errors"] == 0 for t in cache.stats()["tiers"].values())
    s.close()


@pytest.mark.slow
def test_primitives_on_a_redis_cluster(cluster_url: str) -> None:  # noqa: F811
    """add/incr/touch work on a Redis Cluster, tagged entries included (key and version share a slot)."""
    cache = sc.Cache(
        [sc.RedisTier(cluster_url, cluster=True)], namespace=f"cl{uuid.uuid4().hex[:6]}"
    )
    s = cache.sync
    assert s.add("a", 1, tags=["t1", "t2"]) is True and s.add("a", 2) is False
    assert [s.incr(f"n{i}") for i in range(5)] == [1] * 5 and s.incr("n0", 4) == 5
    assert s.touch("a", ttl=500) is True and 10 < s.ttl("a") <= 500
    s.invalidate(tags=["t2"])
    assert s.add("a", 3) is True and s.get("a") == 3
    s.close()


def _counters(cache: sc.Cache) -> dict[str, Any]:
    return {
        name: {k: v for k, v in t.items() if k in ("hits", "misses", "sets", "deletes", "errors")}
        for name, t in cache.stats()["tiers"].items()
    }


async def test_sync_and_async_primitives_count_alike(redis_url: str) -> None:
    """The same primitive calls, async and sync, give the same results and tier counters."""
    url = f"memory://,{redis_url}"
    a = sc.Cache.from_url(url, namespace="pa", bus=False)
    b = sc.Cache.from_url(url, namespace="pb", bus=False)
    async with a:
        got_async = [
            await a.add("k", 1),
            await a.add("k", 2),
            await a.incr("n", 3),
            await a.decr("n"),
            await a.touch("k", ttl=100),
            await a.exists("k"),
            await a.get("n"),
            await a.get_or_set_many(["k", "m"], lambda keys: {k: 0 for k in keys}),
        ]
        async_counters = _counters(a)
    s = b.sync
    got_sync = [
        s.add("k", 1),
        s.add("k", 2),
        s.incr("n", 3),
        s.decr("n"),
        s.touch("k", ttl=100),
        s.exists("k"),
        s.get("n"),
        s.get_or_set_many(["k", "m"], lambda keys: {k: 0 for k in keys}),
    ]
    assert got_async == got_sync
    assert async_counters == _counters(b)
    s.close()


async def test_primitives_on_signed_and_encrypted_entries(make: Callable[..., sc.Cache]) -> None:
    """add/incr/touch write entries bound to their key, so a signed, encrypted cache reads them."""
    from cryptography.fernet import Fernet

    envelopes = [sc.HMACSigner(b"k" * 32), sc.FernetEncryption(Fernet.generate_key())]
    cache = make(envelopes=envelopes)
    async with cache:
        assert await cache.add("n", 1, tags=["t"])
        assert await cache.incr("n", 2) == 3
        assert await cache.touch("n", ttl=60)
        assert await cache.get("n", tags=["t"]) == 3
        assert cache.stats()["engine"].get("moved_values", 0) == 0


async def test_get_or_set_many_does_not_store_over_an_invalidation(
    make: Callable[..., sc.Cache],
) -> None:
    """A batch loaded from a source read before an invalidation is returned but not stored."""
    cache = make()
    source = {"a": "old", "b": "old"}
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_loader(keys: list[str]) -> dict[str, str]:
        seen = {k: source[k] for k in keys}  # read before the invalidation
        started.set()
        await release.wait()
        return seen

    async with cache:
        task = asyncio.create_task(cache.get_or_set_many(["a", "b"], slow_loader))
        await started.wait()
        source["a"] = "new"
        await cache.invalidate(keys=["a"])
        release.set()
        assert await task == {"a": "old", "b": "old"}  # this caller gets what it loaded
        assert await cache.get("a") is None  # but it is not stored over the invalidation
        assert await cache.get("b") == "old"


def test_sync_get_or_set_many_does_not_store_over_an_invalidation(
    make: Callable[..., sc.Cache],
) -> None:
    """cache.sync.get_or_set_many leases the same way: an invalidation meanwhile wins."""
    cache = make()

    def loader(keys: list[str]) -> dict[str, str]:
        seen = dict.fromkeys(keys, "old")
        cache.sync.invalidate(keys=["a"])  # arrives while the batch is loading
        return seen

    assert cache.sync.get_or_set_many(["a", "b"], loader) == {"a": "old", "b": "old"}
    assert cache.sync.get("a") is None and cache.sync.get("b") == "old"
    with pytest.raises(sc.ConfigError):
        cache.sync.get_or_set_many("ab", loader)
    with pytest.raises(sc.ConfigError):
        cache.sync.get_many("ab")
