"""Pre-warming: fill the tiers before callers ask, with a concurrency limit and progress.

A warmer is a function (usually ``@cache.cached``) plus the argument sets to
call it with: an iterable, an async iterable, or a callable returning either.
``await cache.warm()`` calls every warmer's function once per argument set,
at most ``concurrency`` at a time, so a cached function goes through the
read-through (a value already in Redis is only copied into L1; a missing one
is loaded once, fleet lock included). ``from_hot=True`` also copies the
fleet's hot keys (published by ``stratacache.HotKeys``) into this process's
L1, which is how a freshly started process starts warm.

Register warmers with ``@cache.cached(warm=[...])`` or ``register(cache, fn, args)``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .core.errors import ConfigError
from .engine import signals
from .engine.cache import Cache
from .engine.signals import send as _send

log = logging.getLogger("stratacache")
_MAX_ERRORS = 100


@dataclass(slots=True)
class WarmProgress:
    """Where a ``warm()`` run stands; handed to the progress callback after every item."""

    done: int = 0
    warmed: int = 0
    failed: int = 0
    current: str = ""  # the function (or "hot") just handled


@dataclass(slots=True)
class WarmSummary:
    """The outcome of one ``warm()``: counts, seconds taken, and the first errors."""

    warmed: int = 0
    failed: int = 0
    took: float = 0.0
    errors: list[tuple[str, Any, BaseException]] = field(default_factory=list)


Progress = Callable[[WarmProgress], Any]


def register(cache: Cache, fn: Callable[..., Any], args: Any) -> None:
    """Warm ``fn`` with each argument set of ``args`` on ``cache.warm()``.

    ``args``: an iterable, async iterable, or callable returning one; each item is a tuple
    of positional arguments, a mapping of keyword arguments, or a single argument.
    """
    if not callable(fn):
        raise ConfigError(f"a warmer needs a callable, not {fn!r}")
    cache.warmers.append((fn, args))


async def warm(
    cache: Cache,
    *,
    concurrency: int = 16,
    progress: Progress | None = None,
    from_hot: bool = False,
    hot_limit: int = 1000,
    warmers: Iterable[tuple[Callable[..., Any], Any]] | None = None,
) -> WarmSummary:
    """Run the registered warmers (and, with ``from_hot``, copy the fleet's hot keys into L1).

    Args:
        cache: the cache to warm.
        concurrency: at most this many calls at once.
        progress: called (sync or async) with a ``WarmProgress`` after every item.
        from_hot: also copy the fleet's hottest keys from the shared tiers into local ones.
        hot_limit: at most this many hot keys.
        warmers: ``(fn, args)`` pairs to run instead of the registered ones.
    """
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, not {concurrency!r}")
    await cache.start()
    started = time.perf_counter()
    state = WarmProgress()
    summary = WarmSummary()
    gate = asyncio.Semaphore(concurrency)
    pending: set[asyncio.Task[None]] = set()

    async def report(name: str, item: Any, error: BaseException | None, key: str) -> None:
        state.done += 1
        state.current = name
        if error is None:
            state.warmed += 1
            cache.counters.warmed += 1
        else:
            state.failed += 1
            cache.counters.warm_failed += 1
            if len(summary.errors) < _MAX_ERRORS:
                summary.errors.append((name, item, error))
            log.warning("stratacache: warming %s(%r) failed: %r", name, item, error)
        _send(signals.warmed, cache, key=key, ok=error is None, error=error)
        if progress is not None:
            outcome = progress(state)
            if inspect.isawaitable(outcome):
                await outcome

    async def run(name: str, item: Any, call: Callable[[], Awaitable[Any]]) -> None:
        try:
            error: BaseException | None = None
            try:
                await call()
            except Exception as exc:
                error = exc
            await report(name, item, error, name)
        finally:
            gate.release()

    async def submit(name: str, item: Any, call: Callable[[], Awaitable[Any]]) -> None:
        await gate.acquire()  # back-pressure: an endless source is consumed as capacity frees
        task = asyncio.ensure_future(run(name, item, call))
        pending.add(task)
        task.add_done_callback(pending.discard)

    for fn, source in list(cache.warmers if warmers is None else warmers):
        name = getattr(fn, "__qualname__", repr(fn))
        async for item in _items(source):
            args, kwargs = _split(item)
            await submit(name, item, _caller(fn, args, kwargs))

    if from_hot and cache.hot is not None:
        for fkey in await cache.hot.fleet_hot(cache.namespace, hot_limit):
            await submit("hot", fkey, _backfiller(cache, fkey))

    if pending:
        await asyncio.gather(*pending)
    summary.warmed, summary.failed = state.warmed, state.failed
    summary.took = time.perf_counter() - started
    _send(signals.warm_done, cache, warmed=summary.warmed, failed=summary.failed, took=summary.took)
    return summary


async def warm_at_start(cache: Cache, *, background: bool = True, **options: Any) -> None:
    """Start ``cache`` and warm it: awaited, or (``background``) while callers already use it."""
    await cache.start()
    if background:
        cache.spawn(warm(cache, **options))
    else:
        await warm(cache, **options)


def _caller(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    async def call() -> None:
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            await result

    return call


def _backfiller(cache: Cache, fkey: str) -> Any:
    async def call() -> None:
        if await cache.backfill(fkey) is None:
            raise LookupError(f"{fkey!r} is no longer in any shared tier")

    return call


async def _items(source: Any) -> AsyncIterator[Any]:
    """The items of an iterable, async iterable, or a callable returning either."""
    if callable(source) and not hasattr(source, "__iter__") and not hasattr(source, "__aiter__"):
        source = source()
        if inspect.isawaitable(source):
            source = await source
    if hasattr(source, "__aiter__"):
        async for item in source:
            yield item
    else:
        for item in source:
            yield item


def _split(item: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(item, tuple):
        return item, {}
    if isinstance(item, Mapping):
        return (), dict(item)
    return (item,), {}


__all__ = ["WarmProgress", "WarmSummary", "register", "warm", "warm_at_start"]
