"""Freshness policy: the one decision both clients make about a found entry."""

from __future__ import annotations

import stratacache as sc
from stratacache.engine.policy import EntryPolicy, Freshness, classify


def test_classify_by_deadlines() -> None:
    """Fresh before the soft TTL, stale after it, expired after the hard TTL."""
    entry = sc.Entry("v", created=0.0, expires=100.0, refresh_after=50.0)
    assert classify(entry, 10.0, beta=0) is Freshness.FRESH
    assert classify(entry, 60.0, beta=0) is Freshness.STALE
    assert classify(entry, 100.0, beta=0) is Freshness.EXPIRED


def test_classify_xfetch_uses_the_draw() -> None:
    """With a cost, a small draw recomputes early; a draw of 1 never does."""
    entry = sc.Entry("v", created=0.0, expires=100.0, cost=5.0)
    assert classify(entry, 90.0, beta=1.0, rand=0.01) is Freshness.EARLY  # 5 * 4.6 >= 10
    assert classify(entry, 90.0, beta=1.0, rand=1.0) is Freshness.FRESH


def test_stores_honours_cache_none_and_store_if() -> None:
    """``cache_none=False`` and a ``store_if`` predicate keep values out of the tiers."""
    assert not EntryPolicy(60.0, cache_none=False).stores(None)
    assert EntryPolicy(60.0).stores(None)
    assert not EntryPolicy(60.0, store_if=lambda v: v > 1).stores(1)
