"""Batches of any size: chunked, each chunk pipelined with its own budget, failures counted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from stratacache.core.clock import ManualClock
from stratacache.core.entry import Entry
from stratacache.core.errors import TierError
from stratacache.core.tier import TierContext
from stratacache.tiers import _redis_batch as rb
from stratacache.tiers.redis import RedisTier

NS = "shop"  # as the shared ``tier`` fixture (tests/tiers/conftest.py)
VALUE = "x" * 1024


def test_chunks_respect_entry_and_byte_bounds() -> None:
    """Chunks cover every item once, in order, within both bounds (a huge item goes alone)."""
    sizes = [10] * 1000 + [rb.CHUNK_BYTES * 2] + [rb.CHUNK_BYTES // 3] * 7
    parts = list(rb.chunks(sizes))
    assert [i for p in parts for i in p] == list(range(len(sizes)))
    for part in parts:
        assert len(part) <= rb.CHUNK_ENTRIES
        assert len(part) == 1 or sum(sizes[i] for i in part) <= rb.CHUNK_BYTES


async def test_set_many_of_10000_entries_is_stored_in_full(
    tier: RedisTier, raw: redis.Redis, clock: ManualClock
) -> None:
    """10,000 entries of 1 KB, untagged and tagged, are all stored and read back."""
    plain = {
        f"shop:p{i}": Entry(VALUE, clock.time(), expires=clock.time() + 600) for i in range(5000)
    }
    tagged = {
        f"shop:t{i}": Entry(VALUE, clock.time(), tags=(f"user:{i % 50}",)) for i in range(5000)
    }
    await tier.set_many({**plain, **tagged})
    assert raw.dbsize() >= 10_000
    got = await tier.get_many([*plain, *tagged])
    assert len(got) == 10_000 and all(e.value == VALUE for e in got.values())
    assert tier.dropped_writes == 0
    await tier.invalidate_tags(["user:7"])
    assert len(await tier.get_many(list(tagged))) == 5000 - 100


def test_sync_set_many_and_delete_many_of_10000_entries(
    tier: RedisTier, raw: redis.Redis, clock: ManualClock
) -> None:
    """The blocking API stores and deletes 10,000 entries in full too."""
    entries = {f"shop:s{i}": Entry(i, clock.time()) for i in range(10_000)}
    tier.set_many_sync(entries)
    assert len(tier.get_many_sync(list(entries))) == 10_000
    assert tier.delete_many_sync(list(entries)) == 10_000
    assert tier.get_many_sync(list(entries)) == {}


async def test_a_failing_chunk_is_reported_not_dropped_silently(
    redis_factory: Callable[..., Any], clock: ManualClock
) -> None:
    """When the server refuses part of a batch, set_many raises and counts what it dropped."""
    server = redis_factory("--maxmemory", "4mb", "--maxmemory-policy", "noeviction")
    tier = RedisTier(server.url)
    await tier.start(TierContext(NS, clock=clock))
    entries = {f"shop:m{i}": Entry(VALUE, clock.time()) for i in range(10_000)}
    with pytest.raises(TierError):
        await tier.set_many(entries)
    client = redis.Redis.from_url(server.url)
    stored = sum(1 for _ in client.scan_iter(match="shop:m*", count=1000))
    client.close()
    assert 0 < stored < 10_000
    assert tier.dropped_writes >= 10_000 - stored  # at least every entry not stored is counted
    await tier.close()
