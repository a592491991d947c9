"""``SQLBus``: how late another process's invalidation reaches this process's memory tier,
and what the bus costs a write.

1. *Propagation lag*: one process invalidates keys of the embedded default
   (memory above SQL); 2 subscriber processes record, for each message, the time
   from when it was issued to when their memory tier had applied it (wall clock,
   one machine). p50/p99 per run, median and range over runs. Bound: one poll
   interval (0.1 s) plus a read on SQLite; a round trip on PostgreSQL (``NOTIFY``).
2. *Write cost*: ``cache.sync.set`` of the embedded default with the bus (the
   default) and without (``bus=False``), interleaved; the ratio is what the bus
   adds to a write (one appended row).

    python benchmarks/bench_sql_bus.py [--pg URL] [--runs 3] [--subscribers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import arun_interleaved, run_interleaved  # noqa: E402

import stratacache as sc  # noqa: E402
from stratacache import events  # noqa: E402


# -- 1. propagation lag ----------------------------------------------------------------------------
async def subscriber(url: str, namespace: str, expected: int) -> list[float]:
    """Apply bus messages to a memory tier; record issue→applied lag of each (seconds)."""
    lags: list[float] = []
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    cache = sc.Cache(tiers=[sc.MemoryTier(), sc.SQLTier(url)], namespace=namespace)

    def record(message: Any) -> None:
        lags.append(time.time() - message.at)  # the hook runs after L1 applied it
        if len(lags) >= expected:
            loop.call_soon_threadsafe(done.set)

    async with cache:
        events.audit(cache, record, remote=True)
        print("ready", flush=True)
        await asyncio.wait_for(done.wait(), 300)
    return lags


async def publish_run(url: str, namespace: str, count: int) -> None:
    async with sc.Cache(tiers=[sc.MemoryTier(), sc.SQLTier(url)], namespace=namespace) as c:
        for i in range(count):
            await c.invalidate(keys=[f"k{i % 100}"])
            await asyncio.sleep(0.005)  # paced: we measure lag, not queueing under overload


def bench_lag(url: str, runs: int, subscribers: int, count: int) -> list[tuple[float, float]]:
    """``(p50, p99)`` in ms per run."""
    result = []
    for _ in range(runs):
        namespace = "lag" + uuid.uuid4().hex[:8]
        tmp = Path(tempfile.mkdtemp())
        outs = [str(tmp / f"sub{i}.json") for i in range(subscribers)]
        args = [sys.executable, __file__, "--subscriber", url, namespace, str(count)]
        procs = [subprocess.Popen([*args, out], stdout=subprocess.PIPE, text=True) for out in outs]
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        asyncio.run(publish_run(url, namespace, count))
        lags: list[float] = []
        for proc, out in zip(procs, outs, strict=True):
            assert proc.wait(timeout=300) == 0
            lags.extend(json.loads(Path(out).read_text()))
        shutil.rmtree(tmp)
        lags.sort()
        result.append((lags[len(lags) // 2] * 1000, lags[int(len(lags) * 0.99)] * 1000))
    return result


# -- 2. write cost ---------------------------------------------------------------------------------
def bench_write(url: str, repeats: int, writes: int = 500) -> dict[str, float]:
    """Median seconds per ``set`` with the default bus and with ``bus=False``."""
    caches = {
        "set, SQLBus (default)": sc.Cache(
            tiers=[sc.MemoryTier(), sc.SQLTier(url)], namespace="w" + uuid.uuid4().hex[:6]
        ),
        "set, bus=False": sc.Cache(
            tiers=[sc.MemoryTier(), sc.SQLTier(url)],
            namespace="w" + uuid.uuid4().hex[:6],
            bus=False,
        ),
    }

    def sample(cache: sc.Cache) -> Any:
        def run() -> float:
            began = time.perf_counter()
            for i in range(writes):
                cache.sync.set(f"k{i % 100}", i)
            return (time.perf_counter() - began) / writes

        return run

    def asample(cache: sc.Cache) -> Any:
        async def run() -> float:
            began = time.perf_counter()
            for i in range(writes):
                await cache.set(f"k{i % 100}", i)
            return (time.perf_counter() - began) / writes

        return run

    async def async_side() -> dict[str, float]:
        for cache in caches.values():
            await cache.set("warm", 0)
        samples = {f"async {name}": asample(c) for name, c in caches.items()}
        results = await arun_interleaved(samples, repeats)
        for cache in caches.values():
            await cache.close()
        return {name: r.median for name, r in results.items()}

    for cache in caches.values():
        cache.sync.set("warm", 0)
    results = run_interleaved({name: sample(c) for name, c in caches.items()}, repeats)
    for cache in caches.values():
        cache.sync.close()
    medians = {name: r.median for name, r in results.items()}
    medians.update(asyncio.run(async_side()))
    return medians


def _span(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", help="also measure on this PostgreSQL URL")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=2)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--subscriber", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber:
        url, namespace, count, out = args.subscriber
        Path(out).write_text(json.dumps(asyncio.run(subscriber(url, namespace, int(count)))))
        return
    tmp = Path(tempfile.mkdtemp())
    targets = [("SQLite", f"sqlite:///{tmp / 'bus.db'}")]
    if args.pg:
        targets.append(("PostgreSQL", args.pg))
    for label, url in targets:
        runs = bench_lag(url, args.runs, args.subscribers, args.count)
        p50s, p99s = [r[0] for r in runs], [r[1] for r in runs]
        print(f"{label}: lag p50 {_span(p50s)} ms, p99 {_span(p99s)} ms (median (range) of runs)")
        writes = bench_write(url, 5)
        for kind in ("", "async "):
            on, off = writes[f"{kind}set, SQLBus (default)"], writes[f"{kind}set, bus=False"]
            print(
                f"{label}: {kind}set {on * 1e6:.0f} us with the bus, {off * 1e6:.0f} us"
                f" without: {on / off:.2f}x"
            )
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
