"""The SQL tier against diskcache (SQLite) and raw psycopg (PostgreSQL).

All contenders run in one process, interleaved (every repeat runs each once, in
rotating order); numbers are medians over repeats, ratios are stratacache / anchor.

SQLite (one database file per contender, in a temporary folder, same ~1 KB dict value):

- sync get: ``SQLTier.get_sync`` vs ``diskcache.Cache.get``. Target <= 1.5x.
- async get: ``await SQLTier.get`` vs ``diskcache.Cache.get``. Target <= 2.5x.
- set: ``SQLTier.set_sync`` vs ``diskcache.Cache.set``. Target <= 1.5x (async set shown).
- 16 concurrent callers: p50 of one ``await tier.get`` among 16 tasks vs the p50 of the
  same call made alone. Target <= 3x.
- tag check: a tagged ``get_sync`` with 10 vs 100,000 tags ever invalidated. Target <= 1.2x.

PostgreSQL (skipped when unreachable): ``SQLTier.get_sync`` vs a raw psycopg
primary-key SELECT of the same row, and ``await SQLTier.get`` vs the same SELECT on a
psycopg ``AsyncConnection``. Target <= 1.5x. Both sides use the same connection (the
tier's), called alternately key by key; each repeat reports the per-call p50.

    python benchmarks/bench_sql.py [--repeats 9] [--pg postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import diskcache
from _common import Result, arun_interleaved, print_table, run_interleaved, verdict

from stratacache.core.entry import Entry
from stratacache.core.tier import TierContext
from stratacache.tiers.sql import SQLTier

KEYS = [f"bench:item:{i}" for i in range(200)]
VALUE = {"id": 1, "name": "widget", "tags": ["a", "b"], "body": "x" * 900}
ROUNDS = 5


def per_call(fn: Callable[[str], Any], keys: list[str] = KEYS) -> Callable[[], float]:
    def sample() -> float:
        start = time.perf_counter_ns()
        for _ in range(ROUNDS):
            for k in keys:
                fn(k)
        return (time.perf_counter_ns() - start) / (ROUNDS * len(keys))

    return sample


def aper_call(fn: Callable[[str], Awaitable[Any]]) -> Callable[[], Awaitable[float]]:
    async def sample() -> float:
        start = time.perf_counter_ns()
        for _ in range(ROUNDS):
            for k in KEYS:
                await fn(k)
        return (time.perf_counter_ns() - start) / (ROUNDS * len(KEYS))

    return sample


def p50(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


async def started(url: str, namespace: str = "bench", **kw: Any) -> SQLTier:
    tier = SQLTier(url, sweep_interval=0, **kw)
    await tier.start(TierContext(namespace))
    return tier


def entry(tags: tuple[str, ...] = ()) -> Entry:
    return Entry(VALUE, time.time(), expires=time.time() + 3600, tags=tags)


async def sqlite_part(folder: str, repeats: int) -> list[str]:
    lines = []
    dc = diskcache.Cache(os.path.join(folder, "diskcache"))
    tier = await started(f"sqlite:///{folder}/tier.db")
    for k in KEYS:
        dc.set(k, VALUE)
        tier.set_sync(k, entry())
    writes = iter(range(10**9))

    def dc_set(k: str) -> None:
        dc.set(f"{k}:{next(writes) % 1000}", VALUE)

    def tier_set(k: str) -> None:
        tier.set_sync(f"{k}:{next(writes) % 1000}", entry())

    sync = run_interleaved(
        {
            "SQLTier.get_sync": per_call(tier.get_sync),
            "diskcache.get": per_call(dc.get),
            "SQLTier.set_sync": per_call(tier_set, KEYS[:50]),
            "diskcache.set": per_call(dc_set, KEYS[:50]),
        },
        repeats,
    )
    get_r = {k: sync[k] for k in ("SQLTier.get_sync", "diskcache.get")}
    set_r = {k: sync[k] for k in ("SQLTier.set_sync", "diskcache.set")}

    async def dc_aget(k: str) -> Any:
        return dc.get(k)

    async def tier_aset(k: str) -> Any:
        return await tier.set(f"{k}:{next(writes) % 1000}", entry())

    aset_keys = KEYS[:50]

    async def aset_sample() -> float:
        start = time.perf_counter_ns()
        for _ in range(ROUNDS):
            for k in aset_keys:
                await tier_aset(k)
        return (time.perf_counter_ns() - start) / (ROUNDS * len(aset_keys))

    async def seq_latency() -> float:
        lat = []
        for k in KEYS:
            t0 = time.perf_counter_ns()
            await tier.get(k)
            lat.append(time.perf_counter_ns() - t0)
        return p50(lat)

    async def concurrent_latency() -> float:
        lat: list[float] = []

        async def caller(offset: int) -> None:
            for k in KEYS[offset::16]:
                t0 = time.perf_counter_ns()
                await tier.get(k)
                lat.append(time.perf_counter_ns() - t0)
                await asyncio.sleep(0)  # callers interleave like request handlers

        await asyncio.gather(*(caller(i) for i in range(16)))
        return p50(lat)

    asy = await arun_interleaved(
        {
            "await SQLTier.get": aper_call(tier.get),
            "diskcache.get (in a coroutine)": aper_call(dc_aget),
            "await SQLTier.set": aset_sample,
            "get p50, alone": seq_latency,
            "get p50, 16 concurrent": concurrent_latency,
        },
        repeats,
    )
    asy["diskcache.get (sync)"] = sync["diskcache.get"]

    # the tag check: same tagged entry, 10 vs 100,000 tags ever invalidated
    few = await started(f"sqlite:///{folder}/few.db")
    many = await started(f"sqlite:///{folder}/many.db")
    for t, n in ((few, 10), (many, 100_000)):
        for i in range(0, n, 10_000):
            t.invalidate_tags_sync([f"old:{j}" for j in range(i, min(n, i + 10_000))])
        for k in KEYS:
            t.set_sync(k, entry(tags=("product", f"p:{k}", "catalog")))
    # short samples: three times the repeats so a burst of load on a shared machine
    # cannot decide the median
    tags = run_interleaved(
        {
            "tagged get, 100,000 tags invalidated": per_call(many.get_sync),
            "tagged get, 10 tags invalidated": per_call(few.get_sync),
        },
        3 * repeats,
    )

    r1 = print_table("SQLite get, sync", get_r, subject="SQLTier.get_sync")
    r2 = print_table(
        "SQLite get, async",
        {
            k: asy[k]
            for k in ("await SQLTier.get", "diskcache.get (sync)", "diskcache.get (in a coroutine)")
        },
        subject="await SQLTier.get",
    )
    r3 = print_table(
        "SQLite set",
        {**set_r, "await SQLTier.set": asy["await SQLTier.set"]},
        subject="SQLTier.set_sync",
    )
    r4 = print_table(
        "SQLite async get latency",
        {k: asy[k] for k in ("get p50, 16 concurrent", "get p50, alone")},
        subject="get p50, 16 concurrent",
    )
    r5 = print_table("Tag check", tags, subject="tagged get, 100,000 tags invalidated")
    lines += [
        verdict("SQLite get sync / diskcache.get", r1["diskcache.get"], 1.5),
        verdict("SQLite get async / diskcache.get", r2["diskcache.get (sync)"], 2.5),
        verdict("SQLite set / diskcache.set", r3["diskcache.set"], 1.5),
        verdict("async get p50 16 concurrent / alone", r4["get p50, alone"], 3.0),
        verdict(
            "tag check 100,000 / 10 invalidated tags", r5["tagged get, 10 tags invalidated"], 1.2
        ),
    ]
    for t in (tier, few, many):
        await t.close()
    dc.close()
    return lines


def paired(
    a: Callable[[str], Any], b: Callable[[str], Any], names: tuple[str, str], repeats: int
) -> dict[str, Result]:
    """``a`` and ``b`` called alternately key by key (the first of the pair alternating too);
    each repeat's number is the median per-call latency, so a burst of load on a busy machine
    moves a few calls of both, not one contender's whole sample."""
    results = {n: Result(n) for n in names}
    for r in range(repeats):
        lat: tuple[list[float], list[float]] = ([], [])
        for i, k in enumerate(KEYS * ROUNDS):
            for side in (0, 1) if (i + r) % 2 else (1, 0):
                fn = a if side == 0 else b
                t0 = time.perf_counter_ns()
                fn(k)
                lat[side].append(time.perf_counter_ns() - t0)
        for side in (0, 1):
            results[names[side]].samples.append(p50(lat[side]))
    return results


async def apaired(
    a: Callable[[str], Awaitable[Any]],
    b: Callable[[str], Awaitable[Any]],
    names: tuple[str, str],
    repeats: int,
) -> dict[str, Result]:
    """``paired`` for coroutines."""
    results = {n: Result(n) for n in names}
    for r in range(repeats):
        lat: tuple[list[float], list[float]] = ([], [])
        for i, k in enumerate(KEYS * ROUNDS):
            for side in (0, 1) if (i + r) % 2 else (1, 0):
                fn = a if side == 0 else b
                t0 = time.perf_counter_ns()
                await fn(k)
                lat[side].append(time.perf_counter_ns() - t0)
        for side in (0, 1):
            results[names[side]].samples.append(p50(lat[side]))
    return results


async def postgres_part(url: str, repeats: int) -> list[str]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(url, autocommit=True)
    admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        scoped = f"{url}?options=-csearch_path%3D{schema}"
        # Identical connections differ by up to 2x on a busy 2-core machine (where the server
        # process runs against the client), so the tier keeps one connection (pool_size=1)
        # and raw psycopg runs its SELECT on that very connection, call for call.
        tier = await started(scoped, pool_size=1)
        for k in KEYS:
            tier.set_sync(k, entry())
        query = "SELECT value FROM stratacache_entries WHERE key = %s"
        with tier.store.connection() as conn:
            pass  # the tier's one sync connection, back in its pool
        await tier.get(KEYS[0])
        aconn = tier.store.pool._apools[asyncio.get_running_loop()][0][0]  # and its async one

        def raw_get(k: str) -> Any:
            return conn.execute(query, (k,)).fetchone()

        async def araw_get(k: str) -> Any:
            cur = await aconn.execute(query, (k,))
            return await cur.fetchone()

        for k in KEYS[:20]:  # prepared on the server by both sides before measuring
            tier.get_sync(k), raw_get(k), await tier.get(k), await araw_get(k)
        sync = paired(tier.get_sync, raw_get, ("SQLTier.get_sync", "psycopg PK SELECT"), repeats)
        asy = await apaired(
            tier.get, araw_get, ("await SQLTier.get", "await psycopg async PK SELECT"), repeats
        )
        r1 = print_table("PostgreSQL get, sync", sync, subject="SQLTier.get_sync", unit="p50")
        r2 = print_table("PostgreSQL get, async", asy, subject="await SQLTier.get", unit="p50")
        await tier.close()
        return [
            verdict("PostgreSQL get sync / psycopg", r1["psycopg PK SELECT"], 1.5),
            verdict(
                "PostgreSQL get async / psycopg async", r2["await psycopg async PK SELECT"], 1.5
            ),
        ]
    finally:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument(
        "--pg", default=os.environ.get("POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        lines = await sqlite_part(folder, args.repeats)
    try:
        lines += await postgres_part(args.pg, args.repeats)
    except OSError as exc:
        lines.append(f"  PostgreSQL skipped: {exc}")
    except Exception as exc:  # psycopg.OperationalError when the server is not there
        lines.append(f"  PostgreSQL skipped: {exc!r}")
    print("\nTargets")
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
