"""Sync stack: the tier stack driven with blocking calls, in the caller's thread."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import stratacache as sc
from stratacache.engine.sync_stack import SyncStack


class Shared(sc.MemoryTier):
    """An in-process tier the stack treats as shared."""

    shared = True  # type: ignore[assignment]


class Broken(Shared):
    """A shared tier whose every read fails."""

    def get_sync(self, key: str, tags: Any = None) -> sc.Entry | None:
        raise ConnectionError("down")


@pytest.fixture
def cache() -> Iterator[sc.Cache]:
    c = sc.Cache([sc.MemoryTier(), Shared(name="l2")], namespace="ss", bus=False)
    yield c
    c.sync.close()


def test_a_miss_leaves_its_leases_for_the_load(cache: sc.Cache) -> None:
    """Reading past L1 leases it; the lease is handed back in ``held``."""
    io: SyncStack = cache.sync.io
    held: dict[int, object | None] = {}
    assert io.read(cache.full_key("k"), cache.clock.time(), held=held) is None
    assert list(held) == [0]


def test_a_lower_hit_is_backfilled_above(cache: sc.Cache) -> None:
    """An entry found in L2 is copied into L1 on the way up."""
    io = cache.sync.io
    fkey = cache.full_key("k")
    now = cache.clock.time()
    entry = sc.Entry("v", created=now, expires=now + 60)
    cache.tiers.slots[1].tier.set_sync(fkey, entry)  # type: ignore[attr-defined]
    assert io.read(fkey, now) is not None
    assert cache.tiers.slots[0].tier.get_sync(fkey) is not None  # type: ignore[attr-defined]
    assert cache.tiers.slots[1].stats.hits == 1 and cache.tiers.slots[0].stats.misses == 1


def test_a_failing_tier_is_counted_and_skipped() -> None:
    """A tier error never reaches the caller: it is counted and the read goes on."""
    cache = sc.Cache([sc.MemoryTier(), Broken(name="l2")], namespace="ss", bus=False)
    try:
        assert cache.sync.io.read(cache.full_key("k"), cache.clock.time()) is None
        assert cache.tiers.slots[1].stats.errors == 1
    finally:
        cache.sync.close()


def test_writes_are_bottom_up_and_counted(cache: sc.Cache) -> None:
    """A blocking write stores in every tier and counts a set per tier."""
    now = cache.clock.time()
    entry = sc.Entry("v", created=now, expires=now + 60)
    assert cache.sync.io.write(cache.full_key("k"), entry, None, now, overwrite=True)
    assert [s.stats.sets for s in cache.tiers.slots] == [1, 1]
