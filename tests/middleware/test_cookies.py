"""Requests with cookies: personal unless their route opts in (ASGI and WSGI alike)."""

from __future__ import annotations

import pytest

from stratacache import ConfigError
from stratacache.middleware import CacheRule
from stratacache.middleware.cookies import CookieRules, parse_cookies, repeated_names
from stratacache.middleware.rules import Directives

from .apps import unique
from .conftest import Server


def test_page_of_a_cookie_request_is_not_served_to_the_next_user(server: Server) -> None:
    """A page built for alice's session cookie (route ttl, no Vary) is not bob's HIT."""
    path = unique("ruled")
    assert server.get(path, cookie="session=alice").text.startswith("call 1")
    bob = server.get(path, cookie="session=bob")
    assert bob.text.startswith("call 2") and bob.headers["x-cache"] == "MISS"


def test_response_to_a_cookie_request_is_not_stored(server: Server) -> None:
    """Even with max-age, the answer to a request with a cookie is kept from everyone."""
    path = unique() + "?cc=max-age%3D60"
    server.get(path, cookie="session=alice")
    assert server.get(path).text.startswith("call 2")


def test_cookie_request_does_not_get_the_shared_copy(server: Server) -> None:
    """A page stored for cookieless requests is not handed to a request with a session."""
    path = unique() + "?cc=max-age%3D60"
    server.get(path)
    assert server.get(path).headers["x-cache"] == "HIT"
    assert server.get(path, cookie="session=alice").headers["x-cache"] == "MISS"


def test_ignored_cookies_do_not_keep_a_request_away(server: Server) -> None:
    """Cookies named by ignore_cookies (a name or a pattern) count as no cookie."""
    path = unique() + "?cc=max-age%3D60"
    server.get(path, cookie="_ga=GA1.1; consent=yes")
    hit = server.get(path, cookie="_gat=x; _ga=GA1.2")
    assert hit.headers["x-cache"] == "HIT" and hit.text.startswith("call 1")
    assert server.get(path, cookie="_ga=1; session=bob").headers["x-cache"] == "MISS"


def test_public_route_shares_pages_of_cookie_requests(server: Server) -> None:
    """A route with public=True stores and serves pages whatever the request's cookies."""
    path = unique("shared")
    server.get(path, cookie="session=alice")
    assert server.get(path, cookie="session=bob").headers["x-cache"] == "HIT"


def test_vary_on_cookies_keys_the_page_on_those_cookies(server: Server) -> None:
    """vary_on_cookies=["lang"]: one page per lang value; another cookie still passes."""
    path = unique("bylang")
    assert server.get(path, cookie="lang=fr").text.startswith("call 1")
    assert server.get(path, cookie="_ga=9; lang=fr").headers["x-cache"] == "HIT"
    assert server.get(path, cookie="lang=de").text.startswith("call 2")
    assert server.get(path, cookie="lang=de").headers["x-cache"] == "HIT"
    assert server.get(path, cookie="lang=fr; session=alice").headers["x-cache"] == "MISS"


def test_repeated_varied_cookie_is_neither_stored_nor_served(server: Server) -> None:
    """``lang=en; lang=fr``: the key could read en and the page fr, so the request passes
    and the English page is never the French one (no cache poisoning)."""
    path = unique("bylang")
    assert server.get(path, cookie="lang=en; lang=fr").headers["x-cache"] == "MISS"
    english = server.get(path, cookie="lang=en")
    assert english.headers["x-cache"] == "MISS" and english.text.startswith("call 2")
    assert server.get(path, cookie="lang=en").headers["x-cache"] == "HIT"
    twice = server.get(path, cookie="lang=fr; lang=en")
    assert twice.headers["x-cache"] == "MISS" and twice.text.startswith("call 3")


def test_repeated_cookie_on_a_public_route_does_not_matter(server: Server) -> None:
    """On a public route the page reads no cookie: a name given twice changes nothing."""
    path = unique("shared")
    server.get(path, cookie="session=a; session=b")
    assert server.get(path, cookie="session=c; session=c").headers["x-cache"] == "HIT"


def test_repeated_names_lists_names_given_twice() -> None:
    """Only names seen more than once, trimmed; empty parts ignored."""
    assert repeated_names(" a=1; b=2 ;a=3; ; c ; c=") == {"a", "c"}
    assert repeated_names("a=1; b=2") == frozenset() == repeated_names(None)


def test_repeated_considered_cookie_keeps_the_request_away() -> None:
    """A varied or relevant name given twice refuses; an ignored one does not."""
    rules = CookieRules(["_ga*"])
    keyed = Directives(vary_cookies=("lang",))
    assert not rules.admit("lang=en; lang=fr", keyed)[1]
    assert not rules.admit("lang=en; lang=fr", Directives(public=True, vary_cookies=("lang",)))[1]
    assert rules.admit("lang=en; _ga=1; _ga=2", keyed)[1]
    assert rules.admit("sid=1; sid=2", Directives(public=True))[1]
    assert rules.admit("lang=en", keyed) == ({"lang": "en"}, True)


def test_parse_cookies_keeps_the_first_of_a_name() -> None:
    """The Cookie header splits on ';', names and values trimmed, the first of a name wins."""
    assert parse_cookies(" a=1; b = x=y ;a=2; ;c") == {"a": "1", "b": "x=y", "c": ""}
    assert parse_cookies(None) == {}


def test_shareable_needs_every_relevant_cookie_declared() -> None:
    """Relevant cookies (not ignored) must all be vary_on_cookies names, or the route public."""
    rules = CookieRules(["_ga*"])
    keyed = Directives(vary_cookies=("lang",))
    assert rules.shareable({}, Directives())
    assert rules.shareable({"_ga": "1", "_gat": "2"}, Directives())
    assert not rules.shareable({"sid": "1"}, Directives())
    assert rules.shareable({"sid": "1"}, Directives(public=True))
    assert rules.shareable({"lang": "fr", "_ga": "1"}, keyed)
    assert not rules.shareable({"lang": "fr", "sid": "1"}, keyed)


def test_route_ignores_cookies_of_its_own() -> None:
    """A rule's ignore_cookies adds to the middleware's, for that route only."""
    rules = CookieRules(["_ga*"])
    route = CacheRule("/blog/*", ignore_cookies=["cart_*"]).match("/blog/x")
    assert route is not None
    assert rules.shareable({"_ga": "1", "cart_id": "7"}, route)
    assert not rules.shareable({"cart_id": "7"}, Directives())


def test_cookie_options_are_checked() -> None:
    """A single string where a list of names belongs is a ConfigError, not a list of letters."""
    with pytest.raises(ConfigError):
        CookieRules("_ga*")
    with pytest.raises(ConfigError):
        CacheRule("/x", vary_on_cookies="lang")
    with pytest.raises(ConfigError):
        CacheRule("/x", ignore_cookies="_ga")


async def test_cookies_sent_in_separate_fields_are_all_seen() -> None:
    """HTTP/2 sends each cookie in a field of its own: an ignored cookie in the first field
    does not hide a session cookie in the second (the page is neither stored nor shared)."""
    import stratacache as sc
    from stratacache.middleware import CacheMiddleware

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        fields = [v.decode() for k, v in scope["headers"] if k == b"cookie"]
        user = "frank" if any("session=frank" in f for f in fields) else "anon"
        start = {"type": "http.response.start", "status": 200}
        await send({**start, "headers": [(b"cache-control", b"max-age=60")]})
        await send({"type": "http.response.body", "body": f"hello {user}".encode()})

    async def get(middleware: CacheMiddleware, headers: list[tuple[bytes, bytes]]) -> bytes:
        scope = {
            "type": "http", "method": "GET", "path": "/page", "raw_path": b"/page",
            "query_string": b"", "headers": [(b"host", b"shop"), *headers], "scheme": "https",
            "server": ("shop", 443), "http_version": "2", "root_path": "",
        }  # fmt: skip
        body: list[bytes] = []

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.body":
                body.append(message.get("body", b""))  # type: ignore[arg-type]

        await middleware(scope, receive, send)
        return b"".join(body)

    cache = sc.Cache([sc.MemoryTier()], namespace="split-cookies")
    middleware = CacheMiddleware(app, cache=cache, ignore_cookies=["_ga"])
    try:
        frank = [(b"cookie", b"_ga=1"), (b"cookie", b"session=frank")]
        assert await get(middleware, frank) == b"hello frank"
        assert await get(middleware, []) == b"hello anon"
        assert await get(middleware, frank) == b"hello frank"
    finally:
        await cache.close()
