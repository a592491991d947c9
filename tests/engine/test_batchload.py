"""``get_or_set_many`` and ``get_or_set`` of one key share one load (async and sync).

A batch and a single-key load running side by side used to each store their own result,
and the older load's could be what every tier kept. Loaders are gated by events, so the
overlap is certain, not timed.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.waiting import poll, wait_until

import stratacache as sc


@pytest.fixture(params=["memory+sqlite", "memory+redis"])
def make(request: pytest.FixtureRequest) -> Iterator[Callable[[], sc.Cache]]:
    lower = "sqlite_url" if request.param.endswith("sqlite") else "redis_url"
    url = "memory://," + str(request.getfixturevalue(lower))
    made: list[sc.Cache] = []

    def build() -> sc.Cache:
        made.append(sc.Cache.from_url(url, namespace=f"bl{uuid.uuid4().hex[:8]}"))
        return made[-1]

    yield build
    for cache in made:
        cache.sync.close()


def _coalesced(cache: sc.Cache) -> int:
    return int(cache.stats()["engine"]["coalesced"])


async def _held(cache: sc.Cache, key: str) -> list[Any]:
    """The value each tier holds for ``key`` (None: none)."""
    fkey = cache.full_key(key)
    held = []
    for slot in cache.tiers.slots:
        entry = await slot.tier.get(fkey)
        held.append(None if entry is None else entry.value)
    return held


async def test_a_batch_joins_a_single_key_load_in_flight(make: Callable[[], sc.Cache]) -> None:
    cache = make()
    gate, calls = asyncio.Event(), []

    async def one() -> str:
        calls.append("one")
        await gate.wait()
        return "single"

    def many(keys: list[str]) -> dict[str, str]:
        calls.append(f"many{keys}")
        return {k: "batch" for k in keys}

    async with cache:
        single = asyncio.ensure_future(cache.get_or_set("k", one))
        await poll(lambda: calls == ["one"], what="the single-key load")
        batch = asyncio.ensure_future(cache.get_or_set_many(["k", "j"], many))
        await poll(lambda: len(calls) == 2, what="the batch's own load")
        gate.set()
        assert await single == "single"
        assert await batch == {"k": "single", "j": "batch"}
        assert calls == ["one", "many['j']"]  # k loaded once
        assert await _held(cache, "k") == ["single", "single"]


async def test_a_single_key_load_joins_a_batch_in_flight(make: Callable[[], sc.Cache]) -> None:
    cache = make()
    gate, calls = asyncio.Event(), []

    async def many(keys: list[str]) -> dict[str, str]:
        calls.append("many")
        await gate.wait()
        return {k: "batch" for k in keys if k != "left-out"}

    def one() -> str:
        calls.append("one")
        return "single"

    async with cache:
        batch = asyncio.ensure_future(cache.get_or_set_many(["k", "left-out"], many))
        await poll(lambda: calls == ["many"], what="the batch load")
        single = asyncio.ensure_future(cache.get_or_set("k", one))
        other = asyncio.ensure_future(cache.get_or_set("left-out", one))
        await poll(lambda: _coalesced(cache) >= 2, what="both joining the batch")
        gate.set()
        assert await batch == {"k": "batch"}
        assert await single == "batch"
        assert await other == "single"  # the batch left it out: the joiner loaded it
        assert calls == ["many", "one"]
        assert await _held(cache, "k") == ["batch", "batch"]


def test_sync_a_batch_and_a_single_key_load_share_the_load(make: Callable[[], sc.Cache]) -> None:
    cache = make()
    gate, calls, results = threading.Event(), [], {}

    def one() -> str:
        calls.append("one")
        gate.wait(30)
        return "single"

    def many(keys: list[str]) -> dict[str, str]:
        calls.append(f"many{keys}")
        return {k: "batch" for k in keys}

    single = threading.Thread(target=lambda: results.update(one=cache.sync.get_or_set("k", one)))
    single.start()
    wait_until(lambda: calls == ["one"], what="the single-key load")
    batch = threading.Thread(
        target=lambda: results.update(many=cache.sync.get_or_set_many(["k", "j"], many))
    )
    batch.start()
    wait_until(lambda: len(calls) == 2, what="the batch's own load")
    gate.set()
    single.join(30)
    batch.join(30)
    assert results == {"one": "single", "many": {"k": "single", "j": "batch"}}
    assert calls == ["one", "many['j']"]
    assert asyncio.run(_held(cache, "k")) == ["single", "single"]


def test_sync_a_single_key_load_joins_a_batch_in_flight(make: Callable[[], sc.Cache]) -> None:
    cache = make()
    gate, calls, results = threading.Event(), [], {}

    def many(keys: list[str]) -> dict[str, str]:
        calls.append("many")
        gate.wait(30)
        return {k: "batch" for k in keys}

    def one() -> str:
        calls.append("one")
        return "single"

    batch = threading.Thread(
        target=lambda: results.update(many=cache.sync.get_or_set_many(["k"], many))
    )
    batch.start()
    wait_until(lambda: calls == ["many"], what="the batch load")
    single = threading.Thread(target=lambda: results.update(one=cache.sync.get_or_set("k", one)))
    single.start()
    wait_until(lambda: _coalesced(cache) >= 1, what="the single-key load joining")
    gate.set()
    batch.join(30)
    single.join(30)
    assert results == {"many": {"k": "batch"}, "one": "batch"}
    assert calls == ["many"]
    assert asyncio.run(_held(cache, "k")) == ["batch", "batch"]


def test_sync_a_batch_takes_an_async_loader(make: Callable[[], sc.Cache]) -> None:
    """``cache.sync.get_or_set_many`` runs an async loader and stores its values, as
    ``cache.sync.get_or_set`` and the async ``get_or_set_many`` do."""
    cache = make()
    calls: list[list[str]] = []

    async def many(keys: list[str]) -> dict[str, str]:
        calls.append(keys)
        await asyncio.sleep(0)
        return {k: f"v-{k}" for k in keys if k != "left-out"}

    got = cache.sync.get_or_set_many(["k", "j", "left-out"], many)
    assert got == {"k": "v-k", "j": "v-j"}
    assert cache.sync.get_or_set_many(["k", "j"], many) == got
    assert calls == [["k", "j", "left-out"]]
    assert asyncio.run(_held(cache, "j")) == ["v-j", "v-j"]


def test_sync_a_batch_async_loader_error_reaches_the_caller(make: Callable[[], sc.Cache]) -> None:
    """An async loader's exception reaches the sync caller, and a later load of its keys runs."""
    cache = make()

    async def failing(keys: list[str]) -> dict[str, str]:
        raise LookupError("source down")

    with pytest.raises(LookupError, match="source down"):
        cache.sync.get_or_set_many(["k"], failing)
    assert cache.sync.get_or_set("k", lambda: "loaded") == "loaded"
