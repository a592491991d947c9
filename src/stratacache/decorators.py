"""``@cache.cached``: cache a sync or async function's results through the engine.

The hot path is a memo from the call's raw arguments to the memory tier's own
``Entry`` object: one dict lookup, one deadline compare, one counter, one LRU
touch. The stable string key (template or digest) is built only on the slow
path. Invalidation still reaches the memo: the memory tier kills an entry
(deadline = -inf) whenever it drops it, for any reason, so a memoized
reference to it stops serving at once.

Like ``functools.lru_cache(typed=False)``, arguments that are equal and hash
alike share the memo (``f(1)`` and ``f(1.0)``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .core.entry import Entry
from .core.errors import ConfigError
from .core.keys import CallKeyBuilder
from .engine.cache import Cache
from .engine.policy import UNSET, EntryPolicy
from .engine.stats import FunctionStats

F = TypeVar("F", bound=Callable[..., Any])
_KW = object()  # separates positional from keyword arguments in a memo key


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
            for k in [k for k, (e, _) in data.items() if not e.alive]:
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
) -> Callable[[F], F]:
    """Cache calls of the decorated function.

    Args:
        cache: the cache to store results in.
        ttl: seconds a result lives (default: the cache's ``default_ttl``).
        key: a template such as ``"user:{user_id}"`` filled from the arguments, or a callable
            taking the function's arguments; default: ``module.qualname:`` + argument digest.
        tags: tag templates, e.g. ``["user:{user_id}"]``, for ``cache.invalidate(tags=...)``.
        refresh_after: soft TTL: past it the cached value is served while it is recomputed.
        stale_ttl: seconds a result is kept past ``ttl`` to serve if the function raises.
        cache_none: whether a ``None`` result is cached (default: the cache's setting).

    The wrapped function gains ``invalidate(*args, **kwargs)``, ``refresh(*args, **kwargs)``,
    ``key(*args, **kwargs)`` and ``stats``.
    """
    if isinstance(tags, str):
        raise ConfigError("tags must be a list of templates, not a single string")
    policy = cache.entry_policy(ttl, refresh_after, stale_ttl, cache_none)

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise ConfigError(f"@cached needs a function, not {fn!r}")
        builder = CallKeyBuilder(fn, key, tuple(tags))
        fstats = cache.register_function(builder.name)
        memo = _Memo(cache)
        if inspect.iscoroutinefunction(fn):
            wrapper = _async_wrapper(fn, cache, builder, policy, fstats, memo)
        else:
            wrapper = _sync_wrapper(fn, cache, builder, policy, fstats, memo)
        wrapper.stats = fstats  # type: ignore[attr-defined]
        wrapper.key = lambda *a, **kw: _resolve(cache, builder, a, kw)[0]  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _resolve(
    cache: Cache, builder: CallKeyBuilder, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, tuple[str, ...]]:
    """Full key and tags of one call (the slow path's only key work)."""
    arguments = builder.bind(args, kwargs)
    return cache.full_key(builder.key(arguments, args, kwargs)), builder.tags(arguments)


def _call_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not kwargs:
        return args
    return (*args, _KW, *kwargs.items())


def _async_wrapper(
    fn: Callable[..., Any],
    cache: Cache,
    builder: CallKeyBuilder,
    policy: EntryPolicy,
    fstats: FunctionStats,
    memo: _Memo,
) -> Callable[..., Any]:
    lookup = memo.data.get
    now = cache.clock.time
    touch = memo.top.touch if memo.top is not None else None

    async def slow(call_key: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        await cache.start()
        fkey, tags = _resolve(cache, builder, args, kwargs)
        entry = await cache.fetch(
            fkey, functools.partial(fn, *args, **kwargs), policy, tags, fstats
        )
        memo.remember(call_key, fkey, cache.tiers.local_trusted)
        return entry.value

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
        await cache.invalidate(keys=[_strip(cache, _resolve(cache, builder, args, kwargs)[0])])

    async def refresh(*args: Any, **kwargs: Any) -> Any:
        await cache.start()
        fkey, tags = _resolve(cache, builder, args, kwargs)
        entry = await cache.load(fkey, functools.partial(fn, *args, **kwargs), policy, tags)
        memo.remember(_safe_call_key(args, kwargs), fkey, cache.tiers.local_trusted)
        return entry.value

    wrapper.invalidate = invalidate  # type: ignore[attr-defined]
    wrapper.refresh = refresh  # type: ignore[attr-defined]
    return wrapper


def _sync_wrapper(
    fn: Callable[..., Any],
    cache: Cache,
    builder: CallKeyBuilder,
    policy: EntryPolicy,
    fstats: FunctionStats,
    memo: _Memo,
) -> Callable[..., Any]:
    lookup = memo.data.get
    now = cache.clock.time
    touch = memo.top.touch if memo.top is not None else None

    def slow(call_key: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        facade = cache.sync
        facade.start()
        fkey, tags = _resolve(cache, builder, args, kwargs)
        entry = facade.fetch(fkey, functools.partial(fn, *args, **kwargs), policy, tags, fstats)
        memo.remember(call_key, fkey, cache.tiers.local_trusted)
        return entry.value

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
        cache.sync.invalidate(keys=[_strip(cache, _resolve(cache, builder, args, kwargs)[0])])

    def refresh(*args: Any, **kwargs: Any) -> Any:
        facade = cache.sync
        facade.start()
        fkey, tags = _resolve(cache, builder, args, kwargs)
        entry = facade.load(fkey, functools.partial(fn, *args, **kwargs), policy, tags)
        memo.remember(_safe_call_key(args, kwargs), fkey, cache.tiers.local_trusted)
        return entry.value

    wrapper.invalidate = invalidate  # type: ignore[attr-defined]
    wrapper.refresh = refresh  # type: ignore[attr-defined]
    return wrapper


def _safe_call_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    key = _call_key(args, kwargs)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _strip(cache: Cache, fkey: str) -> str:
    """The relative key of a full key (``invalidate`` takes relative keys)."""
    return fkey[len(cache.namespace) + 1 :]


Cache.decorator_factory = cached
