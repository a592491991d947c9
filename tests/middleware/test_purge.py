"""``purge_url``: every stored variant of a URL goes, whatever its query order or ignored params."""

from __future__ import annotations

import stratacache as sc
from stratacache.middleware import purge_url, purge_url_sync
from stratacache.middleware.parsing import primary_key, split_url, url_tag

URL = "https://shop.example/products/42?b=2&a=1"


def _cache() -> sc.Cache:
    return sc.Cache(tiers=[sc.MemoryTier()], bus=False, namespace="purge")


def _store(cache: sc.Cache, url: str, ignore: frozenset[str] = frozenset()) -> tuple[str, str]:
    """What the middleware stores for ``url``: the primary entry and one tagged variant."""
    normalized = split_url(url, ignore)
    primary, variant = primary_key("http", normalized), "variant-of-" + normalized
    cache.sync.set(primary, "vary-index")
    cache.sync.set(variant, "page", tags=[url_tag(normalized)])
    return primary, variant


async def test_purge_removes_the_primary_entry_and_every_variant() -> None:
    """After ``purge_url`` neither the URL's primary entry nor a tagged variant is served."""
    cache = _cache()
    primary, variant = _store(cache, URL)
    other, _ = _store(cache, "https://shop.example/products/43")
    async with cache:
        await purge_url(cache, "https://shop.example/products/42?a=1&b=2")  # query order differs
        assert await cache.get(primary) is None and await cache.get(variant) is None
        assert await cache.get(other) == "vary-index"


def test_purge_sync_honours_ignored_query_params() -> None:
    """``purge_url_sync`` with the middleware's ``ignore_query_params`` reaches the same entries."""
    cache = _cache()
    ignore = frozenset({"utm_source"})
    primary, variant = _store(cache, URL + "&utm_source=mail", ignore)
    purge_url_sync(cache, URL, ignore_query_params=ignore)
    assert cache.sync.get(primary) is None and cache.sync.get(variant) is None


def test_purge_of_the_https_url_drops_the_page_stored_under_http() -> None:
    """Behind a TLS proxy the app sees ``http``: purging the ``https`` URL still reaches it."""
    cache = _cache()
    primary, variant = _store(cache, "http://shop.example/products/42?a=1&b=2")
    purge_url_sync(cache, "https://SHOP.example:443/products/42?b=2&a=1")
    assert cache.sync.get(primary) is None and cache.sync.get(variant) is None


async def test_purge_of_the_http_url_drops_the_page_stored_under_https() -> None:
    """And the other way round: a page the app saw over ``https`` goes with its ``http`` URL."""
    cache = _cache()
    primary, variant = _store(cache, "https://shop.example/products/42")
    async with cache:
        await purge_url(cache, "http://shop.example:80/products/42")
        assert await cache.get(primary) is None and await cache.get(variant) is None
