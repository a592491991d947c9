"""HTTP delta-seconds: clamped to 2**31 (RFC 9111 §1.2.2), so any lifetime fits every tier."""

from __future__ import annotations

import email.utils
import uuid
from typing import Any

import httpx
import pytest

import stratacache as sc
from stratacache.core.durations import MAX_DELTA_SECONDS
from stratacache.middleware import CacheMiddleware, HttpCachePolicy, WSGICacheMiddleware
from stratacache.middleware.parsing import delta_seconds, parse_cache_control, seconds
from stratacache.middleware.policy import Request
from stratacache.middleware.rules import Directives

NOW = 1_700_000_000.0
HUGE = ["2147483649", "99999999999999999999", "9" * 400, "0" * 50 + "7" * 30]


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("0", 0),
        ("60", 60),
        ("2147483648", 2**31),
        *[(h, 2**31) for h in HUGE],
        ("000060", 60),
    ],
)
def test_delta_seconds_are_clamped(raw: str, value: int) -> None:
    """1*DIGIT of any length parses, and beyond 2**31 it is 2**31."""
    assert delta_seconds(raw) == value


@pytest.mark.parametrize("raw", ["", "-5", "+5", "5.5", " 5", "1_000", "²", "٣", "5s", "0x10"])
def test_only_ascii_digits_are_delta_seconds(raw: str) -> None:
    """Anything but ASCII digits is not delta-seconds (a directive with it counts as 0)."""
    assert delta_seconds(raw) is None
    assert seconds({"max-age": raw}, "max-age") == 0


def _plan(policy: HttpCachePolicy, *headers: tuple[bytes, bytes]) -> Any:
    req = policy.request("GET", "http://h/p", "/p", {}, Directives())
    assert isinstance(req, Request)
    return policy.plan(req, 200, list(headers), NOW)


@pytest.mark.parametrize("huge", HUGE)
@pytest.mark.parametrize(
    "cache_control",
    [
        "max-age={}",
        "s-maxage={}",
        "max-age=60, stale-while-revalidate={}",
        "max-age=1, stale-if-error={}",
    ],
)
def test_huge_response_lifetimes_are_stored_within_the_maximum(
    cache_control: str, huge: str
) -> None:
    """A response with enormous delta-seconds is stored with a TTL of at most 2**31 s."""
    policy = HttpCachePolicy()
    plan = _plan(policy, (b"cache-control", cache_control.format(huge).encode()))
    assert plan.store and 0 < plan.ttl <= MAX_DELTA_SECONDS
    assert plan.lifetime <= MAX_DELTA_SECONDS


def test_expires_in_year_9999_is_clamped() -> None:
    """Expires minus Date beyond 2**31 s is 2**31 s."""
    policy = HttpCachePolicy()
    plan = _plan(
        policy,
        (b"date", email.utils.formatdate(NOW, usegmt=True).encode()),
        (b"expires", b"Fri, 31 Dec 9999 23:59:59 GMT"),
    )
    assert plan.store and plan.lifetime == MAX_DELTA_SECONDS == plan.ttl


@pytest.mark.parametrize("age", ["99999999999999999999", "²", "-1", "1e9"])
def test_odd_age_headers_never_raise(age: str) -> None:
    """A huge Age makes the response stale on arrival; a malformed one counts as 0."""
    policy = HttpCachePolicy()
    plan = _plan(policy, (b"cache-control", b"max-age=60"), (b"age", age.encode()))
    assert plan.store is (not age.isascii() or not age.isdigit())


def test_non_ascii_content_length_is_not_a_size() -> None:
    """A Content-Length that is not ASCII digits does not raise; the response is not stored,
    since whether its body is complete cannot be told (RFC 9112 §6.3: an invalid length)."""
    policy = HttpCachePolicy(max_body_size=10)
    plan = _plan(policy, (b"cache-control", b"max-age=60"), (b"content-length", "²".encode()))
    assert not plan.store
    plan = _plan(policy, (b"cache-control", b"max-age=60"), (b"content-length", b"5"))
    assert (plan.store, plan.length) == (True, 5)


def test_request_directives_clamp_too() -> None:
    """A request's max-stale of 20 digits is 2**31, not an overflow."""
    cc = parse_cache_control("max-stale=99999999999999999999, min-fresh=" + "9" * 30)
    assert seconds(cc, "max-stale") == seconds(cc, "min-fresh") == MAX_DELTA_SECONDS


async def _origin(scope: Any, receive: Any, send: Any) -> None:
    cc = scope["query_string"].decode().removeprefix("cc=").replace("%3D", "=")
    headers = [(b"cache-control", cc.encode()), (b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": uuid.uuid4().hex.encode()})


@pytest.mark.parametrize("directive", ["max-age", "s-maxage"])
async def test_twenty_digit_max_age_is_stored_in_redis(redis_url: str, directive: str) -> None:
    """A 20-digit max-age through the ASGI middleware lands in Redis with no tier error."""
    cache = sc.Cache(tiers=[sc.RedisTier(url=redis_url)], namespace="h" + uuid.uuid4().hex[:8])
    app = CacheMiddleware(_origin, cache)
    async with cache:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            url = f"/p?cc={directive}%3D99999999999999999999"
            first = await client.get(url)
            second = await client.get(url)
        redis_stats = cache.stats()["tiers"]["redis"]
    assert first.headers["x-cache"] == "MISS" and second.headers["x-cache"] == "HIT"
    assert second.text == first.text
    assert redis_stats["errors"] == 0 and redis_stats["sets"] >= 1


def _wsgi_origin(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    cc = environ["QUERY_STRING"].removeprefix("cc=").replace("%3D", "=")
    start_response("200 OK", [("Cache-Control", cc), ("Content-Type", "text/plain")])
    return [uuid.uuid4().hex.encode()]


@pytest.mark.parametrize("directive", ["max-age", "s-maxage"])
def test_twenty_digit_max_age_is_stored_in_redis_by_wsgi(redis_url: str, directive: str) -> None:
    """The WSGI middleware stores the same response through the sync client, no tier error."""
    cache = sc.Cache(tiers=[sc.RedisTier(url=redis_url)], namespace="h" + uuid.uuid4().hex[:8])
    app = WSGICacheMiddleware(_wsgi_origin, cache)
    try:
        with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
            url = f"/p?cc={directive}%3D99999999999999999999"
            first, second = client.get(url), client.get(url)
        redis_stats = cache.stats()["tiers"]["redis"]
    finally:
        cache.sync.close()
    assert first.headers["x-cache"] == "MISS" and second.headers["x-cache"] == "HIT"
    assert second.text == first.text
    assert redis_stats["errors"] == 0 and redis_stats["sets"] >= 1
