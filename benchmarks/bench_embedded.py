"""The embedded default end to end: does memory + SQLite make an application faster?

The workload of ``stratacache demo``: 16 asyncio workers read product ids drawn
Zipf(1.1) over 10,000 ids from one seeded stream; the source awaits 5 ms, then
reads the row from SQLite. Contenders, interleaved round by round (each keeps
its cache across rounds, so round 1 is the cold start and later rounds the
steady state; every contender sees the same id stream in a round):

- *no cache*: the source itself;
- *stratacache*: ``@cache.cached`` on ``MemoryTier(maxsize=1000)`` + ``SQLTier(sqlite)``;
- *naive*: what a user writes in ten lines: a ``cachetools.LRUCache(1000)`` in
  front of ``diskcache.Cache``, no single-flight, tags, leases or coherence;
- *stratacache memory-only* and *cachetools dict*: the L1 alone against a plain
  ``LRUCache`` (``--no-l1-pair`` leaves them out);
- *stratacache, in-process L2*: the same engine path with the SQL tier swapped
  for an in-process store (a diagnostic, not a contender): the difference to
  *stratacache* is what the SQL tier costs.

Targets: stratacache >= 8x the no-cache throughput and >= 0.5x the naive stack.

    python benchmarks/bench_embedded.py [--rounds 5] [--requests 30000] [--seconds 2] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cachetools
import diskcache
from _common import verdict

import stratacache as sc
from stratacache.demo.workload import PathStats, Run, SlowSource, drive, timed, zipf_sampler
from stratacache.tiers.memory import MemoryTier

KEYS = 10_000
ZIPF = 1.1
WORKERS = 16
DELAY = 0.005
L1_SIZE = 1_000
TTL = 300.0

Get = Callable[[int], Awaitable[Any]]


@dataclass
class Contender:
    """One way of answering requests, with its rounds."""

    name: str
    get: Get
    close: Callable[[], Awaitable[None]]
    source: SlowSource
    runs: list[Run] = field(default_factory=list)
    latencies: list[PathStats] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # process CPU seconds per request, per round
    stateless: bool = False  # keeps nothing between requests: time-limited rounds suffice

    def rate(self, warm: bool = True) -> float:
        """Median requests/s over the rounds after the first (all rounds when only one)."""
        runs = self.runs[1:] if warm and len(self.runs) > 1 else self.runs
        return statistics.median(r.rate for r in runs)


class SharedMemoryTier(MemoryTier):
    """An in-process store the engine treats as a shared tier: the SQL tier at zero cost."""

    shared = True  # type: ignore[assignment]


async def no_cache(source: SlowSource, _: str) -> tuple[Get, Callable[[], Awaitable[None]]]:
    async def close() -> None:
        return None

    return source.product, close


async def stratacache_stack(
    source: SlowSource, workdir: str, lower: str = "sql"
) -> tuple[Get, Callable[[], Awaitable[None]]]:
    tiers: list[Any] = [MemoryTier(maxsize=L1_SIZE)]
    if lower == "sql":
        tiers.append(sc.SQLTier(url=f"sqlite:///{os.path.join(workdir, 'strata.db')}"))
    elif lower == "memory":
        tiers.append(SharedMemoryTier(maxsize=10 * KEYS, name="l2"))
    cache = sc.Cache(tiers, namespace="bench", default_ttl=TTL)
    await cache.start()
    return cache.cached(key="product:{product_id}")(source.product), cache.close


async def naive_stack(
    source: SlowSource, workdir: str
) -> tuple[Get, Callable[[], Awaitable[None]]]:
    # what a user would write: an LRU in front of diskcache, no single-flight
    l1: cachetools.LRUCache[int, Any] = cachetools.LRUCache(L1_SIZE)
    l2 = diskcache.Cache(os.path.join(workdir, "naive"))

    async def get(product_id: int) -> Any:
        value = l1.get(product_id)
        if value is None:
            key = f"product:{product_id}"
            value = l2.get(key)
            if value is None:
                value = await source.product(product_id)
                l2.set(key, value, expire=TTL)
            l1[product_id] = value
        return value

    async def close() -> None:
        l2.close()

    return get, close


async def cachetools_dict(source: SlowSource, _: str) -> tuple[Get, Callable[[], Awaitable[None]]]:
    l1: cachetools.LRUCache[int, Any] = cachetools.LRUCache(L1_SIZE)

    async def get(product_id: int) -> Any:
        value = l1.get(product_id)
        if value is None:
            value = l1[product_id] = await source.product(product_id)
        return value

    async def close() -> None:
        return None

    return get, close


async def build(args: argparse.Namespace, workdir: str) -> list[Contender]:
    makers: list[tuple[str, Callable[[SlowSource, str], Awaitable[Any]]]] = [
        ("no cache", no_cache),
        ("stratacache memory+sqlite", stratacache_stack),
        ("naive LRU+diskcache", naive_stack),
    ]
    if not args.no_l1_pair:
        makers += [
            ("stratacache memory-only", lambda s, w: stratacache_stack(s, w, "none")),
            ("cachetools LRU dict", cachetools_dict),
        ]
    if not args.no_diagnostic:
        makers.append(
            ("(stratacache, in-process L2)", lambda s, w: stratacache_stack(s, w, "memory"))
        )
    contenders = []
    for index, (name, make) in enumerate(makers):
        folder = os.path.join(workdir, str(index))
        os.makedirs(folder)
        source = SlowSource(os.path.join(folder, "source.db"), KEYS, DELAY)
        get, close = await make(source, folder)
        contenders.append(Contender(name, get, close, source, stateless=make is no_cache))
    return contenders


async def one_round(contender: Contender, seed: int, args: argparse.Namespace) -> None:
    stats = PathStats()
    sample = zipf_sampler(KEYS, ZIPF, random.Random(seed))
    budget = args.requests if args.requests and not contender.stateless else None
    # a budgeted round stops at its budget; the time limit only guards against a stall
    seconds = args.seconds if budget is None else max(60.0, 10 * args.seconds)
    gc.collect()
    cpu = time.process_time()
    run = await drive(
        timed(contender.get, stats), sample, concurrency=WORKERS, seconds=seconds, requests=budget
    )
    if budget is not None and run.requests < budget:
        print(f"  {contender.name}: only {run.requests} of {budget} requests", file=sys.stderr)
    contender.cpu.append((time.process_time() - cpu) / max(run.requests, 1))
    contender.runs.append(run)
    contender.latencies.append(stats)


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-embedded-") as workdir:
        contenders = await build(args, workdir)
        try:
            for r in range(args.rounds):
                order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
                for contender in order:
                    await one_round(contender, args.seed + r, args)
                print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr)
            if args.profile:
                await profile(contenders[1], args)
        finally:
            for contender in contenders:
                await contender.close()
                contender.source.close()
    return report(contenders, args)


async def profile(contender: Contender, args: argparse.Namespace) -> None:
    """One more round of ``contender`` under cProfile (main thread only), top 25 by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    await one_round(contender, args.seed + 99, args)
    profiler.disable()
    contender.runs.pop()
    contender.latencies.pop()
    contender.cpu.pop()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def cpu_per_request(c: Contender) -> float:
    """Median process CPU seconds per request over the warm rounds (all when only one)."""
    return statistics.median(c.cpu[1:] if len(c.cpu) > 1 else c.cpu)


def report(contenders: list[Contender], args: argparse.Namespace) -> int:
    by_name = {c.name: c for c in contenders}
    subject = by_name["stratacache memory+sqlite"]
    work = f"the same {args.requests:,} requests" if args.requests else f"{args.seconds:g} s"
    print(
        f"\nbench_embedded: {WORKERS} workers, Zipf({ZIPF}) over {KEYS:,} ids, source "
        f"{DELAY * 1e3:g} ms + SQLite, L1 {L1_SIZE:,}; {args.rounds} rounds, interleaved, "
        f"{work} per cached contender per round ({args.seconds:g} s for no cache);\n"
        "  medians of the warm rounds (2..n), round 1 = cold start;\n"
        "  cpu us/req: this process's CPU time per request (steadier than req/s on a busy machine;\n"
        "  the SQL tier's own threads count in it)"
    )
    print(
        f"  {'contender':<30} {'req/s warm':>11} {'req/s cold':>11} {'p50 us':>9} {'p99 us':>9}"
        f" {'cpu us/req':>11} {'stratacache / this':>19}"
    )
    for c in contenders:
        warm = c.latencies[1:] if len(c.latencies) > 1 else c.latencies
        p50 = statistics.median(s.percentile(0.50) for s in warm)
        p99 = statistics.median(s.percentile(0.99) for s in warm)
        cpu = cpu_per_request(c) * 1e6
        print(
            f"  {c.name:<30} {c.rate():>11,.0f} {c.runs[0].rate:>11,.0f} {p50:>9,.0f} {p99:>9,.0f}"
            f" {cpu:>11,.1f} {subject.rate() / c.rate():>18.2f}x"
        )
    vs_none = subject.rate() / by_name["no cache"].rate()
    vs_naive = subject.rate() / by_name["naive LRU+diskcache"].rate()
    print(verdict("stratacache / no cache (throughput)", vs_none, 8.0, at_most=False))
    print(verdict("stratacache / naive LRU+diskcache (throughput)", vs_naive, 0.5, at_most=False))
    by_cpu = cpu_per_request(by_name["naive LRU+diskcache"]) / cpu_per_request(subject)
    print(
        f"  stratacache / naive LRU+diskcache by CPU per request (its CPU / ours): {by_cpu:.2f}x"
        " (no target; steadier than throughput on a busy machine)"
    )
    if "stratacache memory-only" in by_name:
        pair = by_name["stratacache memory-only"].rate() / by_name["cachetools LRU dict"].rate()
        print(f"  stratacache memory-only / cachetools dict: {pair:.2f}x (no target)")
    diag = by_name.get("(stratacache, in-process L2)")
    if diag is not None:
        share = 1.0 - subject.rate() / diag.rate()
        print(
            f"  share of stratacache's time per request spent in the SQL tier: {share:.0%} "
            "(1 - its rate / the in-process-L2 rate)"
        )
        naive = by_name["naive LRU+diskcache"].rate()
        print(
            f"  stratacache with a zero-cost L2 / naive LRU+diskcache: {diag.rate() / naive:.2f}x "
            "(what the engine alone would reach)"
        )
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--requests",
        type=int,
        default=30_000,
        help="requests per cached contender per round (0: run each for --seconds instead)",
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="no cache's round length")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="cProfile one stratacache round")
    parser.add_argument("--no-l1-pair", action="store_true", help="skip the memory-only pair")
    parser.add_argument("--no-diagnostic", action="store_true", help="skip the in-process L2 run")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
