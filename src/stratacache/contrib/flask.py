"""Flask extension: ``Stratacache(app)`` or ``ext.init_app(app)``, configured from ``app.config``.

::

    app.config["STRATACACHE_URL"] = "memory://?maxsize=10000,redis://127.0.0.1:6379/0"
    app.config["STRATACACHE_NAMESPACE"] = "shop"
    app.config["STRATACACHE_PAGE_CACHE"] = True      # wrap app.wsgi_app in WSGICacheMiddleware
    ext = Stratacache(app)

    @app.get("/users/<int:uid>")
    @ext.cached(ttl=60, key="user:{uid}")
    def user(uid: int): ...

Keys: ``STRATACACHE_URL`` (the tiers, default ``memory://``) and ``STRATACACHE_<OPTION>``
for every ``Cache`` option (``DEFAULT_TTL``, ``NAMESPACE``, ``BUS`` …; values may be Python
objects or their text form), ``STRATACACHE_PAGE_CACHE`` (bool) and
``STRATACACHE_PAGE_CACHE_OPTIONS`` (keywords for ``WSGICacheMiddleware``); when
``app.wsgi_app`` is already a werkzeug ``ProxyFix`` the page cache goes inside it, so it
keys on the forwarded host and scheme the app sees. A bad value
raises ``ConfigError`` naming the key. With the application-factory pattern the
decorator may be applied before ``init_app``: it binds on first call, to the cache of
the application handling it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, has_app_context
from werkzeug.middleware.proxy_fix import ProxyFix

from .. import decorators
from ..client import Cache as PublicCache
from ..config import CACHE_OPTIONS, parse_bool
from ..core.errors import ConfigError
from ..engine.cache import Cache
from ..middleware.wsgi import WSGICacheMiddleware
from .flask_views import VIEW_OPTIONS, ViewCache, is_serving_view

F = TypeVar("F", bound=Callable[..., Any])
EXTENSION = "stratacache"


class Stratacache:
    """The Flask extension; ``ext.cache`` is the current application's ``Cache``."""

    def __init__(self, app: Flask | None = None, *, cache: Cache | None = None) -> None:
        self._given = cache
        self._default: Cache | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Build (or take) the cache for ``app`` from its config and register it."""
        cache = self._given if self._given is not None else cache_from_config(app.config, app.name)
        app.extensions[EXTENSION] = cache
        if self._default is None:
            self._default = cache
        page_cache = app.config.get("STRATACACHE_PAGE_CACHE", False)
        if isinstance(page_cache, str):
            page_cache = parse_bool("STRATACACHE_PAGE_CACHE", page_cache)
        if page_cache:
            options = dict(app.config.get("STRATACACHE_PAGE_CACHE_OPTIONS") or {})
            outer: Any = app.wsgi_app
            if isinstance(outer, ProxyFix):
                # Inside the proxy fix: the key is the host and scheme the app sees, the
                # forwarded ones, not those of the proxy's own connection.
                outer.app = WSGICacheMiddleware(outer.app, cache=cache, **options)
            else:
                app.wsgi_app = WSGICacheMiddleware(outer, cache=cache, **options)  # type: ignore[method-assign]

    @property
    def cache(self) -> Cache:
        """The cache of the application in context (else of the first one initialised)."""
        if has_app_context():
            found = current_app.extensions.get(EXTENSION)
            if isinstance(found, Cache):
                return found
        if self._default is None:
            raise ConfigError("Stratacache has no application yet: call init_app(app) first")
        return self._default

    def cached(self, **options: Any) -> Callable[[F], F]:
        """``cache.cached(**options)`` on the application's cache (see ``stratacache.decorators``).

        On the view serving a request it caches the page (``contrib.flask_views``): the default
        key is the method and the normalized URL, query string included, and a ``Response``
        (``jsonify``, tuples, ``make_response``) is stored and replayed whole. Only GET and
        HEAD requests without ``Authorization`` use it; requests with cookies too when the view
        says so: ``public=True``, ``vary_on_cookies=[names]``, ``ignore_cookies=[names]``.
        """
        pages_only = {name: options.pop(name) for name in VIEW_OPTIONS if name in options}

        def decorate(fn: F) -> F:
            bound: dict[Cache, Any] = {}
            pages = ViewCache(fn, {**options, **pages_only})

            def resolve() -> Any:
                cache = self.cache
                wrapped = bound.get(cache)
                if wrapped is None:
                    wrapped = bound[cache] = decorators.cached(cache, **options)(fn)
                return wrapped

            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def async_call(*args: Any, **kwargs: Any) -> Any:
                    if is_serving_view(async_call):
                        return await pages.serve_async(self.cache, args, kwargs)
                    return await resolve()(*args, **kwargs)

                return async_call  # type: ignore[return-value]

            @functools.wraps(fn)
            def call(*args: Any, **kwargs: Any) -> Any:
                if is_serving_view(call):
                    return pages.serve(self.cache, args, kwargs)
                return resolve()(*args, **kwargs)

            return call  # type: ignore[return-value]

        return decorate

    def close(self) -> None:
        """Close the caches this extension built (at shutdown)."""
        if self._default is not None and self._given is None:
            self._default.sync.close()


def cache_from_config(config: Any, app_name: str = "flask") -> Cache:
    """A ``Cache`` from ``STRATACACHE_*`` keys of a Flask config (``ConfigError`` names the key)."""
    settings: dict[str, Any] = {"tiers": config.get("STRATACACHE_URL", "memory://")}
    for option, parser in CACHE_OPTIONS.items():
        name = "STRATACACHE_" + option.upper()
        if name in config:
            value = config[name]
            settings[option] = parser(name, value) if isinstance(value, str) else value
    settings.setdefault("namespace", app_name.replace(":", "_") or "flask")
    return PublicCache.from_dict(settings)


__all__ = ["Stratacache", "cache_from_config"]
