"""Request-side rules: Cache-Control directives, HEAD and conditional requests (RFC 9111 §4)."""

from __future__ import annotations

import email.utils
import time

from .apps import unique
from .conftest import Server

FRESH = "?cc=max-age%3D60"


def test_request_no_cache_goes_to_the_origin(server: Server) -> None:
    """Cache-Control: no-cache in the request bypasses the stored copy."""
    path = unique() + FRESH
    server.get(path)
    assert server.get(path, cache_control="no-cache").text.startswith("call 2")


def test_request_no_cache_response_replaces_the_stored_one(server: Server) -> None:
    """The origin's answer to a no-cache request is stored for the next requests."""
    path = unique() + FRESH
    server.get(path)
    server.get(path, cache_control="no-cache")
    assert server.get(path).text.startswith("call 2")


def test_pragma_no_cache_goes_to_the_origin(server: Server) -> None:
    """Pragma: no-cache counts when the request has no Cache-Control (RFC 9111 §5.4)."""
    path = unique() + FRESH
    server.get(path)
    assert server.get(path, pragma="no-cache").text.startswith("call 2")


def test_request_no_store_response_is_not_stored(server: Server) -> None:
    """Cache-Control: no-store in the request keeps its response out of the cache."""
    path = unique() + FRESH
    server.get(path, cache_control="no-store")
    assert server.get(path).headers["x-cache"] == "MISS"


def test_request_max_age_refuses_older_copies(server: Server) -> None:
    """Request max-age=5 does not accept a copy 10 seconds old."""
    path = unique() + FRESH
    server.get(path)
    server.advance(10)
    assert server.get(path, cache_control="max-age=5").text.startswith("call 2")


def test_request_max_age_accepts_younger_copies(server: Server) -> None:
    """Request max-age=30 accepts a copy 10 seconds old."""
    path = unique() + FRESH
    server.get(path)
    server.advance(10)
    assert server.get(path, cache_control="max-age=30").headers["x-cache"] == "HIT"


def test_request_max_stale_accepts_a_stale_copy(server: Server) -> None:
    """Request max-stale=60 accepts a copy 10 seconds past its freshness, marked STALE."""
    path = unique() + "?cc=max-age%3D30,stale-if-error%3D300"
    server.get(path)
    server.advance(40)
    assert server.get(path, cache_control="max-stale=60").headers["x-cache"] == "STALE"


def test_head_is_answered_from_a_cached_get(server: Server) -> None:
    """HEAD after a cached GET is a HIT with the GET's headers and no body."""
    path = unique() + FRESH
    length = len(server.get(path).content)
    head = server.head(path)
    assert (head.headers["x-cache"], head.headers["content-length"], head.content) == (
        "HIT",
        str(length),
        b"",
    )


def test_head_response_is_not_stored(server: Server) -> None:
    """A HEAD miss stores nothing (it has no body to serve a GET with)."""
    path = unique() + FRESH
    server.head(path)
    assert server.get(path).headers["x-cache"] == "MISS"


def test_if_none_match_gets_304_from_the_cache(server: Server) -> None:
    """If-None-Match with the stored ETag is answered 304 by the cache."""
    path = unique() + FRESH + "&etag=%22v1%22"
    server.get(path)
    answer = server.get(path, if_none_match='"v1"')
    assert (answer.status_code, answer.headers["etag"], answer.headers["x-cache"]) == (
        304,
        '"v1"',
        "HIT",
    )


def test_if_none_match_weak_comparison(server: Server) -> None:
    """W/"v1" matches "v1" for If-None-Match (weak comparison)."""
    path = unique() + FRESH + "&etag=%22v1%22"
    server.get(path)
    assert server.get(path, if_none_match='"x", W/"v1"').status_code == 304


def test_if_none_match_other_etag_gets_the_body(server: Server) -> None:
    """If-None-Match with another ETag is answered with the full stored response."""
    path = unique() + FRESH + "&etag=%22v1%22"
    first = server.get(path)
    answer = server.get(path, if_none_match='"v0"')
    assert (answer.status_code, answer.text) == (200, first.text)


def test_if_modified_since_gets_304_from_the_cache(server: Server) -> None:
    """If-Modified-Since at or after the stored Last-Modified is answered 304."""
    path = unique() + FRESH + "&lm=3600"
    server.get(path)
    since = email.utils.formatdate(time.time() + 60, usegmt=True)
    answer = server.get(path, if_modified_since=since)
    assert (answer.status_code, answer.headers["x-cache"]) == (304, "HIT")


def test_if_modified_since_before_last_modified_gets_the_body(server: Server) -> None:
    """If-Modified-Since earlier than Last-Modified gets the full response."""
    path = unique() + FRESH + "&lm=3600"
    server.get(path)
    since = email.utils.formatdate(time.time() - 7200, usegmt=True)
    assert server.get(path, if_modified_since=since).status_code == 200


def test_range_request_bypasses_the_cache(server: Server) -> None:
    """Range requests are passed to the origin (partial content is not served from cache)."""
    path = unique() + FRESH
    server.get(path)
    assert server.get(path, range="bytes=0-3").headers["x-cache"] == "MISS"


def test_request_min_fresh_refuses_copies_about_to_expire(server: Server) -> None:
    """Request min-fresh=30 does not accept a copy fresh for only 20 more seconds."""
    path = unique() + FRESH
    server.get(path)
    server.advance(40)
    assert server.get(path, cache_control="min-fresh=30").text.startswith("call 2")


def test_host_carrying_a_path_bypasses_the_cache(server: Server) -> None:
    """A Host that is not host[:port] neither stores nor finds pages: ``Host: h/x`` on ``/y``
    would otherwise be stored under the key of ``/x/y`` and poison it."""
    host = server.base.removeprefix("http://")
    path = unique() + FRESH
    assert server.get(path, host=f"{host}/hx").headers["x-cache"] == "MISS"
    assert server.get(path, host=f"{host}/hx").text.startswith("call 2")  # not served either
    victim = server.get("/hx" + path)
    assert victim.headers.get("x-cache") != "HIT"
    assert not victim.text.startswith("call")


def test_only_if_cached_miss_gets_504_without_the_app(server: Server) -> None:
    """RFC 9111 §5.2.1.7: only-if-cached with nothing stored is a 504 from the cache."""
    path = unique() + FRESH
    missed = server.get(path, cache_control="only-if-cached")
    assert (missed.status_code, missed.headers["x-cache"]) == (504, "MISS")
    assert server.get(path).text.startswith("call 1")  # the app never saw the first one
    hit = server.get(path, cache_control="only-if-cached")
    assert (hit.status_code, hit.headers["x-cache"]) == (200, "HIT")
