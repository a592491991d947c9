"""Bounded Redis growth: tag versions, lease markers and the epoch expire, safely.

A tag version outlives every entry that recorded it (writes stretch its TTL to
the entry's), an invalidated one is kept for the marker time, and a missing
one never matches a recorded version, so an expired version cannot make an old
entry fresh again.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from stratacache.core.clock import SystemClock
from stratacache.core.entry import Entry
from stratacache.core.tier import TierContext
from stratacache.tiers import _redis_scripts as rs
from stratacache.tiers.redis import RedisTier

from ..waiting import wait_until

NS = "grow"


@pytest.fixture
def server(redis_factory: Any) -> Iterator[Any]:
    """A private redis-server, so that DBSIZE counts only this test's keys."""
    proc = redis_factory()
    yield proc
    proc.stop()


@pytest.fixture
def raw(server: Any) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url)
    yield client
    client.close()


@pytest.fixture
async def tier(server: Any) -> AsyncIterator[RedisTier]:
    t = RedisTier(server.url)
    await t.start(TierContext(NS, clock=SystemClock()))
    yield t
    await t.close()


def _entry(value: Any, life: float, tags: tuple[str, ...] = ()) -> Entry:
    now = time.time()
    return Entry(value, now, expires=now + life, tags=tags)


def test_key_count_stays_flat_under_a_churn_of_unique_tags(
    tier: RedisTier, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rounds of entries with per-user tags, half of them invalidated: DBSIZE does not grow."""
    monkeypatch.setattr(rs, "MARKER_TTL_MS", 300)  # invalidation markers kept 0.3 s
    sizes = []
    for round_no in range(6):
        for i in range(100):
            user = f"user:{round_no}:{i}"
            key = f"{NS}:{user}"
            tier.set_sync(key, _entry(i, 0.2, (user,)), tier.lease_sync(key, (user,)))
        tier.invalidate_tags_sync([f"user:{round_no}:{i}" for i in range(0, 100, 2)])
        tier.delete_prefix_sync(f"{NS}:nothing:")  # bumps the epoch (namespace metadata)
        wait_until(lambda: raw.dbsize() <= 1, timeout=10, what="entries and versions expired")
        sizes.append(raw.dbsize())
    assert max(sizes) <= 1, sizes  # at most the epoch, itself expiring after the marker time


def test_tag_version_outlives_every_entry_that_recorded_it(
    tier: RedisTier, raw: redis.Redis
) -> None:
    """Writes stretch the tag version's TTL to the longest entry; no-TTL entries pin it."""
    tier.set_sync(f"{NS}:short", _entry(1, 5, ("t",)))
    tier.set_sync(f"{NS}:long", _entry(2, 50, ("t",)))
    tier.set_sync(f"{NS}:shorter", _entry(3, 1, ("t",)))
    tag_key = rs.KeyNames(NS, False).tag("t")
    assert int(raw.pttl(tag_key)) >= int(raw.pttl(f"{NS}:long")) - 5  # type: ignore[arg-type]
    tier.set_sync(f"{NS}:forever", Entry(4, time.time(), tags=("t",)))
    assert int(raw.pttl(tag_key)) == -1  # type: ignore[arg-type]


@pytest.mark.parametrize("life", [0.2, 0.5])
def test_an_expired_tag_version_never_revives_an_invalidated_entry(
    tier: RedisTier, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch, life: float
) -> None:
    """Entry invalidated by tag; once the version expires and is recreated, still no old value."""
    monkeypatch.setattr(rs, "MARKER_TTL_MS", 100)
    key = f"{NS}:k"
    tier.set_sync(key, _entry("old", life, ("t",)))
    tier.invalidate_tags_sync(["t"])
    assert tier.get_sync(key) is None
    tag_key = rs.KeyNames(NS, False).tag("t")
    assert int(raw.pttl(tag_key)) >= int(raw.pttl(key) or 0) - 5  # type: ignore[arg-type]
    wait_until(lambda: raw.exists(tag_key) == 0, timeout=10, what="tag version expired")
    tier.set_sync(f"{NS}:other", _entry("new", 10, ("t",)))  # recreates the version at 1
    assert tier.get_sync(key) is None
    assert tier.get_sync(f"{NS}:other") is not None


def test_missing_tag_version_is_a_miss(tier: RedisTier, raw: redis.Redis) -> None:
    """An entry whose tag version vanished is a miss, never fresh (recorded != missing)."""
    key = f"{NS}:k"
    tier.set_sync(key, _entry("v", 10, ("t",)))
    assert tier.get_sync(key) is not None
    raw.delete(rs.KeyNames(NS, False).tag("t"))
    assert tier.get_sync(key) is None
    assert tier.get_many_sync([key]) == {}


def test_lease_on_a_missing_version_is_voided_by_an_invalidation_not_by_a_write(
    tier: RedisTier,
) -> None:
    """A load that began with the tag unseen: another write keeps its set, an invalidation voids it."""
    lease = tier.lease_sync(f"{NS}:a", ("t",))
    tier.set_sync(f"{NS}:b", _entry("b", 10, ("t",)))  # creates the version at 1
    assert tier.set_sync(f"{NS}:a", _entry("a", 10, ("t",)), lease) is True
    lease = tier.lease_sync(f"{NS}:c", ("u",))
    tier.invalidate_tags_sync(["u"])  # creates the version at 2
    assert tier.set_sync(f"{NS}:c", _entry("c", 10, ("u",)), lease) is False
    assert tier.get_sync(f"{NS}:c") is None


def test_epoch_and_lease_markers_expire(tier: RedisTier, raw: redis.Redis) -> None:
    """The namespace epoch and the per-key lease markers carry a TTL."""
    tier.set_sync(f"{NS}:k", _entry("v", 10))  # an overwrite: bumps the key's lease marker
    tier.delete_many_sync([f"{NS}:k"])
    tier.clear_sync()
    meta = [k for k in raw.scan_iter(match="{sc:*")]
    assert meta and all(int(raw.pttl(k)) > 0 for k in meta), meta  # type: ignore[arg-type]
