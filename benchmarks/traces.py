"""Seeded access traces for hit-ratio benchmarks, and Belady's offline optimum.

Every trace is a list of string keys, the same for a given seed on every
machine (``random.Random``, no hash-seed dependence):

- ``zipf``: Zipf(``s``) over ``keys`` keys (rank r is read with weight ``1 / r**s``).
- ``zipf_scans``: the same, with a one-off scan of never-repeated keys every
  ``scan_every`` reads (a batch job walking a table).
- ``shift``: Zipf for the first half; then the popular set moves (ranks are
  reassigned to other keys) for the second half.

``belady`` is the optimal hit count with foresight (evict the key read again
farthest in the future; a key not read again before everything cached is not
admitted at all), the upper bound for any online policy.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import random


def zipf(
    n: int, keys: int = 100_000, s: float = 0.99, seed: int = 1, prefix: str = "k"
) -> list[str]:
    """``n`` reads drawn from Zipf(``s``) over ``keys`` keys, most popular first."""
    rng = random.Random(seed)
    cdf = list(itertools.accumulate(1.0 / (r**s) for r in range(1, keys + 1)))
    total = cdf[-1]
    ranks = [bisect.bisect_left(cdf, rng.random() * total) for _ in range(n)]
    order = list(range(keys))
    rng.shuffle(order)  # which key holds which rank
    return [f"{prefix}{order[r]}" for r in ranks]


def zipf_scans(
    n: int,
    keys: int = 100_000,
    s: float = 0.99,
    seed: int = 1,
    scan_every: int = 20_000,
    scan_length: int = 5_000,
) -> list[str]:
    """Zipf reads interrupted every ``scan_every`` reads by ``scan_length`` new, never-read keys."""
    base = zipf(n, keys, s, seed)
    out: list[str] = []
    for scan, i in enumerate(range(0, n, scan_every)):
        out.extend(base[i : i + scan_every])
        out.extend(f"scan{scan}-{j}" for j in range(scan_length))
    return out


def shift(n: int, keys: int = 100_000, s: float = 0.99, seed: int = 1) -> list[str]:
    """Zipf reads whose popular keys change completely half way through."""
    return zipf(n // 2, keys, s, seed, "a") + zipf(n - n // 2, keys, s, seed + 1, "b")


def belady(trace: list[str], capacity: int) -> int:
    """Hits of the offline optimum with ``capacity`` entries (evict the farthest next use)."""
    never = len(trace)
    next_use = [never] * len(trace)
    seen: dict[str, int] = {}
    for i in range(len(trace) - 1, -1, -1):
        next_use[i] = seen.get(trace[i], never)
        seen[trace[i]] = i
    cached: dict[str, int] = {}  # key -> its next use
    heap: list[tuple[int, str]] = []  # (-next use, key), stale rows skipped lazily
    hits = 0
    for i, key in enumerate(trace):
        nxt = next_use[i]
        if key in cached:
            hits += 1
        elif nxt == never:
            continue
        elif len(cached) >= capacity:
            while True:
                far, victim = heap[0]
                if cached.get(victim) == -far:
                    break
                heapq.heappop(heap)
            if -far <= nxt:  # the new key is needed later than anything cached: do not admit
                continue
            heapq.heappop(heap)
            del cached[victim]
        if nxt == never:
            cached.pop(key, None)  # never read again: holding it helps nobody
            continue
        cached[key] = nxt
        heapq.heappush(heap, (-nxt, key))
    return hits
