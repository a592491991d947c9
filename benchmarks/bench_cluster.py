"""RedisTier on a 3-primary Redis Cluster against one Redis, on servers this script starts.

- batched reads: ``get_many`` of 100 keys of 1 KB, throughput on the cluster against
  the same on one Redis (the cluster splits the MGET per slot and pipelines per node).
  Reported as a ratio; more nodes cost more replies to gather, so below 1x is expected.
- commands per node under tagged traffic: a mix of tagged ``set``/``get``/``invalidate``
  over many tags; each primary's share of all commands against its fair share (1/3).
  Target: no node over 1.5x its share (tag counters and epoch shards spread over slots).
- ``set_many`` of 10,000 entries (half tagged): how many are stored (target: all), on the
  cluster and on one Redis, and how long it took.

Needs ``redis-server`` and ``redis-cli`` on PATH; every server is stopped by its pid.

    python benchmarks/bench_cluster.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import redis
from _common import arun_interleaved, print_table, verdict

import stratacache as sc

VALUE = "x" * 1024
PRIMARIES = 3


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    rng = random.Random()
    while True:
        port = rng.randrange(20_000, 55_000)
        if _bindable(port) and _bindable(port + 10_000):
            return port


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=0.2).ping())
    except redis.RedisError:
        return False


@contextmanager
def servers() -> Iterator[tuple[str, str, list[int]]]:
    """``(single_url, cluster_url, primary_ports)``: started here, stopped by pid after."""
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        raise SystemExit("redis-server and redis-cli are needed: apt-get install redis-server")
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as workdir:
        try:

            def start(port: int, *extra: str) -> None:
                path = os.path.join(workdir, str(port))
                os.makedirs(path)
                args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
                args += ["--appendonly", "no", "--dir", path, *extra]
                procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
                _wait(lambda: _pings(port), f"redis-server on {port}")

            single = free_port()
            start(single)
            ports = [free_port() for _ in range(PRIMARIES)]
            for port in ports:
                start(port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
            nodes = [f"127.0.0.1:{p}" for p in ports]
            subprocess.run(
                [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                stdout=subprocess.DEVNULL,
                timeout=60,
            )

            def ready() -> bool:
                for port in ports:
                    info = redis.Redis(port=port).cluster("info")
                    if info["cluster_state"] != "ok":  # type: ignore[index]
                        return False
                return True

            _wait(ready, "cluster_state:ok")
            yield f"redis://127.0.0.1:{single}/0", f"redis://{nodes[0]}/0", ports
        finally:
            for proc in procs:
                proc.kill()
                proc.wait(timeout=10)


def commands_by_port(ports: list[int]) -> dict[int, int]:
    """Commands each server processed so far."""
    out = {}
    for port in ports:
        client = redis.Redis(port=port)
        out[port] = int(client.info("stats")["total_commands_processed"])  # type: ignore[index]
        client.close()
    return out


async def batched_reads(single: sc.Cache, cluster: sc.Cache, repeats: int) -> float:
    keys = [f"m{i}" for i in range(100)]
    for cache in (single, cluster):
        await cache.set_many({k: VALUE for k in keys}, ttl=3600)
        assert len(await cache.get_many(keys)) == 100

    def sample(cache: sc.Cache) -> Callable[[], Awaitable[float]]:
        async def run() -> float:
            start = time.perf_counter()
            for _ in range(100):
                await cache.get_many(keys)
            return 100 / (time.perf_counter() - start)

        return run

    results = await arun_interleaved(
        {"cluster get_many(100)": sample(cluster), "one Redis get_many(100)": sample(single)},
        repeats,
    )
    ratios = print_table(
        "Batched reads, 100 keys of 1 KB",
        results,
        subject="cluster get_many(100)",
        unit="batches/s, higher is better",
        formatter=lambda v: f"{v:,.0f}/s",
    )
    return ratios["one Redis get_many(100)"]


async def tagged_traffic(cluster: sc.Cache, ports: list[int]) -> float:
    """Each node's share of the commands of a tagged workload, over its fair share (max)."""
    rng = random.Random(7)
    before = commands_by_port(ports)
    for i in range(3000):
        user = rng.randrange(200)
        key = f"u{user}:{rng.randrange(20)}"
        op = rng.random()
        if op < 0.6:
            await cluster.get(key)
        elif op < 0.95:
            await cluster.set(key, VALUE, ttl=600, tags=[f"user:{user}", f"team:{user % 20}"])
        else:
            await cluster.invalidate(tags=[f"user:{user}"])
        if i % 500 == 0:
            await cluster.get_or_set(f"load:{i}", lambda: VALUE, ttl=600, tags=[f"user:{user}"])
    after = commands_by_port(ports)
    done = {p: after[p] - before[p] for p in ports}
    total = sum(done.values())
    print("\nCommands per primary under tagged traffic (share / fair share 1/3)")
    worst = 0.0
    for port, count in done.items():
        ratio = count / total * PRIMARIES
        worst = max(worst, ratio)
        print(f"  node :{port}  {count:>7} commands  {ratio:.2f}x its share")
    return worst


async def big_set_many(cache: sc.Cache, label: str) -> tuple[int, float]:
    entries = {f"big:{i}": VALUE for i in range(5000)}
    tagged = {f"bigt:{i}": VALUE for i in range(5000)}
    start = time.perf_counter()
    await cache.set_many(entries, ttl=600)
    await cache.set_many(tagged, ttl=600, tags=["bulk"])
    elapsed = time.perf_counter() - start
    got = await cache.get_many(list(entries)) | await cache.get_many(list(tagged))
    print(f"  {label}: {len(got):,} of 10,000 stored in {elapsed:.2f} s")
    return len(got), elapsed


async def main_async(repeats: int) -> None:
    with servers() as (single_url, cluster_url, ports):
        single = sc.Cache([sc.RedisTier(single_url)], namespace="bench", bus=False)
        cluster = sc.Cache(
            [sc.RedisTier(cluster_url, cluster=True, socket_timeout=2)],
            namespace="bench",
            bus=False,
        )
        async with single, cluster:
            read_ratio = await batched_reads(single, cluster, repeats)
            worst = await tagged_traffic(cluster, ports)
            print("\nset_many of 10,000 entries of 1 KB (5,000 untagged + 5,000 tagged)")
            stored_cluster, _ = await big_set_many(cluster, "cluster ")
            stored_single, _ = await big_set_many(single, "one Redis")
        print("\nTargets")
        print(f"  cluster / one Redis batched-read throughput: {read_ratio:.2f}x (reported)")
        print(verdict("busiest node's command share vs fair share", worst, 1.5))
        for label, stored in (("cluster", stored_cluster), ("one Redis", stored_single)):
            ok = "OK" if stored == 10_000 else "MISSED"
            print(f"  set_many of 10,000 stored on {label}: {stored:,} (target 10,000) {ok}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main_async(args.repeats))


if __name__ == "__main__":
    main()
