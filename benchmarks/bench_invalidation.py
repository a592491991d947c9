"""Invalidation costs: bus propagation lag, tag invalidation vs keyspace, tagged vs untagged reads.

1. *Propagation lag*: one process invalidates keys through ``RedisBus``; 2+
   subscriber processes record, for each message, the time from when it was
   issued to when their L1 had applied it (wall clock, one machine). p50/p99 per
   run, median over runs. Target: p99 < 5 ms on loopback.
2. *Tag invalidation cost* with 10 / 1k / 10k entries carrying the tag, Redis
   only and memory + Redis (the memory tier must evict its own copies, so its
   part grows with what L1 holds, bounded by its ``maxsize``). Target: flat on Redis.
3. *Read path*: a Redis-tier hit of a tagged entry vs an untagged one (latency
   ratio, and round trips per read counted at the connection). Target: one trip.

    python benchmarks/bench_invalidation.py [--redis URL] [--runs 5] [--subscribers 2]

Without ``--redis`` a throwaway ``redis-server`` is started on a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
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

import stratacache as sc  # noqa: E402
from stratacache import events  # noqa: E402


# -- 1. propagation lag ----------------------------------------------------------------------------
async def subscriber(url: str, namespace: str, expected: int) -> list[float]:
    """Apply bus messages to a memory tier; record issue→applied lag of each (seconds)."""
    lags: list[float] = []
    done = asyncio.Event()
    cache = sc.Cache(tiers=[sc.MemoryTier()], namespace=namespace, bus=sc.RedisBus(url))

    def record(message: Any) -> None:
        lags.append(time.time() - message.at)  # the hook runs after L1 applied it
        if len(lags) >= expected:
            done.set()

    async with cache:
        events.audit(cache, record, remote=True)
        print("ready", flush=True)
        await asyncio.wait_for(done.wait(), 120)
    return lags


async def publish_run(url: str, namespace: str, count: int) -> None:
    async with sc.Cache(tiers=[sc.MemoryTier()], namespace=namespace, bus=sc.RedisBus(url)) as c:
        for i in range(count):
            await c.invalidate(keys=[f"k{i % 100}"])
            await asyncio.sleep(0.001)  # paced: we measure lag, not queueing under overload


def bench_lag(url: str, runs: int, subscribers: int, count: int = 1000) -> dict[str, float]:
    p50s, p99s = [], []
    for _ in range(runs):
        namespace = "lag" + uuid.uuid4().hex[:8]
        tmp = Path(tempfile.mkdtemp())
        outs = [str(tmp / f"sub{i}.json") for i in range(subscribers)]
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--subscriber", url, namespace, str(count), out],
                stdout=subprocess.PIPE,
                text=True,
            )
            for out in outs
        ]
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        asyncio.run(publish_run(url, namespace, count))
        lags: list[float] = []
        for proc, out in zip(procs, outs, strict=True):
            assert proc.wait(timeout=120) == 0
            lags.extend(json.loads(Path(out).read_text()))
        shutil.rmtree(tmp)
        lags.sort()
        p50s.append(lags[len(lags) // 2] * 1000)
        p99s.append(lags[int(len(lags) * 0.99)] * 1000)
    return {"p50_ms": statistics.median(p50s), "p99_ms": statistics.median(p99s)}


# -- 2. tag invalidation cost ----------------------------------------------------------------------
async def tag_cost(url: str, sizes: list[int], runs: int, with_memory: bool) -> dict[int, float]:
    """Median seconds of ``invalidate(tags=[t])`` when ``n`` entries carry ``t``.

    Redis only: the entries carry 20 tags and each is invalidated in turn (20 samples
    per population). With memory: repopulated before each sample, since the first
    invalidation evicts L1's copies and that eviction is the part that grows.
    """
    result = {}
    for n in sizes:
        namespace = "tag" + uuid.uuid4().hex[:8]
        tiers: list[Any] = [sc.RedisTier(url=url)]
        if with_memory:
            tiers.insert(0, sc.MemoryTier(maxsize=20_000))
        timings = []
        tags = ["t0"] if with_memory else [f"t{i}" for i in range(20)]
        async with sc.Cache(tiers=tiers, namespace=namespace, bus=sc.RedisBus(url)) as cache:
            for _ in range(runs if with_memory else 1):
                for start in range(0, n, 1000):
                    batch = {f"e{i}": i for i in range(start, min(n, start + 1000))}
                    await cache.set_many(batch, tags=tags)
                for tag in tags[:1] if with_memory else tags:
                    began = time.perf_counter()
                    await cache.invalidate(tags=[tag])
                    timings.append(time.perf_counter() - began)
            await cache.clear()
        result[n] = statistics.median(timings)
    return result


# -- 3. tagged vs untagged read --------------------------------------------------------------------
class TripCounter:
    """Counts commands sent to Redis (a pipeline or script call is one send)."""

    def __init__(self) -> None:
        from redis.asyncio.connection import AbstractConnection

        self.count = 0
        self._cls = AbstractConnection
        self._original = AbstractConnection.send_packed_command
        counter = self

        async def counted(conn: Any, command: Any, check_health: bool = True) -> None:
            counter.count += 1
            await counter._original(conn, command, check_health)

        AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]

    def restore(self) -> None:
        self._cls.send_packed_command = self._original  # type: ignore[method-assign]


async def read_cost(url: str, runs: int, reads: int = 2000) -> dict[str, dict[str, float]]:
    """Median latency and round trips of Redis-tier hits: untagged, tagged via ``get``
    (tags unknown to the caller), tagged via ``get_or_set(tags=...)`` (tags known, as in
    the decorator)."""
    namespace = "read" + uuid.uuid4().hex[:8]
    tags = ["user:1", "org:1"]
    async with sc.Cache(tiers=[sc.RedisTier(url=url)], namespace=namespace) as cache:
        await cache.set("untagged", {"v": 1})
        await cache.set("tagged", {"v": 1}, tags=tags)

        def unreachable() -> None:
            raise AssertionError("the entry should be a hit")

        cases = {
            "untagged get": lambda: cache.get("untagged"),
            "tagged get": lambda: cache.get("tagged"),
            "tagged get_or_set(tags=)": lambda: cache.get_or_set("tagged", unreachable, tags=tags),
        }
        result: dict[str, dict[str, float]] = {}
        for name, read in cases.items():
            medians = []
            for _ in range(runs):
                samples = []
                for _ in range(reads):
                    began = time.perf_counter()
                    await read()
                    samples.append(time.perf_counter() - began)
                medians.append(statistics.median(samples))
            counter = TripCounter()
            try:
                for _ in range(100):
                    assert await read() == {"v": 1}
            finally:
                counter.restore()
            result[name] = {"us": statistics.median(medians) * 1e6, "trips": counter.count / 100}
    return result


# -- driver ----------------------------------------------------------------------------------------
def start_redis() -> tuple[str, subprocess.Popen[bytes]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found; pass --redis URL")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    return f"redis://127.0.0.1:{port}/0", proc


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--subscriber":
        url, namespace, count, out = sys.argv[2:6]
        Path(out).write_text(json.dumps(asyncio.run(subscriber(url, namespace, int(count)))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--subscribers", type=int, default=2)
    args = parser.parse_args()
    server = None
    url = args.redis
    if url is None:
        url, server = start_redis()
    try:
        lag = bench_lag(url, args.runs, args.subscribers)
        print(
            f"propagation lag ({args.subscribers} subscriber processes, median of {args.runs} runs): "
            f"p50 {lag['p50_ms']:.3f} ms, p99 {lag['p99_ms']:.3f} ms (target p99 < 5 ms)"
        )
        sizes = [10, 1000, 10_000]
        for label, memory in (("redis only", False), ("memory + redis", True)):
            cost = asyncio.run(tag_cost(url, sizes, args.runs, memory))
            base = cost[sizes[0]]
            row = ", ".join(f"{n}: {cost[n] * 1e3:.3f} ms ({cost[n] / base:.2f}x)" for n in sizes)
            print(f"tag invalidation, {label}: {row}")
        reads = asyncio.run(read_cost(url, args.runs))
        base = reads["untagged get"]["us"]
        for name, row in reads.items():
            print(
                f"redis-tier hit, {name}: {row['us']:.1f} us ({row['us'] / base:.2f}x untagged), "
                f"{row['trips']:.2f} round trips"
            )
    finally:
        if server is not None:
            server.kill()
            server.wait()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
