"""Fuzzing the HTTP policy's inputs: stored values, app response headers and request headers."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stratacache.middleware.policy import HttpCachePolicy, Lookup, Plan, Request, Verdict
from stratacache.middleware.rules import Directives
from stratacache.middleware.stored import StoredResponse

FUZZ = settings(
    max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
POLICY = HttpCachePolicy(default_ttl=60)
NOW = 1_700_000_000.0

numbers = (
    st.integers(-(2**70), 2**70)
    | st.floats()
    | st.none()
    | st.booleans()
    | st.text(max_size=5)
    | st.binary(max_size=5)
)
anything = st.recursive(
    numbers, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=2), c, max_size=3)
)
header_pairs = st.lists(
    st.lists(st.binary(max_size=10) | st.integers(-5, 2**40) | st.text(max_size=5), max_size=3),
    max_size=4,
)
stored_values = st.fixed_dictionaries(
    {
        "s": numbers,
        "h": header_pairs | anything,
        "b": st.binary(max_size=20) | anything,
        "t": numbers,
        "a": numbers,
        "l": numbers,
        "w": numbers,
        "e": numbers,
        "m": numbers,
        "z": numbers,
        "g": numbers,
        "d": numbers,
    }
)
header_values = st.text(st.characters(max_codepoint=255), max_size=40)
request_headers = st.dictionaries(
    st.sampled_from(
        ["cache-control", "pragma", "authorization", "range", "if-none-match",
         "if-modified-since", "accept-encoding"]
    ),
    header_values,
)  # fmt: skip
response_headers = st.lists(
    st.tuples(
        st.sampled_from(
            [b"cache-control", b"expires", b"date", b"last-modified", b"age", b"vary", b"etag",
             b"content-length", b"set-cookie", b"x-cache-tags", b"X-Other"]
        ),
        st.binary(max_size=40),
    ),
    max_size=8,
)  # fmt: skip


def _request(headers: dict[str, str]) -> Request:
    return POLICY.request("GET", "http://h/p", "/p", headers, Directives(ttl=60))


@FUZZ
@given(value=stored_values | anything)
@example(value={"s": 200, "h": [[10**12, b""]], "b": b"", "t": 0.0, "a": 0.0, "l": 1.0,
                "w": 0, "e": 0, "m": False, "z": False, "g": None, "d": None})  # fmt: skip
@example(value={"s": 200, "h": [], "b": b"", "t": 0.0, "a": float("inf"), "l": 1.0,
                "w": 0, "e": 0, "m": False, "z": False, "g": None, "d": None})  # fmt: skip
@example(value={"s": 200, "h": [], "b": b"", "t": -1e300, "a": 1e308, "l": 1.0,
                "w": 0, "e": 0, "m": False, "z": False, "g": None, "d": None})  # fmt: skip
def test_stored_values_of_any_shape_are_a_response_or_none(value: Any) -> None:
    """A stored value from any writer rebuilds or is None, and judging it never raises."""
    stored = StoredResponse.from_value(value)
    if stored is None:
        return
    assert all(isinstance(n, bytes) and isinstance(v, bytes) for n, v in stored.headers)
    for headers in ({}, {"cache-control": "max-stale, min-fresh=5"}, {"if-none-match": "*"}):
        req = _request(headers)
        judged = POLICY.judge(req, stored, NOW)
        assert isinstance(judged, (Verdict, Lookup))
        if isinstance(judged, Lookup):
            POLICY.served_headers(stored, judged.age, b"HIT")
            POLICY.not_modified(req.headers, stored)


@FUZZ
@given(status=st.integers(100, 599), headers=response_headers, request_headers=request_headers)
def test_any_app_response_headers_give_a_plan(
    status: int, headers: list[tuple[bytes, bytes]], request_headers: dict[str, str]
) -> None:
    """The plan for any response headers is built without raising, and stores a readable value."""
    req = _request(request_headers)
    plan = POLICY.plan(req, status, headers, NOW)
    assert isinstance(plan, Plan)
    if plan.store:
        for _, value in POLICY.build(req, plan, b"body", NOW):
            if "r" in value:
                assert StoredResponse.from_value(value["r"]) is not None
