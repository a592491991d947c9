"""Purging cached pages by URL: every stored variant (all ``Vary`` values) at once.

Each stored response carries the internal tag ``url:<digest of the normalized
URL>``, so a purge is one tag invalidation, which the engine propagates to
every tier and every connected process.

Keys hold the scheme the app saw, which behind a TLS-terminating proxy is
``http`` while clients (and whoever purges) say ``https``. Since a page may
differ by scheme (an ``http`` → ``https`` redirect), keys keep it, and a purge
drops the URL under both schemes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from .parsing import normalize_url, primary_key, url_tag

if TYPE_CHECKING:
    from ..engine.cache import Cache

__all__ = ["purge_targets", "purge_url", "purge_url_sync"]


def purge_targets(url: str, key_prefix: str, ignore: Iterable[str]) -> tuple[list[str], list[str]]:
    """The primary keys and URL tags of ``url`` (any form) under ``http`` and ``https``."""
    parts = urlsplit(url)
    path, ignored = unquote(parts.path), frozenset(ignore)
    own = normalize_url(parts.scheme, parts.netloc, "", "", ignored)  # drops its default port
    host = own.partition("://")[2].removesuffix("/")
    urls = [normalize_url(s, host, path, parts.query, ignored) for s in ("http", "https")]
    return [primary_key(key_prefix, u) for u in urls], [url_tag(u) for u in urls]


async def purge_url(
    cache: Cache, url: str, *, key_prefix: str = "http", ignore_query_params: Iterable[str] = ()
) -> None:
    """Remove every cached variant of ``url`` (``"https://shop.example/products/42?x=1"``),
    stored under ``http`` or ``https``.

    ``key_prefix`` and ``ignore_query_params`` must match the middleware's.
    """
    keys, tags = purge_targets(url, key_prefix, ignore_query_params)
    await cache.invalidate(keys=keys, tags=tags)


def purge_url_sync(
    cache: Cache, url: str, *, key_prefix: str = "http", ignore_query_params: Iterable[str] = ()
) -> None:
    """Blocking twin of ``purge_url`` for WSGI and other synchronous code."""
    keys, tags = purge_targets(url, key_prefix, ignore_query_params)
    cache.sync.invalidate(keys=keys, tags=tags)
