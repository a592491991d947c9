"""``@cache.cached``: cache a sync or async function's results through the engine.

The hot path is a memo from the call's raw arguments to the memory tier's own
``Entry`` object: one dict lookup, one deadline compare, one counter, one LRU
touch. The stable string key (template or digest) is built only on the slow
path. Invalidation still reaches the memo: the memory tier kills an entry
(deadline = -inf) whenever it drops it, for any reason, so a memoized
reference to it stops serving at once.

Like ``functools.lru_cache(typed=False)``, arguments that are equal and hash
alike share the memo (``f(1)`` and ``f(1.0)``).

Freshness options live off the hot path: ``lock=`` is resolved on the slow
path, ``refresh_every=`` runs a background loop over the memo (an entry still
memoized and alive was read since it was last loaded: that is what "hot"
means here), and ``warm=`` only registers argument sets for ``cache.warm()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .core.durations import check_optional
from .core.entry import Entry
from .core.errors import ConfigError
from .core.keys import CallKeyBuilder
from .engine import signals
from .engine.cache import Cache
from .engine.lock import FleetLock, SyncFleetLock
from .engine.policy import UNSET, EntryPolicy
from .engine.signals import send as _send
from .engine.stats import FunctionStats

F = TypeVar("F", bound=Callable[..., Any])
_KW = object()  # separates positional from keyword arguments in a memo key
_REFRESH_CONCURRENCY = 8
log = logging.getLogger("stratacache")


class _Memo:
    """Raw call arguments → (memory-tier entry, full key), bounded and self-cleaning."""

    __slots__ = ("data", "limit", "top")

    def __init__(self, cache: Cache) -> None:
        top: Any = cache.tiers.top
        self.top = top if callable(getattr(top, "peek", None)) and hasattr(top, "touch") else None
        self.limit = 2 * int(getattr(top, "maxsize", 10_000))
        self.data: dict[Any, tuple[Entry, str]] = {}

    def remember(self, call_key: Any, fkey: str, trusted: bool) -> None:
        """Memoize the memory tier's entry for ``fkey`` (only while local tiers are trusted)."""
        if call_key is None or self.top is None or not trusted:
            return
        entry = self.top.peek(fkey)
        if entry is None or not entry.alive:
            return
        data = self.data
        if len(data) >= self.limit:
            for k in [k for k, (e, _) in list(data.items()) if not e.alive]:
                del data[k]
            if len(data) >= self.limit:
                data.clear()
        with contextlib.suppress(TypeError):
            data[call_key] = (entry, fkey)


def cached(
    cache: Cache,
    *,
    ttl: Any = UNSET,
    key: str | Callable[..., str] | None = None,
    tags: Sequence[str] = (),
    refresh_after: Any = UNSET,
    stale_ttl: Any = UNSET,
    cache_none: bool | None = None,
    lock: FleetLock | bool | None = None,
    refresh_every: float | None = None,
    warm: Any = None,
) -> Callable[[F], F]:
    """Cache calls of the decorated function.

    Args:
        cache: the cache to store results in.
        ttl: seconds a result lives (default: the cache's ``default_ttl``).
        key: a template such as ``"user:{user_id}"`` filled from the arguments, or a callable
            taking the function's arguments; default: ``module.qualname:`` + argument digest.
        tags: tag templates, e.g. ``["user:{user_id}"]``, for ``cache.invalidate(tags=...)``.
        refresh_after: soft TTL: past it the cached value is served while it is recomputed.
        stale_ttl: seconds a result is kept past ``ttl`` to serve if the function raises
            (0 or None: off). Every duration is checked at decoration (``ConfigError``).
        cache_none: whether a ``None`` result is cached (default: the cache's setting).
        lock: on a miss, run the function once across the fleet: ``True`` for the cache's
            fleet lock (``cache.readthrough.lock``), or a ``FleetLock`` such as ``RedisLock``.
        refresh_every: seconds between background recomputations of the function's hot
            entries (those read since they were last loaded), so they never expire in use.
        warm: argument sets for ``cache.warm()``: an iterable (or a callable returning an
            iterable or async iterable) whose items are a tuple of positional arguments, a
            mapping of keyword arguments, or a single argument.

    The wrapped function gains ``invalidate(*args, **kwargs)``, ``refresh(*args, **kwargs)``,
    ``key(*args, **kwargs)``, ``refresh_hot()`` and ``stats``.
    """
    if isinstance(tags, str):
        raise ConfigError("tags must be a list of templates, not a single string")
    refresh_every = check_optional("refresh_every", refresh_every)
    if lock is not None and not isinstance(lock, (bool, FleetLock)):
        raise ConfigError(f"lock must be True, False or a FleetLock, not {lock!r}")
    if lock is True:
        cache.readthrough.resolve_lock(True)  # no fleet lock to use: say so here, not per call
    policy = cache.entry_policy(ttl, refresh_after, stale_ttl, cache_none)

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise ConfigError(f"@cached needs a function, not {fn!r}")
        builder = CallKeyBuilder(fn, key, tuple(tags))
        fstats = cache.register_function(builder.name)
        memo = _Memo(cache)
        opts = _Options(lock, refresh_every)
        if inspect.iscoroutinefunction(fn):
            wrapper = _async_wrapper(fn, cache, builder, policy, fstats, memo, opts)
        else:
            wrapper = _sync_wrapper(fn, cache, builder, policy, fstats, memo, opts)
        wrapper.stats = fstats  # type: ignore[attr-defined]
        wrapper.key = lambda *a, **kw: _resolve(cache, builder, a, kw)[0]  # type: ignore[attr-defined]
        if warm is not None:
            cache.readthrough.warmers.append((wrapper, warm))
        return wrapper  # type: ignore[return-value]

    return decorate


class _Options:
    """The freshness options of one decorated function (read only on the slow path)."""

    __slots__ = ("lock", "refresh_every", "scheduler")

    def __init__(self, lock: FleetLock | bool | None, refresh_every: float | None) -> None:
        self.lock = lock
        self.refresh_every = refresh_every
        self.scheduler: Any = None  # the running refresh loop (task or thread), once started


def _calls(memo: _Memo) -> list[tuple[tuple[Any, ...], dict[str, Any], str, Entry]]:
    """The memoized calls whose entry is still alive: (args, kwargs, full key, entry)."""
    found = []
    for call_key, (entry, fkey) in list(memo.data.items()):
        if not entry.alive:
            continue
        if isinstance(call_key, tuple) and any(part is _KW for part in call_key):
            cut = next(i for i, part in enumerate(call_key) if part is _KW)
            found.append((call_key[:cut], dict(call_key[cut + 1 :]), fkey, entry))
        else:
            found.append((tuple(call_key), {}, fkey, entry))
    return found


def _resolve(
    cache: Cache, builder: CallKeyBuilder, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, tuple[str, ...]]:
    """Full key and tags of one call (the slow path's only key work)."""
    arguments = builder.bind(args, kwargs)
    return cache.full_key(builder.key(arguments, args, kwargs)), builder.tags(arguments)


def _async_wrapper(
    fn: Callable[..., Any],
    cache: Cache,
    builder: CallKeyBuilder,
    policy: EntryPolicy,
    fstats: FunctionStats,
    memo: _Memo,
    opts: _Options,
) -> Callable[..., Any]:
    lookup = memo.data.get
    now = cache.clock.time
    touch = memo.top.touch if memo.top is not None else None

    async def slow(call_key: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        await cache.start()
        fkey, tags = _resolve(cache, builder, args, kwargs)
        fleet = cache.readthrough.resolve_lock(opts.lock)
        entry = await cache.fetch(
            fkey, functools.partial(fn, *args, **kwargs), policy, tags, fstats, fleet
        )
        memo.remember(call_key, fkey, cache.tiers.local_trusted)
        if opts.refresh_every is not None and (opts.scheduler is None or opts.scheduler.done()):
            opts.scheduler = cache.spawn(schedule(opts.refresh_every))
        return entry.value

    async def refresh_hot() -> int:
        """Recompute every hot entry of this function now; returns how many were refreshed."""
        await cache.start()
        fleet = cache.readthrough.resolve_lock(opts.lock)
        gate = asyncio.Semaphore(_REFRESH_CONCURRENCY)

        async def one(args: tuple[Any, ...], kwargs: dict[str, Any], fkey: str, old: Entry) -> bool:
            async with gate:
                tags = builder.tags(builder.bind(args, kwargs))
                loader = functools.partial(fn, *args, **kwargs)
                try:
                    await cache.load(fkey, loader, policy, tags, None, fstats, fleet, old)
                except Exception as exc:
                    log.warning("stratacache: scheduled refresh of %r failed: %r", fkey, exc)
                    return False
                cache.counters.scheduled_refreshes += 1
                fstats.scheduled_refreshes += 1
                _send(signals.refresh_ahead, cache, key=fkey, reason="scheduled")
                return True

        done = await asyncio.gather(*(one(*call) for call in _calls(memo)))
        return sum(done)

    async def schedule(interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await refresh_hot()

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        call_key: Any = args if not kwargs else (*args, _KW, *kwargs.items())
        try:
            found = lookup(call_key)
        except TypeError:  # unhashable arguments: no memo, the slow path builds a digest key
            found = None
            call_key = None
        if found is not None:
            entry = found[0]
            if entry.deadline > now():
                fstats.fast_hits += 1
                try:  # noqa: SIM105 - contextlib.suppress costs more on the hot path
                    touch(found[1])  # type: ignore[misc]
                except KeyError:  # evicted by another thread since the deadline check
                    pass
                return entry.value
        return await slow(call_key, args, kwargs)

    async def invalidate(*args: Any, **kwargs: Any) -> None:
        await cache.invalidate(keys=[cache.relative_key(_resolve(cache, builder, args, kwargs)[0])])

    async def refresh(*args: Any, **kwargs: Any) -> Any:
        await cache.start()
        fkey, tags = _resolve(cache, builder, args, kwargs)
        entry = await cache.load(fkey, functools.partial(fn, *args, **kwargs), policy, tags)
        memo.remember(_safe_call_key(args, kwargs), fkey, cache.tiers.local_trusted)
        return entry.value

    wrapper.invalidate = invalidate  # type: ignore[attr-defined]
    wrapper.refresh = refresh  # type: ignore[attr-defined]
    wrapper.refresh_hot = refresh_hot  # type: ignore[attr-defined]
    return wrapper


def _sync_wrapper(
    fn: Callable[..., Any],
    cache: Cache,
    builder: CallKeyBuilder,
    policy: EntryPolicy,
    fstats: FunctionStats,
    memo: _Memo,
    opts: _Options,
) -> Callable[..., Any]:
    lookup = memo.data.get
    now = cache.clock.time
    touch = memo.top.touch if memo.top is not None else None
    if isinstance(opts.lock, FleetLock) and not isinstance(opts.lock, SyncFleetLock):
        raise ConfigError(
            f"{opts.lock!r} has no blocking methods: sync functions need e.g. RedisLock"
        )

    def slow(call_key: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        facade = cache.sync
        facade.start()
        fkey, tags = _resolve(cache, builder, args, kwargs)
        fleet = facade.resolve_lock(opts.lock)
        loader = functools.partial(fn, *args, **kwargs)
        entry = facade.fetch(fkey, loader, policy, tags, fstats, fleet)
        memo.remember(call_key, fkey, cache.tiers.local_trusted)
        if opts.refresh_every is not None and (opts.scheduler is None or opts.scheduler.is_set()):
            opts.scheduler = _start_thread(refresh_hot, opts.refresh_every)
            cache.closers.append(opts.scheduler.set)  # stops with the cache
        return entry.value

    def refresh_hot() -> int:
        """Recompute every hot entry of this function now; returns how many were refreshed."""
        facade = cache.sync
        facade.start()
        fleet = facade.resolve_lock(opts.lock)
        refreshed = 0
        for args, kwargs, fkey, old in _calls(memo):
            tags = builder.tags(builder.bind(args, kwargs))
            loader = functools.partial(fn, *args, **kwargs)
            try:
                facade.load(fkey, loader, policy, tags, None, fstats, fleet, old)
            except Exception as exc:
                log.warning("stratacache: scheduled refresh of %r failed: %r", fkey, exc)
                continue
            refreshed += 1
            cache.counters.scheduled_refreshes += 1
            fstats.scheduled_refreshes += 1
            _send(signals.refresh_ahead, cache, key=fkey, reason="scheduled")
        return refreshed

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        call_key: Any = args if not kwargs else (*args, _KW, *kwargs.items())
        try:
            found = lookup(call_key)
        except TypeError:
            found = None
            call_key = None
        if found is not None:
            entry = found[0]
            if entry.deadline > now():
                fstats.fast_hits += 1
                try:  # noqa: SIM105 - contextlib.suppress costs more on the hot path
                    touch(found[1])  # type: ignore[misc]
                except KeyError:  # evicted by another thread since the deadline check
                    pass
                return entry.value
        return slow(call_key, args, kwargs)

    def invalidate(*args: Any, **kwargs: Any) -> None:
        cache.sync.invalidate(keys=[cache.relative_key(_resolve(cache, builder, args, kwargs)[0])])

    def refresh(*args: Any, **kwargs: Any) -> Any:
        facade = cache.sync
        facade.start()
        fkey, tags = _resolve(cache, builder, args, kwargs)
        entry = facade.load(fkey, functools.partial(fn, *args, **kwargs), policy, tags)
        memo.remember(_safe_call_key(args, kwargs), fkey, cache.tiers.local_trusted)
        return entry.value

    wrapper.invalidate = invalidate  # type: ignore[attr-defined]
    wrapper.refresh = refresh  # type: ignore[attr-defined]
    wrapper.refresh_hot = refresh_hot  # type: ignore[attr-defined]
    return wrapper


def _start_thread(refresh_hot: Callable[[], int], interval: float) -> threading.Event:
    """Run ``refresh_hot`` every ``interval`` seconds on a daemon thread; set the event to stop."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                refresh_hot()
            except Exception as exc:  # keep the schedule alive
                log.warning("stratacache: scheduled refresh failed: %r", exc)

    threading.Thread(target=loop, name="stratacache-schedule", daemon=True).start()
    return stop


def _safe_call_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The memo key of a call (as the wrappers build it inline), or None when unhashable."""
    key = args if not kwargs else (*args, _KW, *kwargs.items())
    try:
        hash(key)
    except TypeError:
        return None
    return key


Cache.decorator_factory = cached
