"""Tags are the caller's input: a bad tag is refused at the call, never booked as a tier failure.

On memory-only and memory+Redis caches, sync and async, every kind of bad tag makes
``set``, ``set_many`` and ``get_or_set`` raise a ``stratacache`` error before anything
is written or loaded, and no tier counts an error or opens its breaker.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import stratacache as sc

#: not a tag list: non-string members, an empty or over-long tag, a bare string
BAD_TAGS: list[Any] = [[1], [None], [b"t"], [("a",)], [""], ["x" * 5000], ["ok", 2.5], "user:1"]


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[sc.Cache]:
    tiers: list[Any] = [sc.MemoryTier()]
    if request.param == "redis":
        tiers.append(sc.RedisTier(url=request.getfixturevalue("redis_url")))
    c = sc.Cache(tiers=tiers, namespace="t" + uuid.uuid4().hex[:10], default_ttl=60)
    async with c:
        yield c


def _untouched(cache: sc.Cache) -> None:
    """No tier counted an error, stored anything or opened its breaker."""
    for slot in cache.tiers.slots:
        assert (slot.stats.errors, slot.stats.sets, slot.breaker.is_open) == (0, 0, False)


def _loader(calls: list[int]) -> Callable[[], int]:
    def load() -> int:
        calls.append(1)
        return 1

    return load


@pytest.mark.parametrize("tags", BAD_TAGS, ids=lambda t: repr(t)[:20])
async def test_async_calls_refuse_bad_tags(cache: sc.Cache, tags: Any) -> None:
    """Async set, set_many and get_or_set refuse a bad tag list; no loader runs, nothing is stored."""
    calls: list[int] = []
    with pytest.raises(sc.StratacacheError):
        await cache.set("k", 1, tags=tags)
    with pytest.raises(sc.StratacacheError):
        await cache.set_many({"k": 1}, tags=tags)
    with pytest.raises(sc.StratacacheError):
        await cache.get_or_set("k", _loader(calls), tags=tags)
    assert calls == [] and await cache.get("k") is None
    _untouched(cache)


@pytest.mark.parametrize("tags", BAD_TAGS, ids=lambda t: repr(t)[:20])
async def test_sync_calls_refuse_bad_tags(cache: sc.Cache, tags: Any) -> None:
    """cache.sync refuses the same tag lists the async client refuses, with the same effect."""
    calls: list[int] = []
    with pytest.raises(sc.StratacacheError):
        cache.sync.set("k", 1, tags=tags)
    with pytest.raises(sc.StratacacheError):
        cache.sync.set_many({"k": 1}, tags=tags)
    with pytest.raises(sc.StratacacheError):
        cache.sync.get_or_set("k", _loader(calls), tags=tags)
    assert calls == [] and cache.sync.get("k") is None
    _untouched(cache)


async def test_good_tags_still_work(cache: sc.Cache) -> None:
    """A list or tuple of strings is stored and invalidates as before."""
    await cache.set("k", 1, tags=("user:1", "shop"))
    assert await cache.get("k") == 1
    await cache.invalidate(tags=["shop"])
    assert await cache.get("k") is None


@pytest.mark.parametrize("storage", ["redis", "sqlite", "postgres"])
def test_unstorable_keys_never_count_as_tier_failures(
    request: pytest.FixtureRequest, storage: str
) -> None:
    """Keys, tags and prefixes no tier can store are refused at the call; no tier error is booked."""
    url = request.getfixturevalue(f"{storage}_url")
    shared = sc.RedisTier(url=url) if storage == "redis" else sc.SQLTier(url=url)
    cache = sc.Cache(tiers=[sc.MemoryTier(), shared], namespace="bad" + storage)
    calls = [
        lambda: cache.sync.set("file:\udcff", 1),
        lambda: cache.sync.get("file:\udcff"),
        lambda: cache.sync.set("a\x00b", 1),
        lambda: cache.sync.set_many({"ok": 1, "file:\udcff": 2}),
        lambda: cache.sync.get_many(["ok", "file:\udcff"]),
        lambda: cache.sync.get_many(["ok", "a\x00b"]),
        lambda: cache.sync.get_or_set("file:\udcff", lambda: 1),
        lambda: cache.sync.set("k", 1, tags=["file:\udcff"]),
        lambda: cache.sync.invalidate(tags=["\udcff"]),
        lambda: cache.sync.invalidate(prefix="\udcff"),
        lambda: cache.sync.delete("\udcff"),
    ]
    with cache.sync:
        for call in calls:
            with pytest.raises(sc.CacheKeyError):
                call()
        assert cache.stats()["tiers"][shared.name]["errors"] == 0
        assert cache.sync.get("ok") is None  # nothing partial from the refused batch
    with pytest.raises(sc.ConfigError, match="namespace"):  # configuration, refused where built
        sc.Cache(tiers=[sc.MemoryTier()], namespace="ns\udcff")
