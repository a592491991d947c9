"""The SQL query cache under a read-heavy workload on PostgreSQL: throughput, p99, stale reads.

10,000 rows; several async workers (SQLAlchemy ``AsyncEngine``, psycopg 3) pick
rows by a Zipf law; 95% of operations read one row
(``select(...).execution_options(stratacache=True)``), 5% increment its value in
a committed transaction. Candidates, interleaved over repeats on one database:

- *conn, uncached* / *session, uncached*: the same code with no query cache,
  reading through ``engine.connect()`` + ``conn.execute(stmt)`` or
  ``AsyncSession(engine)`` + ``session.execute(stmt)``;
- *conn, qc memory* / *session, qc memory*: the same reads with a ``QueryCache``
  over a memory tier (a session hit needs no connection checkout);
- *session, qc memory+redis*: memory + Redis tiers with the Redis bus;
- *qc.aexecute, qc memory*: reads through ``await qc.aexecute(stmt)`` (a known
  cached SELECT is served with no connection and no greenlet switch);
- *prebuilt …*: the statement is built once with ``bindparam("id")`` and executed
  with ``{"id": n}`` (SQLAlchemy's advice for hot paths: no statement built per
  call), uncached through ``conn.execute`` and cached through ``qc.aexecute``.

Results live an hour (``ttl=3600``), so that on a slow machine the first
candidate's warmed results do not expire (the default is 300 s) while the
others warm up.

Each cached candidate is compared with the uncached baseline of its own form
(conn or session; ``qc.aexecute`` with the conn baseline; prebuilt with prebuilt).

A read is *stale* when it returns a value older than one already committed
before the read began (values only grow, and commits are recorded when
``commit()`` returns). Target: >= 5x the uncached throughput with 0 stale reads.

    python benchmarks/bench_query_cache.py [--pg URL] [--redis URL] [--workers 8] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from bisect import bisect_left
from itertools import accumulate
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy as sa
from _common import percentile
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

import stratacache as sc
from stratacache.sql import QueryCache

ROWS = 10_000
WRITE_SHARE = 0.05
items = sa.Table(
    "bench_items",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("value", sa.BigInteger),
    sa.Column("payload", sa.Text),
)


BY_ID = (
    sa.select(items.c.value, items.c.payload)
    .where(items.c.id == sa.bindparam("id"))
    .execution_options(stratacache=True)
)


def read_statement(row: int, prebuilt: bool) -> tuple[Any, dict[str, int] | None]:
    """The cached read of ``row``: built for this call, or the prebuilt one with its parameters."""
    if prebuilt:
        return BY_ID, {"id": row}
    stmt = sa.select(items.c.value, items.c.payload).where(items.c.id == row)
    return stmt.execution_options(stratacache=True), None


def zipf_picker(n: int, s: float, seed: int) -> Any:
    """A function returning ids 1..n with probability proportional to 1/rank**s."""
    weights = list(accumulate(1.0 / (k**s) for k in range(1, n + 1)))
    total = weights[-1]
    rng = random.Random(seed)
    order = list(range(1, n + 1))
    rng.shuffle(order)  # hot ids scattered over the table
    return lambda: order[bisect_left(weights, rng.random() * total)]


async def setup(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text("DROP TABLE IF EXISTS bench_items"))
        await conn.execute(
            sa.text("CREATE TABLE bench_items (id int PRIMARY KEY, value bigint, payload text)")
        )
        await conn.execute(
            sa.insert(items),
            [{"id": i, "value": 0, "payload": "x" * 64} for i in range(1, ROWS + 1)],
        )


async def warm(engine: AsyncEngine, workers: int, prebuilt: bool) -> None:
    """Read every row once (the steady state of a long-running application's cache)."""
    ids = iter(range(1, ROWS + 1))

    async def worker() -> None:
        async with engine.connect() as conn:
            for row in ids:
                (await conn.execute(*read_statement(row, prebuilt))).one()

    await asyncio.gather(*(worker() for _ in range(workers)))


async def run(
    engine: AsyncEngine, workers: int, seconds: float, seed: int, form: str, qc: QueryCache | None
) -> dict[str, float]:
    """Run the mixed workload; ops/s, read p99 (ms) and the count of stale reads."""
    committed: dict[int, int] = {}
    latencies: list[float] = []
    stale = 0
    ops = 0
    deadline = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        nonlocal stale, ops
        pick = zipf_picker(ROWS, 1.1, seed * 100 + index)
        rng = random.Random(seed * 1000 + index)
        while time.perf_counter() < deadline:
            row = pick()
            if rng.random() < WRITE_SHARE:
                async with engine.begin() as conn:
                    new = (
                        await conn.execute(
                            sa.update(items)
                            .where(items.c.id == row)
                            .values(value=items.c.value + 1)
                            .returning(items.c.value)
                        )
                    ).scalar_one()
                committed[row] = max(committed.get(row, 0), new)
            else:
                floor = committed.get(row, 0)
                started = time.perf_counter()
                stmt, params = read_statement(row, form.endswith("prebuilt"))
                if form.startswith("aexecute") and qc is not None:
                    value = (await qc.aexecute(stmt, params)).one()[0]
                elif form == "session":
                    async with AsyncSession(engine) as session:
                        value = (await session.execute(stmt, params)).one()[0]
                else:
                    async with engine.connect() as conn:
                        value = (await conn.execute(stmt, params)).one()[0]
                latencies.append(time.perf_counter() - started)
                if value < floor:
                    stale += 1
            ops += 1

    await asyncio.gather(*(worker(i) for i in range(workers)))
    return {"ops": ops / seconds, "p99": percentile(latencies, 0.99) * 1000, "stale": stale}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pg",
        default=os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    schema = f"bench_qc_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(args.pg)
    async with admin.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{args.pg}?options=-csearch_path%3D{schema}"
    engines: dict[str, AsyncEngine] = {}
    query_caches: dict[str, QueryCache] = {}
    caches: list[sc.Cache] = []
    try:
        # name -> (read form, tiers: None | "memory" | "memory+redis", baseline name)
        candidates = {
            "conn, uncached": ("conn", None, "conn, uncached"),
            "session, uncached": ("session", None, "session, uncached"),
            "conn, qc memory": ("conn", "memory", "conn, uncached"),
            "session, qc memory": ("session", "memory", "session, uncached"),
            "session, qc memory+redis": ("session", "memory+redis", "session, uncached"),
            "qc.aexecute, qc memory": ("aexecute", "memory", "conn, uncached"),
            "prebuilt conn, uncached": ("conn-prebuilt", None, "prebuilt conn, uncached"),
            "prebuilt qc.aexecute, memory": (
                "aexecute-prebuilt",
                "memory",
                "prebuilt conn, uncached",
            ),
        }
        for index, (name, (_, tiers_kind, _)) in enumerate(candidates.items()):
            engine = create_async_engine(url, pool_size=args.workers, max_overflow=0)
            if tiers_kind == "memory":
                caches.append(sc.Cache([sc.MemoryTier(maxsize=20_000)], namespace=f"bqc{index}"))
                query_caches[name] = QueryCache(caches[-1], engine, ttl=3600)
            elif tiers_kind == "memory+redis":
                tiers = [sc.MemoryTier(maxsize=20_000), sc.RedisTier(url=args.redis)]
                bus = sc.RedisBus(args.redis)
                caches.append(sc.Cache(tiers, namespace=f"bqc{index}", bus=bus))
                query_caches[name] = QueryCache(caches[-1], engine, ttl=3600)
            engines[name] = engine
        await setup(engines["conn, uncached"])
        warmed: dict[str, dict[str, float]] = {}
        for name, engine in engines.items():
            if name in query_caches:
                await warm(engine, args.workers, candidates[name][0].endswith("prebuilt"))
                warmed[name] = dict(query_caches[name].stats()["tables"]["bench_items"])
        results: dict[str, list[dict[str, float]]] = {name: [] for name in engines}
        names = list(engines)
        for repeat in range(args.repeats):
            order = names[repeat % len(names) :] + names[: repeat % len(names)]
            for name in order:
                form = candidates[name][0]
                qc = query_caches.get(name)
                results[name].append(
                    await run(engines[name], args.workers, args.seconds, repeat, form, qc)
                )
        ops = {name: statistics.median(r["ops"] for r in runs) for name, runs in results.items()}
        print(
            f"{ROWS} rows, Zipf s=1.1, {1 - WRITE_SHARE:.0%} reads, {args.workers} async workers, "
            f"{args.seconds:g} s x {args.repeats} repeats (medians)"
        )
        print(
            f"{'candidate':30} {'ops/s':>8} {'read p99 ms':>12} {'stale':>6} {'vs own form':>12}"
            f" {'hit rate':>9}"
        )
        worst = 0
        for name, runs in results.items():
            p99 = statistics.median(r["p99"] for r in runs)
            stale = int(sum(r["stale"] for r in runs))
            worst = max(worst, stale)
            ratio = ops[name] / ops[candidates[name][2]]
            hit_rate = ""
            if name in query_caches:
                now = query_caches[name].stats()["tables"]["bench_items"]
                hits = now["hits"] - warmed[name]["hits"]
                misses = now["misses"] - warmed[name]["misses"]
                hit_rate = f"{hits / max(1, hits + misses):.0%}"
            print(f"{name:30} {ops[name]:8.0f} {p99:12.2f} {stale:6d} {ratio:11.2f}x {hit_rate:>9}")
        print("(hit rate: of the runs' cacheable reads, after a warm-up reading every row once)")
        for name in query_caches:
            ratio = ops[name] / ops[candidates[name][2]]
            verdict = "met" if ratio >= 5 and worst == 0 else "NOT met"
            print(
                f"target >= 5x with 0 stale reads, {name}: {ratio:.2f}x, {worst} stale: {verdict}"
            )
    finally:
        for engine in engines.values():
            await engine.dispose()
        for cache in caches:
            await cache.close()
        async with admin.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


if __name__ == "__main__":
    asyncio.run(main())
