"""Hot keys: count-min sketch, top-k in fixed memory, decay, refresh-ahead, publication."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest
import redis
from tests.waiting import poll

import stratacache as sc
from stratacache.fleet.hotkeys import CountMinSketch, HotKeys, TopK


def test_sketch_never_underestimates() -> None:
    """Every estimate is at least the key's true count."""
    rng = random.Random(7)
    sketch = CountMinSketch(width=256, depth=4)
    truth: Counter[str] = Counter()
    for _ in range(20_000):
        key = f"k{int(rng.paretovariate(1.2))}"
        truth[key] += 1
        sketch.add(key)
    assert all(sketch.estimate(k) >= n for k, n in truth.items())


def test_topk_finds_the_heavy_hitters_in_fixed_memory() -> None:
    """Among 50k distinct keys, the 10 hottest are tracked, in at most k slots."""
    rng = random.Random(3)
    hot = HotKeys(k=32, width=1024)
    heavy = [f"heavy{i}" for i in range(10)]
    for i in range(50_000):
        hot.record(f"cold{i}")
        if i % 5 == 0:
            hot.record(rng.choice(heavy))
    tracked = {key for key, _ in hot.top(10)}
    assert tracked == set(heavy)
    assert len(hot.topk.counts) <= 32 and len(hot.sketch.rows[0]) == 1024


_SKETCH_RUN = """
import json, random
from stratacache.fleet.hotkeys import HotKeys
rng = random.Random(3)
hot = HotKeys(k=16, width=256, depth=4)
for i in range(5_000):
    hot.record(f"cold{i}")
    if i % 4 == 0:
        hot.record(f"heavy{rng.randrange(8)}")
keys = ["a", "heavy0", "cold7", "\u00e9t\u00e9", "x" * 300]
print(json.dumps({"top": hot.top(), "slots": [hot.sketch._slots(k) for k in keys]}))
"""


@pytest.mark.parametrize("seeds", [("0", "44"), ("48", "random"), ("62", "77")])
def test_sketch_is_the_same_under_any_hash_seed(seeds: tuple[str, str]) -> None:
    """Two processes with different PYTHONHASHSEED place keys and rank the top-k alike."""
    runs = []
    for seed in seeds:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", _SKETCH_RUN],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        runs.append(json.loads(done.stdout))
    assert runs[0] == runs[1]
    assert {key for key, _ in runs[0]["top"][:8]} == {f"heavy{i}" for i in range(8)}


def test_decay_halves_counts() -> None:
    """Every decay_every records, counts are halved so old popularity fades."""
    hot = HotKeys(k=4, decay_every=100)
    for _ in range(99):
        hot.record("a")
    assert hot.sketch.estimate("a") == 99
    hot.record("a")
    assert hot.sketch.estimate("a") == 50 and hot.topk.counts["a"] == 50


def test_topk_evicts_the_coldest_for_a_hotter_key() -> None:
    """A full top-k admits a key hotter than its floor and returns the evicted one."""
    top = TopK(2)
    top.offer("a", 5)
    top.offer("b", 3)
    assert top.offer("c", 2) is None and "c" not in top.counts
    assert top.offer("d", 4) == "b" and set(top.counts) == {"a", "d"}


def test_recipes_are_kept_only_for_tracked_keys() -> None:
    """Loaders are remembered only for keys in the top-k (bounded memory)."""
    hot = HotKeys(k=2)
    for key in ("a", "a", "a", "b", "b", "c"):
        hot.record(key, (lambda: 1, None, (), None, None))
    assert set(hot.recipes) <= set(hot.topk.counts) and len(hot.recipes) <= 2


@pytest.fixture
async def cache(redis_url: str) -> AsyncIterator[sc.Cache]:
    clock = sc.ManualClock()
    c = sc.Cache(
        tiers=[sc.MemoryTier(), sc.RedisTier(redis_url)],
        namespace="hk" + uuid.uuid4().hex[:8],
        clock=clock,
    )
    async with c:
        yield c


async def test_refresh_ahead_reloads_hot_keys_near_expiry(cache: sc.Cache) -> None:
    """A tick refreshes the hot key whose TTL is within the horizon, not the one far from it."""
    hot = HotKeys(k=8, interval=3600, horizon=5).attach(cache)
    calls: Counter[str] = Counter()

    def loader(name: str) -> Callable[[], str]:
        def load() -> str:
            calls[name] += 1
            return f"{name}{calls[name]}"

        return load

    await cache.get_or_set("soon", loader("soon"), ttl=10)
    await cache.get_or_set("later", loader("later"), ttl=100)
    clock = cache.clock
    assert isinstance(clock, sc.ManualClock)
    clock.advance(6)  # "soon" has 4 s left (< horizon 5), "later" 94 s
    assert await hot.refresh_ahead() == 1
    await poll(lambda: calls["soon"] == 2, what="refresh-ahead")
    assert calls["later"] == 1 and cache.counters.hot_refreshes == 1
    rt = cache.readthrough
    await poll(
        lambda: cache.counters.loads == 3 and not rt._inflight and not rt._refreshing,
        what="the refreshed value stored",
    )
    assert await cache.get_or_set("soon", loader("soon"), ttl=10) == "soon2"


async def test_hot_set_is_published_to_redis(cache: sc.Cache, redis_url: str) -> None:
    """publish() writes the tracked keys with their counts to the namespace's sorted set."""
    hot = HotKeys(k=8, url=redis_url, interval=3600).attach(cache)
    for _ in range(3):
        await cache.get_or_set("a", lambda: 1)
    await cache.get_or_set("b", lambda: 2)
    assert await hot.publish() == 2
    client = redis.Redis.from_url(redis_url)
    ranked = client.zrevrange(hot.hot_key(cache.namespace), 0, -1, withscores=True)
    client.close()
    assert [k.decode() for k, _ in ranked] == [cache.full_key("a"), cache.full_key("b")]
    assert await hot.fleet_hot(cache.namespace) == [cache.full_key("a"), cache.full_key("b")]
