"""Purging cached pages by URL: every stored variant (all ``Vary`` values) at once.

Each stored response carries the internal tag ``url:<digest of the normalized
URL>``, so a purge is one tag invalidation, which the engine propagates to
every tier and every connected process.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .parsing import primary_key, split_url, url_tag

if TYPE_CHECKING:
    from ..engine.cache import Cache

__all__ = ["purge_url", "purge_url_sync"]


def _targets(url: str, key_prefix: str, ignore: Iterable[str]) -> tuple[list[str], list[str]]:
    normalized = split_url(url, frozenset(ignore))
    return [primary_key(key_prefix, normalized)], [url_tag(normalized)]


async def purge_url(
    cache: Cache, url: str, *, key_prefix: str = "http", ignore_query_params: Iterable[str] = ()
) -> None:
    """Remove every cached variant of ``url`` (``"https://shop.example/products/42?x=1"``).

    ``key_prefix`` and ``ignore_query_params`` must match the middleware's.
    """
    keys, tags = _targets(url, key_prefix, ignore_query_params)
    await cache.invalidate(keys=keys, tags=tags)


def purge_url_sync(
    cache: Cache, url: str, *, key_prefix: str = "http", ignore_query_params: Iterable[str] = ()
) -> None:
    """Blocking twin of ``purge_url`` for WSGI and other synchronous code."""
    keys, tags = _targets(url, key_prefix, ignore_query_params)
    cache.sync.invalidate(keys=keys, tags=tags)
