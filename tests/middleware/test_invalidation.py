"""Tags, route rules, the cache_response decorator and purging (issue: purge hooks)."""

from __future__ import annotations

from .apps import unique
from .conftest import Server


def test_decorator_ttl_makes_the_endpoint_cacheable(server: Server) -> None:
    """@cache_response(ttl=60) stores a response that states no freshness of its own."""
    server.get("/products/1")
    assert server.get("/products/1").headers["x-cache"] == "HIT"


def test_decorator_tags_purge_the_product_pages(server: Server) -> None:
    """cache.invalidate(tags=["product:42"]) purges the pages of product 42."""
    server.get("/products/42")
    server.invalidate("product:42")
    assert server.get("/products/42").headers["x-cache"] == "MISS"


def test_tag_invalidation_spares_other_products(server: Server) -> None:
    """Invalidating product:43 leaves product 44's page cached."""
    server.get("/products/44")
    server.invalidate("product:43")
    assert server.get("/products/44").headers["x-cache"] == "HIT"


def test_rule_ttl_makes_matching_paths_cacheable(server: Server) -> None:
    """CacheRule("/ruled/{name}", ttl=60) stores responses with no freshness of their own."""
    path = unique("ruled")
    server.get(path)
    assert server.get(path).headers["x-cache"] == "HIT"


def test_rule_tags_are_filled_from_the_path(server: Server) -> None:
    """A rule's tag template "ruled:{name}" tags the page; invalidating it purges the page."""
    path = unique("ruled")
    server.get(path)
    server.invalidate("ruled:" + path.rsplit("/", 1)[1])
    assert server.get(path).headers["x-cache"] == "MISS"


def test_rule_off_passes_requests_through(server: Server) -> None:
    """CacheRule("/off/*", enabled=False): no lookup, no store, no X-Cache header."""
    path = unique("off") + "?cc=max-age%3D60"
    server.get(path)
    second = server.get(path)
    assert (second.text, "x-cache" in second.headers) == ("call 2 lang=-", False)


def test_rule_vary_extra_splits_the_key(server: Server) -> None:
    """A rule's vary=["accept-language"] keys entries by that header though the app omits Vary."""
    path = unique("lang")
    server.get(path, accept_language="en")
    assert server.get(path, accept_language="de").text == "call 2 lang=de"


def test_tags_header_tags_the_response(server: Server) -> None:
    """An app's X-Cache-Tags header tags the stored response."""
    path = unique() + "?cc=max-age%3D60&tags=shelf:9,aisle:2"
    server.get(path)
    server.invalidate("aisle:2")
    assert server.get(path).headers["x-cache"] == "MISS"


def test_tags_header_is_not_sent_to_clients(server: Server) -> None:
    """The X-Cache-Tags header is removed before the response leaves the middleware."""
    path = unique() + "?cc=max-age%3D60&tags=shelf:9"
    assert "x-cache-tags" not in server.get(path).headers


def test_purge_url_drops_every_variant(server: Server) -> None:
    """purge_url(cache, url) removes all Vary variants of the URL."""
    path = unique() + "?cc=max-age%3D60&vary=Accept-Language"
    server.get(path, accept_language="en")
    server.get(path, accept_language="fr")
    server.purge(path)
    en = server.get(path, accept_language="en").headers["x-cache"]
    fr = server.get(path, accept_language="fr").headers["x-cache"]
    assert (en, fr) == ("MISS", "MISS")


def test_purge_of_the_https_url_reaches_the_page_the_app_saw_over_http(server: Server) -> None:
    """Behind a TLS proxy the app sees http; a purge of the https URL still drops its page."""
    path = unique() + "?cc=max-age%3D60&b=2&a=1"
    server.get(path)
    server.purge(path, scheme="https")
    assert server.get(path).text.startswith("call 2")


def test_purge_url_spares_other_urls(server: Server) -> None:
    """Purging one URL leaves another URL's entry in place."""
    kept, purged = unique() + "?cc=max-age%3D60", unique() + "?cc=max-age%3D60"
    server.get(kept)
    server.get(purged)
    server.purge(purged)
    assert server.get(kept).headers["x-cache"] == "HIT"


def test_unsafe_method_invalidates_the_url(server: Server) -> None:
    """A successful POST to a URL invalidates its stored GET response (RFC 9111 §4.4)."""
    path = unique() + "?cc=max-age%3D60"
    server.get(path)
    server.post(path)
    assert server.get(path).headers["x-cache"] == "MISS"


def test_cache_response_disabled_endpoint_is_not_stored(server: Server) -> None:
    """@cache_response(enabled=False) switches caching off while the endpoint runs: its
    response is not stored, whatever its max-age (a personal page stays personal)."""
    path = "/personal/" + unique().strip("/").replace("/", "-")
    assert server.get(path).text == "personal call 1"
    second = server.get(path)
    assert (second.text, second.headers["x-cache"]) == ("personal call 2", "MISS")
