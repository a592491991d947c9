"""``stratacache demo``: a realistic read workload through the tiers, with a report.

A Zipf-distributed key stream (a few hot products, a long tail) is read by
concurrent asyncio workers through a ``@cache.cached`` function whose loader
is a deliberately slow data source: a SQLite table behind an artificial
network delay. The tiers are memory + SQLite by default, with Redis between
them when a Redis URL is given. The L1 is deliberately smaller than the key
space and TTLs shrink towards the top, so every path shows up: L1 hits, lower
tier hits with backfill, and misses that call the loader once per key.

Each request is timed and classified by the path that answered it; the
classification comes from a thin tracing wrapper around each tier and the
loader, so the numbers are those of the real engine.
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import itertools
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Callable, Coroutine, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from .core.entry import Entry
from .core.tier import Tier, TierContext
from .engine.cache import Cache
from .tiers.memory import MemoryTier

LOADER = "loader"
JOINED = "joined load"
L1 = "L1"


@dataclass
class DemoConfig:
    """Knobs of one demo run (the CLI's options)."""

    keys: int = 10_000
    requests: int | None = None  # None: run for ``seconds``
    seconds: float = 12.0
    zipf: float = 1.1
    concurrency: int = 16
    delay_ms: float = 5.0
    memory_size: int = 1_000
    redis_url: str | None = None
    sqlite_path: str | None = None
    seed: int | None = None
    progress: bool = True


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
class DemoResult:
    """What a run measured; ``render`` turns it into the final table."""

    config: DemoConfig
    tiers: list[str]
    requests: int
    elapsed: float
    loader_calls: int
    paths: dict[str, PathStats]
    stats: dict[str, Any]

    @property
    def saved(self) -> int:
        """Requests that did not call the loader."""
        return self.requests - self.loader_calls

    def path_counts(self) -> dict[str, int]:
        """Requests per path, in tier order."""
        return {name: len(p.latencies) for name, p in self.paths.items()}


class SlowSource:
    """Product rows in SQLite behind an artificial delay: the thing worth caching."""

    def __init__(self, path: str, rows: int, delay: float) -> None:
        self.delay = delay
        self.calls = 0
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
        _mark(LOADER)
        await asyncio.sleep(self.delay)
        row = self._db.execute(
            "SELECT id, name, price, stock FROM products WHERE id = ?", (product_id,)
        ).fetchone()
        return {"id": row[0], "name": row[1], "price": row[2], "stock": row[3]}

    def close(self) -> None:
        self._db.close()


# -- request tracing -----------------------------------------------------------------------------
class _Trace:
    """Which path answered one request: a tier's name, the loader, or a joined load."""

    __slots__ = ("answered", "missed", "suspended")

    def __init__(self) -> None:
        self.answered: str | None = None
        self.missed: set[str] = set()
        self.suspended = False


class _Resume:
    """Await the rest of a coroutine that was stepped by hand and suspended on ``pending``."""

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, None, Any]:
        try:
            yield self.pending  # the running task waits on it, as if the coroutine had yielded it
        except BaseException:
            self.coro.close()
            raise
        return (yield from self.coro.__await__())


#: the trace of the request running in the current task; tasks the engine spawns for a load
#: inherit it, so the loader marks the request that started it
_current: contextvars.ContextVar[_Trace | None] = contextvars.ContextVar(
    "stratacache_demo_request", default=None
)


def _mark(path: str) -> None:
    trace = _current.get()
    if trace is not None and trace.answered is None:
        trace.answered = path


class TracedTier:
    """Delegates to a tier and notes, for the current request, that this tier answered."""

    def __init__(self, tier: Tier) -> None:
        self._tier = tier
        self.name = tier.name
        self.ttl = tier.ttl
        self.shared = tier.shared

    def __getattr__(self, name: str) -> Any:  # peek/touch/evictions/... of the wrapped tier
        return getattr(self._tier, name)

    async def start(self, context: TierContext) -> None:
        await self._tier.start(context)

    async def close(self) -> None:
        await self._tier.close()

    async def get(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
        entry = await self._tier.get(key, tags)
        trace = _current.get()
        if trace is not None:
            if entry is None:
                trace.missed.add(self.name)
            else:
                # a hit in a tier that already missed for this request is the re-read after
                # waiting on another request's load (single-flight)
                _mark(JOINED if self.name in trace.missed else self.name)
        return entry

    async def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        return await self._tier.get_many(keys)

    async def lease(self, key: str, tags: Sequence[str]) -> object | None:
        return await self._tier.lease(key, tags)

    async def set(self, key: str, entry: Entry, lease: object | None = None) -> bool:
        return await self._tier.set(key, entry, lease)

    async def set_many(self, entries: Mapping[str, Entry]) -> None:
        await self._tier.set_many(entries)

    async def delete_many(self, keys: Sequence[str]) -> int:
        return await self._tier.delete_many(keys)

    async def delete_prefix(self, prefix: str) -> int:
        return await self._tier.delete_prefix(prefix)

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        await self._tier.invalidate_tags(tags)

    async def clear(self) -> None:
        await self._tier.clear()


class _SizedTracedTier(TracedTier):
    """A traced tier that also reports its size (the engine shows it as ``entries``)."""

    def __len__(self) -> int:
        return len(self._tier)  # type: ignore[arg-type]


def trace(tier: Tier) -> TracedTier:
    """Wrap ``tier`` for request tracing, keeping ``len()`` only where the tier has it."""
    return _SizedTracedTier(tier) if hasattr(tier, "__len__") else TracedTier(tier)


# -- the workload --------------------------------------------------------------------------------
def zipf_sampler(n: int, s: float, rng: random.Random) -> Callable[[int], list[int]]:
    """``sample(k)``: k key indices in [0, n) with P(i) proportional to 1 / (i + 1) ** s."""
    weights = [1.0 / (i + 1) ** s for i in range(n)]
    cumulative = list(itertools.accumulate(weights))
    total = cumulative[-1]
    random_ = rng.random

    def sample(k: int) -> list[int]:
        return [bisect.bisect(cumulative, random_() * total, hi=n - 1) for _ in range(k)]

    return sample


def build_tiers(config: DemoConfig, sqlite_path: str) -> list[Tier]:
    """Memory (small, short TTL) → Redis when configured (medium TTL) → SQLite (long TTL)."""
    import stratacache as sc

    tiers: list[Tier] = [MemoryTier(maxsize=config.memory_size, ttl=2.0)]
    if config.redis_url:
        tiers.append(sc.RedisTier(url=config.redis_url, ttl=5.0))
    tiers.append(sc.SQLTier(url=f"sqlite:///{sqlite_path}"))
    return tiers


async def run_demo(config: DemoConfig, out: TextIO | None = None) -> DemoResult:
    """Run the workload described by ``config``; progress goes to ``out`` (stderr)."""
    progress_out = out if out is not None else sys.stderr
    workdir = tempfile.mkdtemp(prefix="stratacache-demo-")
    try:
        cache_db = config.sqlite_path or os.path.join(workdir, "cache.db")
        source = SlowSource(os.path.join(workdir, "source.db"), config.keys, config.delay_ms / 1e3)
        try:
            return await _run(config, cache_db, source, progress_out)
        finally:
            source.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _run(config: DemoConfig, cache_db: str, source: SlowSource, out: TextIO) -> DemoResult:
    tiers = [trace(t) for t in build_tiers(config, cache_db)]
    namespace = "demo" + uuid.uuid4().hex[:8]  # a fresh namespace: every run starts cold
    cache = Cache(tiers, namespace=namespace, default_ttl=60.0)
    get_product = cache.cached(key="product:{product_id}", ttl=60.0)(source.product)
    rng = random.Random(config.seed)
    sample = zipf_sampler(config.keys, config.zipf, rng)
    paths: dict[str, PathStats] = {t.name: PathStats() for t in tiers}
    paths[LOADER] = PathStats()
    paths[JOINED] = PathStats()
    l1_name = tiers[0].name
    budget = [config.requests if config.requests is not None else -1]
    done = [0]
    deadline = time.perf_counter() + config.seconds

    async def worker() -> None:
        clock = time.perf_counter_ns
        while time.perf_counter() < deadline and budget[0] != 0:
            for product_id in sample(256):
                if budget[0] == 0 or time.perf_counter() >= deadline:
                    return
                budget[0] -= 1
                trace = _Trace()
                token = _current.set(trace)
                started = clock()
                call = get_product(product_id)
                try:  # step the call by hand to learn whether it ever waited
                    pending = call.send(None)
                except StopIteration:
                    pass
                else:
                    trace.suspended = True
                    await _Resume(call, pending)
                took = clock() - started
                _current.reset(token)
                paths[_classify(trace, l1_name)].latencies.append(took)
                done[0] += 1
            await asyncio.sleep(0)  # let the other workers and the progress line run

    started = time.perf_counter()
    async with cache:
        reporter = asyncio.ensure_future(_report(config, cache, source, done, started, out))
        try:
            await asyncio.gather(*(worker() for _ in range(config.concurrency)))
        finally:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
        elapsed = time.perf_counter() - started
        stats = cache.stats()
        await cache.clear()
    if config.progress and out.isatty():
        out.write("\n")
        out.flush()
    return DemoResult(
        config=config,
        tiers=[t.name for t in tiers],
        requests=done[0],
        elapsed=elapsed,
        loader_calls=source.calls,
        paths=paths,
        stats=stats,
    )


def _classify(trace: _Trace, l1_name: str) -> str:
    """The path that answered a request, from its trace."""
    if trace.answered is not None:
        return trace.answered
    # no tier answered this request's own reads and it ran no loader: either it never waited
    # (the decorator's memo fast path: an L1 hit), or it waited on a read or a load another
    # request had already started for the same key (the engine coalesces both)
    return JOINED if trace.suspended or trace.missed else l1_name


async def _report(
    config: DemoConfig, cache: Cache, source: SlowSource, done: list[int], t0: float, out: TextIO
) -> None:
    """Rewrite one progress line on stderr (a line per 2 s when stderr is not a terminal)."""
    if not config.progress:
        return
    tty = out.isatty()
    interval = 0.25 if tty else 2.0
    while True:
        await asyncio.sleep(interval)
        elapsed = time.perf_counter() - t0
        top = next(iter(cache.stats()["tiers"].values()))
        line = (
            f"[{elapsed:5.1f}s/{config.seconds:.0f}s] {done[0]:>9,} requests "
            f"{done[0] / elapsed:>9,.0f}/s  L1 hit rate {top['hit_rate']:6.1%}  "
            f"loader calls {source.calls:,}"
        )
        out.write(("\r" + line) if tty else (line + "\n"))
        out.flush()


# -- the report ----------------------------------------------------------------------------------
def render(result: DemoResult) -> str:
    """The final table: hit rate per tier, loader calls saved, p50/p99 per path."""
    cfg = result.config
    lines = [
        f"stratacache demo: {result.requests:,} requests over {cfg.keys:,} keys "
        f"(Zipf s={cfg.zipf}), {cfg.concurrency} concurrent workers, "
        f"source delay {cfg.delay_ms:g} ms, {result.elapsed:.1f} s",
        f"tiers: {' -> '.join(result.tiers)}",
        "",
        f"{'tier':<10} {'hits':>10} {'misses':>10} {'hit rate':>9} {'sets':>9} {'evictions':>9}",
    ]
    for name, data in result.stats["tiers"].items():
        lines.append(
            f"{name:<10} {data['hits']:>10,} {data['misses']:>10,} {data['hit_rate']:>9.1%} "
            f"{data['sets']:>9,} {data.get('evictions', 0):>9,}"
        )
    saved = result.saved
    share = saved / result.requests if result.requests else 0.0
    engine = result.stats["engine"]
    lines += [
        "",
        f"loader calls: {result.loader_calls:,} for {result.requests:,} requests "
        f"-> {saved:,} calls saved ({share:.1%}), "
        f"~{saved * cfg.delay_ms / 1000:,.1f} s of source time avoided",
        f"  {engine['coalesced']:,} callers joined a load already in flight, "
        f"{engine['background_refreshes']:,} background (early) refreshes",
        "",
        f"{'path':<22} {'requests':>10} {'share':>7} {'p50 us':>10} {'p99 us':>10}",
    ]
    labels = _path_labels(result.tiers)
    for name, stats in result.paths.items():
        count = len(stats.latencies)
        if not count and name == JOINED:
            continue
        lines.append(
            f"{labels.get(name, name):<22} {count:>10,} "
            f"{count / result.requests if result.requests else 0:>7.1%} "
            f"{stats.percentile(0.50):>10,.1f} {stats.percentile(0.99):>10,.1f}"
        )
    return "\n".join(lines) + "\n"


def _path_labels(tiers: Sequence[str]) -> dict[str, str]:
    labels = {name: f"L{i + 1} hit ({name})" for i, name in enumerate(tiers)}
    labels[LOADER] = "miss -> loader"
    labels[JOINED] = "joined in-flight call"
    return labels


def main(config: DemoConfig) -> DemoResult:
    """Run the demo and print the table on stdout."""
    result = asyncio.run(run_demo(config))
    sys.stdout.write(render(result))
    return result


__all__ = ["DemoConfig", "DemoResult", "SlowSource", "TracedTier", "render", "run_demo"]
