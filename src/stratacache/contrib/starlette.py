"""Starlette / FastAPI: a lifespan that starts and closes the cache, and a dependency.

::

    from fastapi import Depends, FastAPI
    from stratacache.contrib.starlette import get_cache, lifespan

    app = FastAPI(lifespan=lifespan("memory://,redis://127.0.0.1:6379/0", namespace="api"))

    @app.get("/items/{item_id}")
    async def item(item_id: int, cache: sc.Cache = Depends(get_cache)):
        return await cache.get_or_set(f"item:{item_id}", lambda: load(item_id), ttl=60)

``lifespan`` takes a ``Cache`` or a tier URL string (with ``Cache`` options), and
optionally the application's own lifespan to run inside it. The cache is on
``app.state.stratacache``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import HTTPConnection

from ..client import Cache as PublicCache
from ..core.errors import ConfigError
from ..engine.cache import Cache

STATE = "stratacache"
AppLifespan = Callable[[Any], contextlib.AbstractAsyncContextManager[Any]]


def lifespan(
    cache: Cache | str, *, app_lifespan: AppLifespan | None = None, **options: Any
) -> AppLifespan:
    """A lifespan: start ``cache`` before serving, close it after (built at startup from a URL).

    Raises:
        ConfigError: a bad URL or option (at startup, before serving anything).
    """
    if not isinstance(cache, (Cache, str)):
        raise ConfigError(f"lifespan needs a Cache or a tier URL string, not {cache!r}")
    if isinstance(cache, Cache) and options:
        raise ConfigError("Cache options go with a URL; this Cache is already built")

    @contextlib.asynccontextmanager
    async def run(app: Any) -> AsyncIterator[Any]:
        built = cache if isinstance(cache, Cache) else PublicCache.from_url(cache, **options)
        async with built:
            app.state.stratacache = built
            if app_lifespan is None:
                yield None  # no lifespan state: servers without its support still start
            else:
                async with app_lifespan(app) as inner:
                    yield inner

    return run


def get_cache(connection: HTTPConnection) -> Cache:
    """The application's cache: a FastAPI dependency (``Depends(get_cache)``) or a helper.

    Raises:
        ConfigError: the application was not started with ``lifespan(...)``.
    """
    cache = getattr(connection.app.state, STATE, None)
    if not isinstance(cache, Cache):
        raise ConfigError("no stratacache on this app: pass lifespan=stratacache lifespan(...)")
    return cache


__all__ = ["get_cache", "lifespan"]
