"""L1 hit ratio: MemoryTier's W-TinyLFU against LRU, LFU, theine and Belady's optimum.

Every candidate replays the same seeded traces (see ``traces``) at 1,000
entries: read the key, store it on a miss. Traces: Zipf(0.99) over 100,000
keys; the same with a 5,000-key one-off scan every 20,000 reads; a popularity
shift half way (the hit ratio of the 20,000 reads right after the shift is
shown too). Then the cost of a ``MemoryTier.get_sync`` hit with each policy,
interleaved repeats, medians.

Targets: W-TinyLFU >= theine's hit ratio on every trace, >= 0.9x Belady's on
Zipf, and a hit at most 1.5x the LRU policy's.

    python benchmarks/bench_admission.py [--reads 300000] [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import traces
from _common import empty_loop, print_table, run_interleaved, time_loop, verdict

from stratacache import Entry
from stratacache.tiers.memory import MemoryTier

CAPACITY = 1_000
AFTER_SHIFT = 20_000

Replay = Callable[[list[str]], bytearray]


def memory_tier(policy: str) -> Replay:
    def replay(trace: list[str]) -> bytearray:
        tier = MemoryTier(maxsize=CAPACITY, policy=policy)
        hits = bytearray(len(trace))
        for i, key in enumerate(trace):
            if tier.get_sync(key) is not None:
                hits[i] = 1
            else:
                tier.set_sync(key, Entry(1, 0.0))
        return hits

    return replay


def cachetools_cache(kind: str) -> Replay:
    def replay(trace: list[str]) -> bytearray:
        import cachetools

        cache = getattr(cachetools, kind)(CAPACITY)
        hits = bytearray(len(trace))
        for i, key in enumerate(trace):
            if cache.get(key) is not None:
                hits[i] = 1
            else:
                cache[key] = 1
        return hits

    return replay


def theine_cache(trace: list[str]) -> bytearray:
    from theine import Cache

    cache = Cache(CAPACITY)
    hits = bytearray(len(trace))
    for i, key in enumerate(trace):
        if cache.get(key)[1]:
            hits[i] = 1
        else:
            cache.set(key, 1)
    return hits


CANDIDATES: dict[str, Replay] = {
    "stratacache tinylfu": memory_tier("tinylfu"),
    "stratacache lru": memory_tier("lru"),
    "cachetools LRUCache": cachetools_cache("LRUCache"),
    "cachetools LFUCache": cachetools_cache("LFUCache"),
    "theine (W-TinyLFU)": theine_cache,
}


def hit_ratios(reads: int) -> bool:
    """Print every candidate's hit ratio on every trace; True if the targets are met."""
    shift_at = reads // 2
    workloads = {
        "zipf": traces.zipf(reads),
        "zipf + scans": traces.zipf_scans(reads),
        "popularity shift": traces.shift(reads),
    }
    ok = True
    for name, trace in workloads.items():
        print(f"\n{name}: {len(trace):,} reads, {CAPACITY:,} entries")
        ratios: dict[str, float] = {}
        after: dict[str, float] = {}
        for candidate, replay in CANDIDATES.items():
            hits = replay(trace)
            ratios[candidate] = sum(hits) / len(hits)
            after[candidate] = sum(hits[shift_at : shift_at + AFTER_SHIFT]) / AFTER_SHIFT
        ratios["Belady (offline optimum)"] = traces.belady(trace, CAPACITY) / len(trace)
        for candidate, ratio in ratios.items():
            extra = (
                f"   after the shift: {after[candidate]:6.1%}"
                if (name == "popularity shift" and candidate in after)
                else ""
            )
            print(f"  {candidate:<26} {ratio:6.1%}{extra}")
        ours = ratios["stratacache tinylfu"]
        theine = ratios["theine (W-TinyLFU)"]
        line = verdict("tinylfu / theine", ours / theine, 1.0, at_most=False)
        ok = ok and ours >= theine
        print(line)
        if name == "zipf":
            opt = ratios["Belady (offline optimum)"]
            print(verdict("tinylfu / Belady", ours / opt, 0.9, at_most=False))
            ok = ok and ours >= 0.9 * opt
    return ok


def hit_cost(repeats: int, rounds: int) -> bool:
    """Time ``get_sync`` hits on a full tier with each policy; True if within 1.5x LRU.

    Two read patterns: the 100 hottest keys (what a hit mostly is: a protected key moves to
    its segment's end) and a cycle over all 1,000 resident keys (worst case: every hit
    promotes a key from probation and demotes another). The target is judged on the first.
    """
    keys = [f"k{i}" for i in range(CAPACITY)]
    ok = True
    for label, reads in (("100 hot keys", keys[:100]), ("all 1,000 keys in a cycle", keys)):
        candidates = {}
        for policy in ("tinylfu", "lru"):
            tier = MemoryTier(maxsize=CAPACITY, policy=policy)
            for key in keys:
                tier.get_sync(key)
                tier.set_sync(key, Entry(1, 0.0))
            for key in reads:
                tier.get_sync(key)
            assert all(tier.peek(k) is not None for k in keys)
            n = rounds * CAPACITY // len(reads)
            candidates[f"MemoryTier({policy!r}) hit"] = lambda get=tier.get_sync, reads=reads, n=n: (
                time_loop(get, reads, n) - empty_loop(reads, n)
            )
        results = run_interleaved(candidates, repeats)
        ratios = print_table(
            f"MemoryTier.get_sync hit, {label}", results, subject="MemoryTier('tinylfu') hit"
        )
        ratio = ratios["MemoryTier('lru') hit"]
        print(verdict("tinylfu hit / lru hit", ratio, 1.5))
        if label == "100 hot keys":
            ok = ratio <= 1.5
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    ratios_ok = hit_ratios(args.reads)
    cost_ok = hit_cost(args.repeats, args.rounds)
    print("\nall targets met" if ratios_ok and cost_ok else "\nsome targets MISSED")


if __name__ == "__main__":
    main()
