"""The typed sentinels: ``MISS`` (nothing cached) and ``UNSET`` (argument not given)."""

from __future__ import annotations

import copy
import pickle

import stratacache as sc
from stratacache.core.sentinel import MISS, UNSET, Miss, Unset


def test_miss_is_falsy_and_distinct_from_none() -> None:
    """``MISS`` is falsy like ``None`` but never equal to it, so a cached ``None`` stays a value."""
    assert not MISS
    assert MISS is not None and MISS != None  # noqa: E711 - the point of the test
    assert repr(MISS) == "MISS"


def test_unset_is_distinct_from_none() -> None:
    """``UNSET`` (use the default) is not ``None`` (which means "no expiry" for a ttl)."""
    assert UNSET is not None and repr(UNSET) == "UNSET"


def test_sentinels_survive_copy_and_pickle() -> None:
    """Copies and pickles of a sentinel are the sentinel itself (identity checks keep working)."""
    for sentinel in (MISS, UNSET):
        assert copy.deepcopy(sentinel) is sentinel
        assert pickle.loads(pickle.dumps(sentinel)) is sentinel


def test_sentinels_are_exported_with_their_types() -> None:
    """``sc.MISS``/``sc.UNSET`` are instances of ``sc.Miss``/``sc.Unset``."""
    assert isinstance(sc.MISS, Miss) and isinstance(sc.UNSET, Unset)
    assert sc.Miss is Miss and sc.Unset is Unset


async def test_an_explicit_unset_ttl_means_the_default() -> None:
    """Passing ``ttl=UNSET`` is the same as not passing ``ttl``: the cache's default applies."""
    clock = sc.ManualClock()
    cache = sc.Cache(tiers=[sc.MemoryTier()], bus=False, default_ttl=10, clock=clock)
    async with cache:
        await cache.set("k", 1, ttl=sc.UNSET)
        entry = await cache.get_entry("k")
    assert entry is not None and entry.expires == clock.time() + 10
