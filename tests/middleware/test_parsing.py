"""Fuzzing the HTTP parsing helpers: any header text parses without raising."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stratacache.core.durations import MAX_DELTA_SECONDS
from stratacache.middleware.parsing import (
    content_length,
    delta_seconds,
    http_date,
    normalize_url,
    parse_cache_control,
    seconds,
    valid_host,
)

FUZZ = settings(
    max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
# header text as servers hand it over: latin-1 decoded bytes, plus directive-like fragments
header_text = st.text(st.characters(max_codepoint=255), max_size=200) | st.lists(
    st.sampled_from(
        ["max-age", "s-maxage", "no-cache", "no-store", "private", "=", ",", '"', " ", "\t",
         "stale-while-revalidate", "stale-if-error", "public", "60", "-1", "9" * 30, "١٢", "0x10"]
    ),
    max_size=20,
).map("".join)  # fmt: skip


@FUZZ
@given(value=st.none() | header_text)
@example(value="max-age=60, max-age=0")
@example(value='max-age="60"')
def test_cache_control_parses_any_text_into_lowercase_directives(value: str | None) -> None:
    """parse_cache_control never raises; names are lower-case and stripped, arguments str/None."""
    parsed = parse_cache_control(value)
    for name, arg in parsed.items():
        assert name and name == name.strip().lower()
        assert arg is None or isinstance(arg, str)
        found = seconds(parsed, name)
        assert found is not None and 0 <= found <= MAX_DELTA_SECONDS


@FUZZ
@given(raw=st.none() | header_text)
@example(raw="1" * 5000)
@example(raw="١٢٣")
def test_delta_seconds_is_none_or_a_clamped_non_negative_int(raw: str | None) -> None:
    """delta-seconds: ASCII digits only, clamped to 2**31; anything else is None."""
    found = delta_seconds(raw)
    assert found is None or 0 <= found <= MAX_DELTA_SECONDS
    assert (found is not None) == bool(raw and raw.isascii() and raw.isdigit())


@FUZZ
@given(value=st.none() | header_text)
@example(value="Sun, 06 Nov 1994 08:49:37 GMT")
@example(value="Sun, 06 Nov 99999 08:49:37 GMT")
def test_http_date_is_none_or_a_timestamp(value: str | None) -> None:
    """http_date never raises: a float timestamp or None."""
    found = http_date(value)
    assert found is None or isinstance(found, float)


@FUZZ
@given(
    scheme=st.sampled_from(["http", "https"]),
    host=header_text,
    path=st.text(max_size=60),
    query=st.text(max_size=60),
)
def test_normalize_url_accepts_any_request_line(
    scheme: str, host: str, path: str, query: str
) -> None:
    """URL normalisation of any host/path/query gives a string (the key's input), never an error."""
    assert isinstance(normalize_url(scheme, host, path, query, frozenset({"utm_source"})), str)


def test_valid_host_takes_host_and_port_only() -> None:
    """A Host value is a reg-name, an IPv4 address or a bracketed IPv6 one, with a port."""
    for good in (
        "shop",
        "Shop.example:8080",
        "127.0.0.1:80",
        "[::1]",
        "[2001:db8::1]:443",
        "a%41b",
    ):
        assert valid_host(good), good
    assert valid_host(None)  # no Host: the server's own name stands in
    bad = ("shop/home", "shop?x", "shop#x", "user@shop", "shop home", "", "shop:", "shop:8x")
    for value in (*bad, "[::1", "[zz::1]", "shop%2", "shop\n", "a, b", "shop:123456"):
        assert not valid_host(value), value


def test_content_length_accepts_digits_or_a_list_of_one_value() -> None:
    """``1*DIGIT``, or identical values listed (RFC 9110 §8.6); anything else is invalid."""
    assert [content_length(v) for v in ("20", "20, 20", "0")] == [20, 20, 0]
    assert [content_length(v) for v in ("20, 21", "", "-1", "2e3", "\u0661")] == [None] * 5
