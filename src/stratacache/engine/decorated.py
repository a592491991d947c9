"""The types of ``@cache.cached``: what a decorated function is, for type checkers.

Why here: ``stratacache.Cache.cached`` and ``stratacache.cached`` return these
shapes and any layer above the engine may name them, so they live in the
engine, free of the decorator's code. At
runtime a decorated function is a plain function with attributes (the fastest
thing to call); these Protocols describe it, keeping the function's parameters
(``ParamSpec``) and its return type (the awaited one for ``async def``).

A decorated *method* reached through an instance binds ``self`` for the call
itself (``obj.method(x)``); its attributes are the function's own, so they
take ``self`` explicitly (``Class.method.invalidate(obj, x)`` or
``obj.method.invalidate(obj, x)``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    ParamSpec,
    Protocol,
    TypedDict,
    TypeVar,
    overload,
)

if TYPE_CHECKING:
    from typing_extensions import Self

    from ..core.fleet import FleetLock
    from ..core.sentinel import Unset
    from .stats import FunctionStats

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
S = TypeVar("S")

__all__ = [
    "AsyncCachedFunction",
    "BoundAsyncCachedFunction",
    "BoundCachedFunction",
    "CacheDecorator",
    "CachedFunction",
    "CachedOptions",
]


class CachedOptions(TypedDict, total=False):
    """The keyword arguments of ``cache.cached(...)`` (see ``stratacache.cached``)."""

    ttl: float | Unset | None
    key: str | Callable[..., str] | None
    tags: Sequence[str]
    refresh_after: float | Unset | None
    stale_ttl: float | Unset | None
    cache_none: bool | None
    condition: Callable[[Any], bool] | None
    unless: Callable[[Any], bool] | None
    lock: FleetLock | bool | None
    refresh_every: float | None
    warm: Any
    name: str | None
    ignore: Sequence[str]


class BoundCachedFunction(Protocol[P, R_co]):
    """A cached sync method reached through an instance: the call and its helpers bind ``self``."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Outdate the cached result of this instance's call everywhere."""

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Recompute and store this instance's call's result now; returns it."""

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The full cache key of this instance's call."""


class BoundAsyncCachedFunction(Protocol[P, R_co]):
    """A cached async method reached through an instance: the call and its helpers bind ``self``."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, None]:
        """Outdate the cached result of this instance's call everywhere."""

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]:
        """Recompute and store this instance's call's result now; returns it."""

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The full cache key of this instance's call."""


class CachedFunction(Protocol[P, R_co]):
    """A sync function decorated with ``@cache.cached``: same parameters, same result.

    Attributes:
        stats: the function's counters (``hits``, ``misses``, ``loads`` …).
        __wrapped__: the undecorated function.
    """

    stats: FunctionStats

    @property
    def __wrapped__(self) -> Callable[P, R_co]: ...

    __name__: str
    __qualname__: str

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Outdate the cached result of this call everywhere."""

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Recompute and store this call's result now; returns it."""

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The full cache key of this call (namespace included)."""

    def refresh_hot(self) -> int:
        """Recompute every hot entry of the function now; returns how many were refreshed."""

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(
        self: CachedFunction[Concatenate[S, P2], R],
        instance: S,
        owner: type[Any] | None = None,
    ) -> BoundCachedFunction[P2, R]: ...
    def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any: ...


class AsyncCachedFunction(Protocol[P, R_co]):
    """An ``async def`` function decorated with ``@cache.cached``: awaiting it gives ``R_co``.

    Attributes:
        stats: the function's counters (``hits``, ``misses``, ``loads`` …).
        __wrapped__: the undecorated function.
    """

    stats: FunctionStats

    @property
    def __wrapped__(self) -> Callable[P, Coroutine[Any, Any, R_co]]: ...

    __name__: str
    __qualname__: str

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, None]:
        """Outdate the cached result of this call everywhere."""

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]:
        """Recompute and store this call's result now; returns it."""

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The full cache key of this call (namespace included)."""

    def refresh_hot(self) -> Coroutine[Any, Any, int]:
        """Recompute every hot entry of the function now; returns how many were refreshed."""

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(
        self: AsyncCachedFunction[Concatenate[S, P2], R],
        instance: S,
        owner: type[Any] | None = None,
    ) -> BoundAsyncCachedFunction[P2, R]: ...
    def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any: ...


class CacheDecorator(Protocol):
    """What ``cache.cached(...)`` returns: apply it to a sync or an async function."""

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> AsyncCachedFunction[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> CachedFunction[P, R]: ...
