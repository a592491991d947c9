"""The demo's workload: a slow data source, a Zipf key stream, and concurrent workers.

Shared by ``stratacache demo`` and ``benchmarks/bench_embedded.py`` so that
both measure the same thing: ``concurrency`` asyncio workers, each taking the
next product id from one seeded Zipf stream and awaiting one request.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
import sqlite3
import time
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Request = Callable[[int], Awaitable[Any]]


class SlowSource:
    """Product rows in SQLite behind an artificial delay: the thing worth caching.

    Args:
        path: SQLite file to (re)create the ``products`` table in.
        rows: number of products (ids ``0 .. rows - 1``).
        delay: seconds awaited before each read (a network round trip).
        on_call: called before each read (the demo marks the request that ran it).
    """

    def __init__(
        self, path: str, rows: int, delay: float, on_call: Callable[[], None] | None = None
    ) -> None:
        self.delay = delay
        self.calls = 0
        self._on_call = on_call
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("DROP TABLE IF EXISTS products")
        self._db.execute(
            "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, price REAL, stock INTEGER)"
        )
        rng = random.Random(rows)
        self._db.executemany(
            "INSERT INTO products VALUES (?, ?, ?, ?)",
            (
                (i, f"product-{i}", round(rng.uniform(1, 500), 2), rng.randrange(1000))
                for i in range(rows)
            ),
        )
        self._db.commit()

    async def product(self, product_id: int) -> dict[str, Any]:
        """One row as a dict, after the simulated round trip."""
        self.calls += 1
        if self._on_call is not None:
            self._on_call()
        await asyncio.sleep(self.delay)
        row = self._db.execute(
            "SELECT id, name, price, stock FROM products WHERE id = ?", (product_id,)
        ).fetchone()
        return {"id": row[0], "name": row[1], "price": row[2], "stock": row[3]}

    def close(self) -> None:
        self._db.close()


def zipf_sampler(n: int, s: float, rng: random.Random) -> Callable[[int], list[int]]:
    """``sample(k)``: k key indices in [0, n) with P(i) proportional to 1 / (i + 1) ** s."""
    weights = [1.0 / (i + 1) ** s for i in range(n)]
    cumulative = list(itertools.accumulate(weights))
    total = cumulative[-1]
    random_ = rng.random

    def sample(k: int) -> list[int]:
        return [bisect.bisect(cumulative, random_() * total, hi=n - 1) for _ in range(k)]

    return sample


@dataclass
class PathStats:
    """Latencies (ns) of the requests answered by one path."""

    latencies: array[int] = field(default_factory=lambda: array("q"))

    def percentile(self, q: float) -> float:
        """The ``q``-quantile in microseconds (nearest rank), 0 when empty."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
        return ordered[index] / 1000.0


@dataclass
class Run:
    """What one pass of the workload did."""

    requests: int
    elapsed: float  # seconds

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0


async def drive(
    request: Request,
    sample: Callable[[int], list[int]],
    *,
    concurrency: int,
    seconds: float,
    requests: int | None = None,
    done: list[int] | None = None,
) -> Run:
    """Run ``request(product_id)`` from ``concurrency`` workers until time or budget runs out.

    Args:
        request: awaited once per request; it does its own timing and bookkeeping.
        sample: the id stream (``zipf_sampler``), shared by the workers in draw order.
        concurrency: number of workers.
        seconds: wall-clock limit.
        requests: request budget (None: only the time limit).
        done: a one-item counter updated as requests finish (for a progress line).

    Returns:
        The number of requests completed and the wall time they took.
    """
    budget = [requests if requests is not None else -1]
    counter = done if done is not None else [0]
    first = counter[0]
    started = time.perf_counter()
    deadline = started + seconds
    clock = time.perf_counter

    async def worker() -> None:
        while True:
            for product_id in sample(64):
                if budget[0] == 0 or clock() >= deadline:
                    return
                budget[0] -= 1
                await request(product_id)
                counter[0] += 1
            await asyncio.sleep(0)  # let the other workers and the progress line run

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(counter[0] - first, time.perf_counter() - started)


def timed(request: Request, stats: PathStats) -> Request:
    """``request`` with each call's latency appended to ``stats``."""
    clock = time.perf_counter_ns
    append = stats.latencies.append

    async def run(product_id: int) -> None:
        started = clock()
        await request(product_id)
        append(clock() - started)

    return run


__all__ = ["PathStats", "Run", "SlowSource", "drive", "timed", "zipf_sampler"]
