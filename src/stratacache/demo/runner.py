"""Run the demo: the workload without a cache, then through the tiers, then each path alone.

1. *No cache*: the workload calls the source directly (same seed, same source).
2. *Cached*: the same stream through a ``@cache.cached`` function on memory →
   (Redis) → SQLite, in a fresh namespace, starting cold. Every request is
   timed and filed under the path that answered it (``tracing``).
3. *Alone*: a few requests per path, one at a time, so the cost of a path can
   be told apart from the time spent waiting for the shared event loop.

The namespace is removed from every tier at the end, Redis metadata included.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

from ..client import Cache
from ..core.errors import ConfigError
from ..core.tier import Tier
from ..tiers.memory import MemoryTier
from .tracing import JOINED, LOADER, TracedTier, mark_loader, trace, traced
from .workload import PathStats, Run, SlowSource, drive, timed, zipf_sampler

#: the no-cache pass runs at most this long: its rate is steady from the first second
BASELINE_SECONDS = 4.0
#: requests per path measured one at a time after the run
PROBES = 40
ENTRY_TTL = 300.0


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
class DemoResult:
    """What a run measured; ``report.render`` turns it into the final tables."""

    config: DemoConfig
    tiers: list[str]
    requests: int
    elapsed: float
    loader_calls: int
    paths: dict[str, PathStats]
    stats: dict[str, Any]
    seed: int = 0
    baseline: Run | None = None
    baseline_latency: PathStats = field(default_factory=PathStats)
    alone: dict[str, PathStats] = field(default_factory=dict)

    @property
    def saved(self) -> int:
        """Requests that did not call the loader."""
        return self.requests - self.loader_calls

    @property
    def rate(self) -> float:
        """Requests per second of the cached run."""
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def speedup(self) -> float | None:
        """Requests/s with the cache over requests/s without (None without a baseline)."""
        if self.baseline is None or not self.baseline.rate:
            return None
        return self.rate / self.baseline.rate

    def path_counts(self) -> dict[str, int]:
        """Requests per path, in tier order."""
        return {name: len(p.latencies) for name, p in self.paths.items()}


# -- checks before anything runs -------------------------------------------------------------------
def check_config(config: DemoConfig) -> None:
    """Refuse options the demo cannot run with, with one clear sentence (``ConfigError``)."""
    if config.keys < 1 or config.concurrency < 1 or config.memory_size < 1:
        raise ConfigError("keys, concurrency and memory-size must be at least 1")
    if config.seconds <= 0 or config.zipf <= 0 or config.delay_ms < 0:
        raise ConfigError("seconds and zipf must be positive, delay-ms at least 0")
    if config.requests is not None and config.requests < 1:
        raise ConfigError("requests must be at least 1")
    if config.sqlite_path is not None:
        _check_sqlite(config.sqlite_path)


def _check_sqlite(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigError(f"--sqlite {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise ConfigError(f"--sqlite {path}: this is a folder, give a file path")
    try:
        sqlite3.connect(path).close()
    except sqlite3.Error as exc:
        raise ConfigError(f"--sqlite {path}: cannot open it as SQLite ({exc})") from None


def _safe_url(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        parts = urlsplit(url)
        if parts.password:
            host = parts.hostname or ""
            netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
            return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        pass
    return url


async def check_redis(url: str) -> None:
    """Refuse a Redis URL that is malformed or does not answer a PING within 2 s."""
    import redis.asyncio as aioredis

    try:
        client = aioredis.from_url(url, socket_connect_timeout=2.0, socket_timeout=2.0)
    except ValueError as exc:
        raise ConfigError(f"--redis-url {_safe_url(url)}: not a Redis URL ({exc})") from None
    try:
        await client.ping()
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        raise ConfigError(
            f"cannot reach Redis at {_safe_url(url)}: {reason} (--no-redis runs without it)"
        ) from None
    finally:
        await client.aclose()


async def purge_redis(url: str, namespace: str) -> int:
    """Delete every Redis key of ``namespace`` the tiers left (counters, epochs); returns how many."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(url, socket_connect_timeout=2.0, socket_timeout=5.0)
    try:
        names = [name async for name in client.scan_iter(match=f"*{namespace}*", count=1000)]
        return int(await client.delete(*names)) if names else 0
    finally:
        await client.aclose()


# -- the run -------------------------------------------------------------------------------------
def build_tiers(config: DemoConfig, sqlite_path: str) -> list[Tier]:
    """Memory (``memory_size`` entries) → Redis when configured (30 s cap) → SQLite."""
    import stratacache as sc

    tiers: list[Tier] = [MemoryTier(maxsize=config.memory_size)]
    if config.redis_url:
        tiers.append(sc.RedisTier(url=config.redis_url, ttl=30.0))
    tiers.append(sc.SQLTier(url=f"sqlite:///{sqlite_path}"))
    return tiers


async def run_demo(config: DemoConfig, out: TextIO | None = None) -> DemoResult:
    """Run the demo described by ``config``; progress goes to ``out`` (stderr).

    Raises:
        ConfigError: an option is out of range, the SQLite path cannot be used or Redis
            cannot be reached; nothing has run yet.
    """
    check_config(config)
    if config.redis_url:
        await check_redis(config.redis_url)
    progress_out = out if out is not None else sys.stderr
    seed = config.seed if config.seed is not None else random.randrange(2**32)
    workdir = tempfile.mkdtemp(prefix="stratacache-demo-")
    try:
        cache_db = config.sqlite_path or os.path.join(workdir, "cache.db")
        source_db = os.path.join(workdir, "source.db")
        source = SlowSource(source_db, config.keys, config.delay_ms / 1e3, on_call=mark_loader)
        try:
            baseline, latency = await _baseline(config, source, seed, progress_out)
            source.calls = 0
            result = await _cached(config, cache_db, source, seed, progress_out)
        finally:
            source.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result.baseline, result.baseline_latency = baseline, latency
    return result


async def _baseline(
    config: DemoConfig, source: SlowSource, seed: int, out: TextIO
) -> tuple[Run, PathStats]:
    """The workload straight on the source."""
    latency = PathStats()
    sample = zipf_sampler(config.keys, config.zipf, random.Random(seed))
    seconds = min(config.seconds, BASELINE_SECONDS)
    done = [0]
    with _Progress(config, out, "no cache", seconds, done, lambda: ""):
        run = await drive(
            timed(source.product, latency),
            sample,
            concurrency=config.concurrency,
            seconds=seconds,
            requests=config.requests,
            done=done,
        )
    return run, latency


async def _cached(
    config: DemoConfig, cache_db: str, source: SlowSource, seed: int, out: TextIO
) -> DemoResult:
    tiers = [trace(t) for t in build_tiers(config, cache_db)]
    namespace = "demo" + uuid.uuid4().hex[:12]  # a fresh namespace: every run starts cold
    # one process: no other process's local copies to keep coherent, so no bus
    cache = Cache(tiers, namespace=namespace, default_ttl=ENTRY_TTL, bus=False)
    get_product = cache.cached(key="product:{product_id}", ttl=ENTRY_TTL)(source.product)
    sample = zipf_sampler(config.keys, config.zipf, random.Random(seed))
    paths = {t.name: PathStats() for t in tiers}
    paths[LOADER] = PathStats()
    paths[JOINED] = PathStats()
    alone = {name: PathStats() for name in paths}
    done = [0]

    def hit_rate() -> str:
        top = next(iter(cache.stats()["tiers"].values()))
        return f"L1 hit rate {top['hit_rate']:6.1%}  loader calls {source.calls:,}"

    try:
        async with cache:
            with _Progress(config, out, "cached", config.seconds, done, hit_rate):
                run = await drive(
                    traced(get_product, paths, tiers[0].name),
                    sample,
                    concurrency=config.concurrency,
                    seconds=config.seconds,
                    requests=config.requests,
                    done=done,
                )
            stats, loader_calls = dict(cache.stats()), source.calls
            await _alone(get_product, tiers, alone, config.keys)
            await cache.clear()
    finally:
        if config.redis_url:
            try:
                await purge_redis(config.redis_url, namespace)
            except Exception as exc:  # Redis went away meanwhile: say so, keep the report
                out.write(f"could not remove the demo's keys ({namespace}) from Redis: {exc}\n")
    return DemoResult(
        config=config,
        tiers=[t.name for t in tiers],
        requests=run.requests,
        elapsed=run.elapsed,
        loader_calls=loader_calls,
        paths=paths,
        stats=stats,
        seed=seed,
        alone=alone,
    )


async def _alone(
    get_product: Any, tiers: list[TracedTier], alone: dict[str, PathStats], keys: int
) -> None:
    """Time each path with one request at a time (the path's own cost, no queueing)."""
    request = traced(get_product, alone, tiers[0].name)
    ids = range(min(PROBES, keys))
    for product_id in ids:  # the L1 path: read twice, time the second
        await get_product(product_id)
        await request(product_id)
    for index in range(1, len(tiers)):  # tier ``index``: drop the copies above it first
        for product_id in ids:
            await get_product(product_id)
            fkey = get_product.key(product_id)
            for upper in tiers[:index]:
                await upper.inner.delete_many([fkey])
            await request(product_id)
    for product_id in ids:  # a miss: the key invalidated everywhere, through the engine
        await get_product.invalidate(product_id)
        await request(product_id)


class _Progress:
    """Rewrite one progress line on ``out`` (a line per 2 s when it is not a terminal)."""

    def __init__(
        self,
        config: DemoConfig,
        out: TextIO,
        label: str,
        seconds: float,
        done: list[int],
        extra: Callable[[], str],
    ) -> None:
        self._on = config.progress
        self._out, self._label, self._seconds = out, label, seconds
        self._done, self._extra = done, extra
        self._task: asyncio.Task[None] | None = None

    def __enter__(self) -> _Progress:
        if self._on:
            self._task = asyncio.ensure_future(self._loop())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            if self._out.isatty():
                self._out.write("\n")
                self._out.flush()

    async def _loop(self) -> None:
        tty = self._out.isatty()
        interval = 0.25 if tty else 2.0
        started = time.perf_counter()
        while True:
            await asyncio.sleep(interval)
            elapsed = time.perf_counter() - started
            done = self._done[0]
            line = (
                f"[{self._label:>8} {elapsed:5.1f}s/{self._seconds:.0f}s] {done:>9,} requests "
                f"{done / elapsed:>9,.0f}/s  {self._extra()}"
            )
            self._out.write(("\r" + line) if tty else (line + "\n"))
            self._out.flush()


__all__ = ["DemoConfig", "DemoResult", "build_tiers", "check_config", "check_redis", "run_demo"]
