"""What the middleware stores and how it answers from the store (RFC 9111 §3, §4.2)."""

from __future__ import annotations

import contextlib

import httpx

from .apps import unique
from .conftest import Server


def test_first_request_is_a_miss(server: Server) -> None:
    """A response not yet stored is marked X-Cache: MISS."""
    assert server.get(unique() + "?cc=max-age%3D60").headers["x-cache"] == "MISS"


def test_second_request_is_a_hit(server: Server) -> None:
    """A fresh stored response is served with X-Cache: HIT and the origin's body."""
    path = unique() + "?cc=max-age%3D60"
    first = server.get(path)
    second = server.get(path)
    assert (second.headers["x-cache"], second.text) == ("HIT", first.text)


def test_age_header_counts_time_in_cache(server: Server) -> None:
    """A hit carries Age: the seconds since the response was stored."""
    path = unique() + "?cc=max-age%3D60"
    server.get(path)
    server.advance(7)
    assert server.get(path).headers["age"] == "7"


def test_query_order_does_not_split_the_key(server: Server) -> None:
    """?b=2&a=1 and ?a=1&b=2 are one URL."""
    path = unique()
    server.get(path + "?cc=max-age%3D60&b=2&a=1")
    assert server.get(path + "?a=1&b=2&cc=max-age%3D60").headers["x-cache"] == "HIT"


def test_response_past_max_age_is_refetched(server: Server) -> None:
    """Once older than max-age, a response without stale directives is a miss."""
    path = unique() + "?cc=max-age%3D30"
    server.get(path)
    server.advance(31)
    assert server.get(path).text.startswith("call 2")


def test_s_maxage_overrides_max_age(server: Server) -> None:
    """A shared cache uses s-maxage over max-age."""
    path = unique() + "?cc=max-age%3D0,s-maxage%3D60"
    server.get(path)
    assert server.get(path).headers["x-cache"] == "HIT"


def test_no_store_response_is_not_stored(server: Server) -> None:
    """Cache-Control: no-store in the response keeps it out of the cache."""
    path = unique() + "?cc=no-store,max-age%3D60"
    server.get(path)
    assert server.get(path).text.startswith("call 2")


def test_private_response_is_not_stored(server: Server) -> None:
    """Cache-Control: private responses are not stored by a shared cache."""
    path = unique() + "?cc=private,max-age%3D60"
    server.get(path)
    assert server.get(path).text.startswith("call 2")


def test_response_without_freshness_is_not_stored(server: Server) -> None:
    """No max-age, Expires, Last-Modified, rule or default ttl: nothing to store."""
    path = unique()
    server.get(path)
    assert server.get(path).headers["x-cache"] == "MISS"


def test_last_modified_gives_heuristic_freshness(server: Server) -> None:
    """A 200 with only Last-Modified is fresh for a tenth of its age (RFC 9111 §4.2.2)."""
    path = unique() + "?lm=86400"
    server.get(path)
    assert server.get(path).headers["x-cache"] == "HIT"


def test_cacheable_error_status_is_stored(server: Server) -> None:
    """A 404 with max-age is stored and served."""
    path = unique() + "?status=404&cc=max-age%3D60"
    server.get(path)
    second = server.get(path)
    assert (second.status_code, second.headers["x-cache"]) == (404, "HIT")


def test_server_error_is_not_stored(server: Server) -> None:
    """A 500 is never stored, whatever its Cache-Control."""
    path = unique() + "?status=500&cc=max-age%3D60"
    server.get(path)
    assert server.get(path).text.startswith("call 2")


def test_status_outside_the_rfc_list_is_not_stored(server: Server) -> None:
    """A 201 is not a status a cache stores."""
    path = unique() + "?status=201&cc=max-age%3D60"
    server.get(path)
    assert server.get(path).text.startswith("call 2")


def test_vary_keeps_one_variant_per_header_value(server: Server) -> None:
    """Vary: Accept-Language stores en and fr apart and serves each its own."""
    path = unique() + "?cc=max-age%3D60&vary=Accept-Language"
    server.get(path, accept_language="en")
    server.get(path, accept_language="fr")
    hit = server.get(path, accept_language="fr")
    assert (hit.headers["x-cache"], hit.text) == ("HIT", "call 2 lang=fr")


def test_vary_star_is_never_stored(server: Server) -> None:
    """Vary: * cannot be matched by any request, so it is not stored."""
    path = unique() + "?cc=max-age%3D60&vary=*"
    server.get(path)
    assert server.get(path).text.startswith("call 2")


def test_set_cookie_response_is_not_shared(server: Server) -> None:
    """A response setting a cookie is not stored (it belongs to one user)."""
    path = unique() + "?cc=max-age%3D60&cookie=abc"
    server.get(path)
    assert server.get(path).text.startswith("call 2")


def test_authorized_request_response_is_not_shared(server: Server) -> None:
    """A response to a request with Authorization is not stored without public/s-maxage."""
    path = unique() + "?cc=max-age%3D60"
    server.get(path, authorization="Bearer alice")
    assert server.get(path).text.startswith("call 2")


def test_authorized_request_does_not_get_the_shared_copy(server: Server) -> None:
    """A request with Authorization is not answered with a copy stored for anyone."""
    path = unique() + "?cc=max-age%3D60"
    server.get(path)
    assert server.get(path, authorization="Bearer alice").headers["x-cache"] == "MISS"


def test_public_response_to_authorized_request_is_shared(server: Server) -> None:
    """Cache-Control: public lets a response to an authorized request be stored."""
    path = unique() + "?cc=public,max-age%3D60"
    server.get(path, authorization="Bearer alice")
    assert server.get(path).headers["x-cache"] == "HIT"


def test_body_over_the_limit_is_passed_through_not_stored(server: Server) -> None:
    """A body larger than max_body_size reaches the client whole and is not stored."""
    path = unique() + "?cc=max-age%3D60&size=200000"
    assert len(server.get(path).content) == 200_000
    assert server.get(path).headers["x-cache"] == "MISS"


def test_streamed_body_within_the_limit_is_stored(server: Server) -> None:
    """A streaming response under the limit is stored and served whole."""
    path = unique() + "?cc=max-age%3D60&size=30000&stream=10"
    first = server.get(path)
    second = server.get(path)
    assert (second.headers["x-cache"], second.content) == ("HIT", first.content)


def test_streamed_body_past_the_limit_is_not_stored(server: Server) -> None:
    """A streaming response that grows past the limit is passed through and not stored."""
    path = unique() + "?cc=max-age%3D60&size=200000&stream=20"
    server.get(path)
    second = server.get(path)
    assert (second.headers["x-cache"], len(second.content)) == ("MISS", 200_000)


def test_body_shorter_than_its_content_length_is_not_stored(server: Server) -> None:
    """A streamed body that ends before its Content-Length (an upstream broke off) is
    incomplete (RFC 9111 §3.3): the client's response is cut off, and nothing is stored."""
    path = unique() + "?cc=max-age%3D60&stream=2&cl=1000"
    with contextlib.suppress(httpx.HTTPError):
        server.get(path)
    assert server.head(path).headers["x-cache"] == "MISS"
