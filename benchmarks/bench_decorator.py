"""Decorated-function L1 hit: stratacache against lru_cache, cachetools and cachebox, with its anatomy.

Every call is a hit on one of 128 warm keys of a one-argument sync function.
stratacache runs as in production: a TTL on every entry, hit counting on, and
invalidation reaching the memo. Target: within 4x ``functools.lru_cache``
(which has no TTL, no counting and no invalidation).

Beside the caches, two floors explain what a pure-Python hit can cost on this
machine: ``floor: python wrapper`` is a ``def wrapper(*args, **kwargs)`` doing
only a dict lookup (the price of any Python-level decorator), and ``floor:
clock read`` is one ``time.time()`` call (the price of any TTL check). Their
sum, against ``lru_cache``, is the best ratio a pure-Python decorator with a
TTL can reach here.

Numbers are ns per call with the bare loop's cost subtracted, medians of
interleaved repeats (see ``_common``). The verdict uses the median of the
per-repeat ratios (both candidates measured back to back in the same repeat),
which a machine whose load drifts during the run disturbs least.

    python benchmarks/bench_decorator.py [--repeats 41] [--rounds 200]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import empty_loop, print_table, run_interleaved, time_loop, verdict

import stratacache as sc

KEYS = list(range(128))
TTL = 600
TARGET = 4.0


def compute(x: int) -> int:
    return x * 2


def floors() -> dict[str, Callable[[Any], Any]]:
    """The two irreducible parts of a pure-Python TTL hit, measured alone."""
    table = {(k,): k * 2 for k in KEYS}
    get = table.get
    clock = time.time

    def python_wrapper(*args: Any, **kwargs: Any) -> Any:
        return get(args)

    def clock_read(_: Any) -> float:
        return clock()

    return {"floor: python wrapper": python_wrapper, "floor: clock read": clock_read}


def candidates() -> dict[str, Callable[[Any], Any]]:
    """Each library's decorator around ``compute``, as documented for an in-memory cache."""
    import cachebox
    import cachetools

    default = sc.Cache(tiers=[sc.MemoryTier(maxsize=10_000)], bus=False)
    lru = sc.Cache(tiers=[sc.MemoryTier(maxsize=10_000, policy="lru")], bus=False)
    return {
        "stratacache": default.cached(ttl=TTL)(compute),
        "stratacache policy=lru": lru.cached(ttl=TTL)(compute),
        "functools.lru_cache": functools.lru_cache(maxsize=10_000)(compute),
        "cachetools LRUCache": cachetools.cached(cachetools.LRUCache(10_000))(compute),
        "cachetools TTLCache": cachetools.cached(cachetools.TTLCache(10_000, ttl=TTL))(compute),
        "cachebox LRUCache": cachebox.cached(cachebox.LRUCache(10_000))(compute),
        "cachebox TTLCache": cachebox.cached(cachebox.TTLCache(10_000, TTL))(compute),
        **floors(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--rounds", type=int, default=200, help="passes over the keys per sample")
    args = parser.parse_args()
    fns = candidates()
    for fn in fns.values():  # warm every cache: every timed call is a hit
        for k in KEYS:
            fn(k)
    overhead = min(empty_loop(KEYS, args.rounds) for _ in range(5))
    samples = {
        name: (lambda fn=fn: time_loop(fn, KEYS, args.rounds) - overhead)
        for name, fn in fns.items()
    }
    results = run_interleaved(samples, args.repeats)
    ratios = print_table(
        "Sync decorated-function L1 hit", results, subject="stratacache", unit="ns per hit"
    )
    del ratios
    lru = results["functools.lru_cache"].samples
    paired = statistics.median(
        s / b for s, b in zip(results["stratacache"].samples, lru, strict=True)
    )
    floor = statistics.median(
        (w + c) / b
        for w, c, b in zip(
            results["floor: python wrapper"].samples,
            results["floor: clock read"].samples,
            lru,
            strict=True,
        )
    )
    print("\nTargets (medians of per-repeat ratios)")
    print(verdict("stratacache vs functools.lru_cache", paired, TARGET))
    print(f"  pure-Python floor (wrapper + clock) vs functools.lru_cache: {floor:.2f}x")


if __name__ == "__main__":
    main()
