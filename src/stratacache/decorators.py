"""``@cache.cached``: cache a sync or async function's results through the engine.

The hot path is a memo from the call's raw arguments to the memory tier's own
``Entry`` object: one dict lookup, one deadline compare, one counter, one LRU
touch, compiled in the function's own shape (``core.hitpath``). The stable
string key (template or digest) is built only on the slow path. Invalidation still reaches the memo: the memory tier kills an entry
(deadline = -inf) whenever it drops it, for any reason, so a memoized
reference to it stops serving at once.

"The same call" is one rule for the memo and the shared key: with an
automatic key, equal arguments (``f(1)``, ``f(1.0)``, ``f(True)``, as with
``functools.lru_cache``) are one call in the memo and one key in every tier
and process; with a template or callable key, the rendered key decides and
the memo only answers calls with arguments of the same types. The memo holds
no argument beyond its entry's life and never holds an instance strongly
(see ``core.memo``).

Freshness options live off the hot path: ``lock=`` is resolved on the slow
path, ``refresh_every=`` runs a background loop over the memo (an entry still
memoized and alive was read since it was last loaded: that is what "hot"
means here), and ``warm=`` only registers argument sets for ``cache.warm()``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import weakref
from collections.abc import Callable, Sequence
from typing import Any, cast

from .core.binding import CachedMember, defined_in_class
from .core.durations import check_optional
from .core.entry import Entry
from .core.errors import ConfigError
from .core.fleet import FleetLock, SyncFleetLock
from .core.hitpath import compile_hit_path, single_parameter
from .core.keys import KEY_SPACE_ATTRIBUTE, CallKeyBuilder
from .core.keyspace import KeySpaces
from .core.memo import CallMemo, hashable_call_key
from .core.sentinel import UNSET, Unset
from .engine import signals
from .engine.cache import Cache
from .engine.decorated import CacheDecorator
from .engine.policy import EntryPolicy, store_predicate
from .engine.signals import send as _send
from .engine.stats import FunctionStats
from .schedule import RefreshSchedule

_REFRESH_CONCURRENCY = 8
log = logging.getLogger("stratacache")


def cached(
    cache: Cache,
    *,
    ttl: float | Unset | None = UNSET,
    key: str | Callable[..., str] | None = None,
    tags: Sequence[str] = (),
    refresh_after: float | Unset | None = UNSET,
    stale_ttl: float | Unset | None = UNSET,
    cache_none: bool | None = None,
    condition: Callable[[Any], bool] | None = None,
    unless: Callable[[Any], bool] | None = None,
    lock: FleetLock | bool | None = None,
    refresh_every: float | None = None,
    warm: Any = None,
    name: str | None = None,
    ignore: Sequence[str] = (),
) -> CacheDecorator:
    """Cache calls of the decorated function.

    Args:
        cache: the cache to store results in.
        ttl: seconds a result lives (default: the cache's ``default_ttl``).
        key: a template such as ``"user:{user_id}"`` or ``"tariff:{self.id}:{units}"``
            filled from the arguments, or a callable taking the function's arguments;
            default: ``module.qualname:`` + a digest of the whole call (every argument,
            ``self``/``cls`` included; see "What goes into a key" in the docs). A key
            longer than the cache's ``max_key_length`` is shortened by a digest.
        tags: tag templates, e.g. ``["user:{user_id}"]``, for ``cache.invalidate(tags=...)``.
        refresh_after: soft TTL: past it the cached value is served while it is recomputed.
        stale_ttl: seconds a result is kept past ``ttl`` to serve if the function raises
            (0 or None: off). Every duration is checked at decoration (``ConfigError``).
        cache_none: whether a ``None`` result is cached (default: the cache's setting).
        condition / unless: predicates on the result: it is cached only when ``condition``
            returns true and ``unless`` returns false (e.g. ``unless=lambda r: r is None``);
            the caller gets the result either way.
        lock: on a miss, run the function once across the fleet: ``True`` for the cache's
            fleet lock (``Cache(lock=...)``), or a ``FleetLock`` such as ``RedisLock``.
        refresh_every: seconds between background recomputations of the function's hot
            entries (those read since they were last loaded), so they never expire in use.
        warm: argument sets for ``cache.warm()``: an iterable (or a callable returning an
            iterable or async iterable) whose items are a tuple of positional arguments, a
            mapping of keyword arguments, or a single argument.
        name: the key space of automatic keys instead of ``module.qualname``: needed when
            two distinct functions share a qualified name and nothing stable tells them apart.
        ignore: parameter names an automatic key leaves out, e.g. ``("self",)`` when the
            result does not depend on the instance.

    Raises:
        ConfigError: at decoration: a generator or async generator function; ``ignore``
            naming unknown parameters; a second function taking an existing key space.
        CacheKeyError: at the call: an argument with no stable representation (the
            message says how to key it).

    Returns:
        A decorator. The decorated function keeps its parameters and return type and gains
        ``invalidate(*args, **kwargs)``, ``refresh(*args, **kwargs)``, ``key(*args, **kwargs)``,
        ``refresh_hot()`` and ``stats`` (typed as ``CachedFunction`` / ``AsyncCachedFunction``
        in ``stratacache.engine.decorated``; for ``async def`` functions the methods but ``key``
        are coroutines).
    """
    if isinstance(tags, str):
        raise ConfigError("tags must be a list of templates, not a single string")
    if isinstance(ignore, str):
        raise ConfigError(f"ignore must be a tuple of parameter names, e.g. ({ignore!r},)")
    refresh_every = check_optional("refresh_every", refresh_every)
    if lock is not None and not isinstance(lock, (bool, FleetLock)):
        raise ConfigError(f"lock must be True, False or a FleetLock, not {lock!r}")
    if lock is True:
        cache.resolve_lock(True)  # no fleet lock to use: say so here, not per call
    store_if = store_predicate(condition, unless)
    policy = cache.entry_policy(ttl, refresh_after, stale_ttl, cache_none, store_if)

    def decorate(fn: Callable[..., Any]) -> Any:
        if isinstance(fn, classmethod):  # the class is bound for the call and the helpers
            return CachedMember(_function_of(decorate(fn.__func__)), bind_class=True)
        if isinstance(fn, staticmethod):
            return staticmethod(_function_of(decorate(fn.__func__)))
        if not callable(fn):
            raise ConfigError(f"@cached needs a function, not {fn!r}")
        _refuse_generators(fn)
        builder = CallKeyBuilder(
            fn,
            key,
            tuple(tags),
            name=name,
            ignore=tuple(ignore),
            max_length=cache.max_key_length,
        )
        _claim_key_space(cache, builder, fn, explicit=name is not None)
        fstats = cache.register_function(builder.name)
        memo = CallMemo(cache.top_tier, typed=not builder.automatic, single=single_parameter(fn))
        opts = _Options(lock, RefreshSchedule(refresh_every, memo))
        if inspect.iscoroutinefunction(fn):
            wrapper = _async_wrapper(fn, cache, builder, policy, fstats, memo, opts)
        else:
            wrapper = _sync_wrapper(fn, cache, builder, policy, fstats, memo, opts)
        wrapper.stats = fstats  # type: ignore[attr-defined]
        wrapper._memo = memo  # type: ignore[attr-defined]  # introspection and tests
        setattr(wrapper, KEY_SPACE_ATTRIBUTE, builder.key_space)
        wrapper.key = lambda *a, **kw: _resolve(cache, builder, a, kw)[0]  # type: ignore[attr-defined]
        if warm is not None:
            cache.warmers.append((wrapper, warm))
        return CachedMember(wrapper) if defined_in_class(fn) else wrapper

    return cast(CacheDecorator, decorate)


def _function_of(decorated: Any) -> Any:
    """The cached function itself, out of the ``CachedMember`` a method becomes."""
    return decorated.fn if isinstance(decorated, CachedMember) else decorated


class _Options:
    """The freshness options of one decorated function (read only on the slow path)."""

    __slots__ = ("lock", "schedule")

    def __init__(self, lock: FleetLock | bool | None, schedule: RefreshSchedule) -> None:
        self.lock = lock
        self.schedule = schedule


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
    memo: CallMemo,
    opts: _Options,
) -> Callable[..., Any]:
    now = cache.clock.time
    touch = memo.top.touch if memo.top is not None else None

    async def slow(ck: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        await cache.start()
        fkey, tags = _resolve(cache, builder, args, kwargs)
        fleet = cache.resolve_lock(opts.lock)
        entry = await cache.fetch(
            fkey, functools.partial(fn, *args, **kwargs), policy, tags, fstats, fleet
        )
        memo.remember(ck, fkey, cache.local_trusted)
        opts.schedule.ensure_task(cache.spawn, refresh_hot)
        return entry.value

    async def refresh_hot() -> int:
        """Recompute every hot entry of this function now; returns how many were refreshed."""
        await cache.start()
        fleet = cache.resolve_lock(opts.lock)
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

        done = await asyncio.gather(*(one(*call) for call in memo.calls()))
        return sum(done)

    hit, positional = _hit_path(fn, memo, now, fstats, touch, slow)
    memo_key = _bound_key(builder, memo.single) if positional else hashable_call_key

    async def invalidate(*args: Any, **kwargs: Any) -> None:
        await cache.invalidate(keys=[cache.relative_key(_resolve(cache, builder, args, kwargs)[0])])

    async def refresh(*args: Any, **kwargs: Any) -> Any:
        await cache.start()
        fkey, tags = _resolve(cache, builder, args, kwargs)
        loader = functools.partial(fn, *args, **kwargs)
        entry = await cache.load(fkey, loader, policy, tags, forced=True)
        memo.remember(memo_key(args, kwargs), fkey, cache.local_trusted)
        return entry.value

    hit.invalidate = invalidate  # type: ignore[attr-defined]
    hit.refresh = refresh  # type: ignore[attr-defined]
    hit.refresh_hot = refresh_hot  # type: ignore[attr-defined]
    return hit


def _sync_wrapper(
    fn: Callable[..., Any],
    cache: Cache,
    builder: CallKeyBuilder,
    policy: EntryPolicy,
    fstats: FunctionStats,
    memo: CallMemo,
    opts: _Options,
) -> Callable[..., Any]:
    now = cache.clock.time
    touch = memo.top.touch if memo.top is not None else None
    if isinstance(opts.lock, FleetLock) and not isinstance(opts.lock, SyncFleetLock):
        raise ConfigError(
            f"{opts.lock!r} has no blocking methods: sync functions need e.g. RedisLock"
        )

    def slow(ck: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        facade = cache.sync
        facade.start()
        fkey, tags = _resolve(cache, builder, args, kwargs)
        fleet = facade.resolve_lock(opts.lock)
        loader = functools.partial(fn, *args, **kwargs)
        entry = facade.fetch(fkey, loader, policy, tags, fstats, fleet)
        memo.remember(ck, fkey, cache.local_trusted)
        opts.schedule.ensure_thread(refresh_hot, cache.closers)
        return entry.value

    def refresh_hot() -> int:
        """Recompute every hot entry of this function now; returns how many were refreshed."""
        facade = cache.sync
        facade.start()
        fleet = facade.resolve_lock(opts.lock)
        refreshed = 0
        for args, kwargs, fkey, old in list(memo.calls()):
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

    hit, positional = _hit_path(fn, memo, now, fstats, touch, slow)
    memo_key = _bound_key(builder, memo.single) if positional else hashable_call_key

    def invalidate(*args: Any, **kwargs: Any) -> None:
        cache.sync.invalidate(keys=[cache.relative_key(_resolve(cache, builder, args, kwargs)[0])])

    def refresh(*args: Any, **kwargs: Any) -> Any:
        facade = cache.sync
        facade.start()
        fkey, tags = _resolve(cache, builder, args, kwargs)
        loader = functools.partial(fn, *args, **kwargs)
        entry = facade.load(fkey, loader, policy, tags, forced=True)
        memo.remember(memo_key(args, kwargs), fkey, cache.local_trusted)
        return entry.value

    hit.invalidate = invalidate  # type: ignore[attr-defined]
    hit.refresh = refresh  # type: ignore[attr-defined]
    hit.refresh_hot = refresh_hot  # type: ignore[attr-defined]
    return hit


def _hit_path(
    fn: Callable[..., Any],
    memo: CallMemo,
    now: Callable[[], float],
    fstats: FunctionStats,
    touch: Any,
    slow: Callable[..., Any],
) -> tuple[Callable[..., Any], bool]:
    """The wrapper (``core.hitpath``) and whether its memo keys are bound argument values."""
    hit, positional = compile_hit_path(
        fn, lookup=memo.lookup, now=now, fstats=fstats, touch=touch, slow=slow,
        is_async=inspect.iscoroutinefunction(fn),
    )  # fmt: skip
    return functools.wraps(fn)(hit), positional


def _bound_key(
    builder: CallKeyBuilder, single: bool
) -> Callable[[tuple[Any, ...], dict[str, Any]], Any]:
    """The memo key of a call as a compiled hit path builds it: the bound values in order
    (the bare value for a one-parameter function), or None when unhashable."""

    def bound(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        key = hashable_call_key(tuple(builder.bind(args, kwargs).values()), {})
        return key[0] if single and key is not None else key

    return bound


def _refuse_generators(fn: Callable[..., Any]) -> None:
    """Generators cannot be cached by value: refuse them where they are decorated."""
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise ConfigError(
            f"@cached cannot cache the generator function {fn!r}: its result is an iterator "
            "consumed once. Cache a function that returns a list instead."
        )


_KEY_SPACES: weakref.WeakKeyDictionary[Cache, KeySpaces] = weakref.WeakKeyDictionary()


def _claim_key_space(
    cache: Cache, builder: CallKeyBuilder, fn: Callable[..., Any], explicit: bool
) -> None:
    """``ConfigError`` if another function already uses this function's automatic key space."""
    if not builder.automatic:
        return  # an explicit key template or callable names its own key space
    spaces = _KEY_SPACES.get(cache)
    if spaces is None:
        spaces = _KEY_SPACES.setdefault(cache, KeySpaces())
    spaces.claim(builder.name, builder.identity, builder.captured_unknown, fn, explicit)
