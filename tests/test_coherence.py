"""Multi-process coherence: no read that began after an invalidation returned gets an older value.

Four OS processes share one Redis (tier, bus and a versioned source of truth)
and, for a bounded time, do random reads through the loader (``get_or_set`` and
a decorated function, so the memo fast path is exercised), writes to the source
followed by key or tag invalidations. Every read is recorded with its start and
end time, every invalidation with the version it made current and when it
returned, and every remote application with when it happened in each process.

A read of key ``k`` starting at ``s`` in process ``P`` must return a version at
least as new as every invalidation of ``k`` (directly or by tag) that was
*visible* to ``P`` before ``s``: returned, if ``P`` issued it; applied by ``P``'s
bus reader otherwise (the measured bus lag), or returned + the largest
measured lag if ``P`` never applied it (e.g. it exited first).

Run as a script, this file is the worker.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

KEYS = [f"k{i}" for i in range(6)]
PROCESSES = 4
DURATION = 20.0


def tag_of(key: str) -> str:
    return f"g{int(key[1:]) % 3}"


# -- worker ----------------------------------------------------------------------------------------
async def work(
    url: str, namespace: str, wid: int, duration: float, bus_mode: str
) -> dict[str, Any]:
    """One process's random workload and what it observed.

    ``bus_mode``: ``"1"`` a ``RedisBus``, ``"0"`` none, or a ``sqlite:///`` URL: memory above
    a SQL tier on that file, with its default bus (``SQLBus``).
    """
    import redis.asyncio as aredis

    import stratacache as sc
    from stratacache.engine import signals

    truth = aredis.Redis.from_url(url)
    if bus_mode.startswith("sqlite"):
        cache = sc.Cache(
            tiers=[sc.MemoryTier(maxsize=100), sc.SQLTier(url=bus_mode)],
            namespace=namespace,
            default_ttl=60,
        )
    else:
        cache = sc.Cache(
            tiers=[sc.MemoryTier(maxsize=100), sc.RedisTier(url=url)],
            namespace=namespace,
            bus=sc.RedisBus(url) if bus_mode == "1" else False,
            default_ttl=60,
        )
    clock = time.monotonic
    reads: list[tuple[str, float, float, int]] = []
    invalidations: list[tuple[str, str, int, float, float]] = []
    applied: list[tuple[str, float]] = []

    def on_invalidated(sender: Any, **payload: Any) -> None:
        if payload["origin"] == "remote" and payload["reason"]:
            applied.append((payload["reason"], clock()))

    signals.invalidated.connect(on_invalidated, sender=cache)

    async def source(key: str) -> int:
        return int(await truth.get(f"truth:{namespace}:{key}") or 0)

    @cache.cached(key="{key}", tags=["{group}"])
    async def item(key: str, group: str) -> int:
        return await source(key)

    rng = random.Random(wid)
    async with cache:
        # start barrier: the last process to be ready releases everyone
        if int(await truth.incr(f"ready:{namespace}")) == PROCESSES:
            await truth.rpush(f"go:{namespace}", *range(PROCESSES))
        await truth.blpop([f"go:{namespace}"], timeout=30)
        end = clock() + duration
        n = 0
        while clock() < end:
            key = rng.choice(KEYS)
            roll = rng.random()
            if roll < 0.8:
                start = clock()
                if roll < 0.4:
                    value = await cache.get_or_set(
                        key, lambda key=key: source(key), tags=[tag_of(key)]
                    )
                else:
                    value = await item(key, tag_of(key))
                reads.append((key, start, clock(), int(value)))
            else:
                n += 1
                ident = f"{wid}:{n}"
                version = int(await truth.incr(f"truth:{namespace}:{key}"))
                start = clock()
                if roll < 0.9:
                    await cache.invalidate(keys=[key], reason=ident)
                else:
                    await cache.invalidate(tags=[tag_of(key)], reason=ident)
                invalidations.append((ident, key, version, start, clock()))
            if n % 16 == 0:
                await asyncio.sleep(0)
    await truth.aclose()
    return {"reads": reads, "invalidations": invalidations, "applied": applied}


# -- checker ---------------------------------------------------------------------------------------
def check(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Count reads, invalidations and violations; measure the bus lag."""
    applied: dict[int, dict[str, float]] = {p: dict(r["applied"]) for p, r in enumerate(results)}
    ends = {i[0]: i[4] for r in results for i in r["invalidations"]}
    lags = sorted(
        max(0.0, t - ends[ident])
        for a in applied.values()
        for ident, t in a.items()
        if ident in ends
    )
    max_lag = lags[-1] if lags else 0.0
    violations: list[tuple[int, Any, Any]] = []
    for reader, result in enumerate(results):
        # per key: (time the invalidation became visible to this reader, version it made current)
        visible: dict[str, list[tuple[float, int]]] = defaultdict(list)
        for origin, other in enumerate(results):
            for ident, key, version, _start, end in other["invalidations"]:
                if origin == reader:
                    when = end
                else:
                    when = max(end, applied[reader].get(ident, end + max_lag))
                visible[key].append((when, version))
        table: dict[str, tuple[list[float], list[int]]] = {}
        for key, items in visible.items():
            items.sort()
            best, maxima = 0, []
            for _, version in items:
                best = max(best, version)
                maxima.append(best)
            table[key] = ([t for t, _ in items], maxima)
        for key, start, _end, value in result["reads"]:
            if key not in table:
                continue
            times, maxima = table[key]
            index = bisect.bisect_left(times, start) - 1
            if index >= 0 and value < maxima[index]:
                violations.append((reader, (key, start, value), maxima[index]))

    def pct(q: float) -> float:
        return lags[min(len(lags) - 1, int(q * len(lags)))] * 1000 if lags else float("nan")

    return {
        "reads": sum(len(r["reads"]) for r in results),
        "invalidations": len(ends),
        "remote_applies": len(lags),
        "violations": len(violations),
        "examples": violations[:5],
        "lag_p50_ms": pct(0.50),
        "lag_p99_ms": pct(0.99),
        "lag_max_ms": max_lag * 1000,
    }


def run_fleet(
    redis_url: str, tmp_path: Path, duration: float, use_bus: bool, sql: str = ""
) -> dict[str, Any]:
    """Run the workers as separate OS processes and check what they recorded."""
    namespace = "coh" + uuid.uuid4().hex[:8]
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    outs = [str(tmp_path / f"worker{i}.json") for i in range(PROCESSES)]
    args = [redis_url, namespace, str(duration), sql or ("1" if use_bus else "0")]
    procs = [
        subprocess.Popen([sys.executable, __file__, *args, str(i), out], env=env)
        for i, out in enumerate(outs)
    ]
    for proc in procs:
        assert proc.wait(timeout=duration + 60) == 0
    return check([json.loads(Path(out).read_text()) for out in outs])


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_no_stale_read_after_invalidation_across_processes(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Four processes, random reads/writes/invalidations: zero reads older than a visible invalidation."""
    report = run_fleet(redis_url, tmp_path, DURATION, use_bus=True)
    with capsys.disabled():
        print(f"\ncoherence: {report}")
    assert report["reads"] > 1000 and report["invalidations"] > 100
    assert report["remote_applies"] > 0
    assert report["violations"] == 0, report["examples"]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_no_stale_read_across_processes_sharing_a_sqlite_file(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same check for the embedded default (memory above SQLite) and its ``SQLBus``: the
    reads that began after a remote invalidation was applied never return an older value."""
    report = run_fleet(redis_url, tmp_path, 10.0, True, sql=f"sqlite:///{tmp_path / 'c.db'}")
    with capsys.disabled():
        print(f"\ncoherence over SQLite: {report}")
    assert report["reads"] > 500 and report["invalidations"] > 50
    assert report["remote_applies"] > 0
    assert report["violations"] == 0, report["examples"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_checker_catches_incoherent_l1_without_bus(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the bus, other processes' L1 serve old values: the checker must report violations."""
    report = run_fleet(redis_url, tmp_path, 4.0, use_bus=False)
    with capsys.disabled():
        print(f"\nwithout bus: {report}")
    assert report["violations"] > 0


if __name__ == "__main__":
    url, ns, seconds, bus_flag, worker_id, output = sys.argv[1:7]
    observed = asyncio.run(work(url, ns, int(worker_id), float(seconds), bus_flag))
    Path(output).write_text(json.dumps(observed))
