"""The I/O-free policy core on its own: parsing and decisions both middlewares share."""

from __future__ import annotations

import email.utils

from stratacache.middleware.parsing import normalize_url, parse_cache_control, split_url
from stratacache.middleware.policy import HttpCachePolicy, Request
from stratacache.middleware.rules import CacheRule, Directives

NOW = 1_700_000_000.0


def _request(policy: HttpCachePolicy, **headers: str) -> Request:
    return policy.request("GET", "http://h/p", "/p", headers, Directives())


def test_cache_control_parsing_lowercases_and_unquotes() -> None:
    """Directive names are case-insensitive and quoted arguments are unquoted."""
    assert parse_cache_control('Max-Age="60", No-Cache') == {"max-age": "60", "no-cache": None}


def test_default_port_is_dropped_from_the_url() -> None:
    """http://h:80/ and http://h/ are the same URL."""
    assert normalize_url("http", "H:80", "/", "", frozenset()) == "http://h/"


def test_escaped_and_unescaped_paths_are_one_url() -> None:
    """A purge URL with %20 matches the request path with a space."""
    assert split_url("http://h/a%20b") == normalize_url("http", "h", "/a b", "", frozenset())


def test_ignored_query_parameters_leave_the_key() -> None:
    """ignore_query_params drops tracking parameters from the key."""
    assert normalize_url("http", "h", "/", "utm_source=x&a=1", frozenset({"utm_source"})) == (
        "http://h/?a=1"
    )


def test_expires_minus_date_gives_the_lifetime() -> None:
    """Without max-age, freshness is Expires minus Date."""
    policy = HttpCachePolicy()
    headers = [
        (b"date", email.utils.formatdate(NOW, usegmt=True).encode()),
        (b"expires", email.utils.formatdate(NOW + 120, usegmt=True).encode()),
    ]
    assert policy.plan(_request(policy), 200, headers, NOW).lifetime == 120


def test_invalid_max_age_is_not_stored() -> None:
    """max-age=abc counts as already stale, so nothing is stored."""
    policy = HttpCachePolicy()
    plan = policy.plan(_request(policy), 200, [(b"cache-control", b"max-age=abc")], NOW)
    assert plan.store is False


def test_allowed_set_cookie_is_stored_without_the_cookie() -> None:
    """allow_set_cookie=True stores the response but never the Set-Cookie header."""
    policy = HttpCachePolicy(allow_set_cookie=True)
    headers = [(b"cache-control", b"max-age=60"), (b"set-cookie", b"s=1")]
    plan = policy.plan(_request(policy), 200, headers, NOW)
    assert (plan.store, [n for n, _ in plan.stored_headers]) == (True, [b"cache-control"])


def test_allowed_set_cookie_still_reaches_the_requester() -> None:
    """The client whose request produced the response still gets its Set-Cookie."""
    policy = HttpCachePolicy(allow_set_cookie=True)
    headers = [(b"cache-control", b"max-age=60"), (b"set-cookie", b"s=1")]
    plan = policy.plan(_request(policy), 200, headers, NOW)
    assert (b"set-cookie", b"s=1") in plan.client_headers


def test_rule_tags_and_ttl_fill_directives() -> None:
    """A matching rule yields its ttl and its tags filled from the path."""
    rule = CacheRule("/products/{id}", ttl=30, tags=["product:{id}"])
    found = rule.match("/products/42")
    assert found is not None and (found.ttl, found.tags) == (30, ["product:42"])


def test_entry_ttl_covers_the_stale_windows() -> None:
    """An entry is kept for its freshness plus the longest stale window."""
    policy = HttpCachePolicy()
    cc = b"max-age=60, stale-while-revalidate=30, stale-if-error=600"
    plan = policy.plan(_request(policy), 200, [(b"cache-control", cc)], NOW)
    assert plan.ttl == 660


def test_request_with_an_invalid_host_bypasses_the_cache() -> None:
    """A Host outside host[:port] is neither served, stored nor keys a purge (``keyed``)."""
    policy = HttpCachePolicy()
    for host, ok in (("shop:8080", True), ("[::1]", True), ("shop/home", False), ("a@b", False)):
        req = _request(policy, host=host)
        assert (req.may_serve, req.may_store, req.keyed) == (ok, ok, ok), host
