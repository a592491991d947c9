"""HTTP response caching for ASGI and WSGI apps, behaving as an RFC 9111 shared cache.

::

    app.add_middleware(CacheMiddleware, cache=cache)                      # Starlette / FastAPI
    app.wsgi_app = WSGICacheMiddleware(app.wsgi_app, cache=cache)         # Flask / any WSGI

Both share one I/O-free policy (``policy.HttpCachePolicy``). Importing this
package needs neither Starlette nor any web framework.
"""

from __future__ import annotations

from .asgi import CacheMiddleware
from .policy import HttpCachePolicy
from .purge import purge_url, purge_url_sync
from .rules import CacheRule, RouteRules, cache_response
from .wsgi import WSGICacheMiddleware

__all__ = [
    "CacheMiddleware",
    "CacheRule",
    "HttpCachePolicy",
    "RouteRules",
    "WSGICacheMiddleware",
    "cache_response",
    "purge_url",
    "purge_url_sync",
]
