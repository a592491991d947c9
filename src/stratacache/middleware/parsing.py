"""HTTP parsing helpers for the cache policy: Cache-Control, dates, URLs, keys and tags.

Kept apart from ``policy`` so the decisions read without the string handling.
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from ..core.durations import MAX_DELTA_SECONDS, clamp_delta_seconds
from ..core.keys import digest

_SAFE_PATH = "/:@!$&'()*+,;=-._~"
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_MAX_READABLE_KEY = 800
#: RFC 3986 ``host [ ":" port ]``: an IP literal in brackets, or a reg-name (which covers IPv4)
_HOST = re.compile(
    r"(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+)"
    r"(?::[0-9]{1,5})?",
    re.ASCII,
)


def request_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """An ASGI scope's lower-case header names to values, repeated headers joined with ``", "``.

    Repeated ``cookie`` fields (HTTP/2 and HTTP/3 send each cookie in a field of its
    own) are joined with ``"; "`` as RFC 9113 section 8.2.3 says: joined with a comma,
    the second field's cookies would hide inside the first one's value.
    """
    out: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name in out:
            value = f"{out[name]}{'; ' if name == 'cookie' else ', '}{value}"
        out[name] = value
    return out


def parse_cache_control(value: str | None) -> dict[str, str | None]:
    """``"max-age=60, no-cache"`` → ``{"max-age": "60", "no-cache": None}`` (first one wins)."""
    if not value:
        return {}
    out: dict[str, str | None] = {}
    for part in value.split(","):
        name, sep, arg = part.partition("=")
        name = name.strip().lower()
        if name and name not in out:
            out[name] = arg.strip().strip('"') if sep else None
    return out


def seconds(directives: Mapping[str, str | None], name: str) -> int | None:
    """A delta-seconds directive; an invalid value counts as 0 (RFC 9111 §1.2.2: stale)."""
    if name not in directives:
        return None
    found = delta_seconds(directives[name])
    return 0 if found is None else found


def delta_seconds(raw: str | None) -> int | None:
    """``1*DIGIT`` (ASCII digits only) as an int clamped to 2**31 (RFC 9111 §1.2.2), or None.

    A value of any length is accepted and clamped, so a 20-digit ``max-age`` means
    2**31 s rather than a number no tier can store.
    """
    if not raw or not raw.isascii() or not raw.isdigit():
        return None
    if len(raw) > 10:  # more than 2**31 for sure; skip the big-int conversion
        return MAX_DELTA_SECONDS
    return clamp_delta_seconds(int(raw))


def content_length(value: str) -> int | None:
    """A ``Content-Length`` value as an int, or None when invalid.

    A list of identical values (``"20, 20"``) counts as one (RFC 9110 §8.6); anything
    else that is not ``1*DIGIT`` is invalid.
    """
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1:
        return None
    found = values.pop()
    return int(found) if found.isascii() and found.isdigit() else None


def http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def valid_host(host: str | None) -> bool:
    """Whether a ``Host`` value is a plain ``host[:port]`` (RFC 9110 §7.2, RFC 3986 §3.2.2).

    The host is pasted in front of the path in the cache URL, so one carrying ``/``,
    ``?``, ``#``, ``@``, spaces or anything else outside the grammar could name another
    URL's key; such a request bypasses the cache. None (no ``Host``) is valid: the
    server's own name stands in.
    """
    if host is None:
        return True
    match = _HOST.fullmatch(host)
    if match is None:
        return False
    literal = match.group("ip6")
    if literal is not None:
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return False
    return True


def normalize_url(scheme: str, host: str, path: str, query: str, ignore: frozenset[str]) -> str:
    """The method-independent cache URL: lower-case scheme/host, no default port, sorted query.

    ``path`` is the decoded path; it is re-encoded the same way whatever its
    original escaping, so ``/a%20b`` and ``/a b`` are one URL. Query pairs are
    sorted by name only, keeping the order of repeated names.
    """
    scheme = scheme.lower()
    host = host.strip().lower()
    name, sep, port = host.rpartition(":")
    if sep and port == _DEFAULT_PORTS.get(scheme):
        host = name
    url = f"{scheme}://{host}{quote(path or '/', safe=_SAFE_PATH)}"
    if query:
        pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in ignore]
        if pairs:
            pairs.sort(key=lambda kv: kv[0])
            url += "?" + urlencode(pairs, quote_via=quote)
    return url


def split_url(url: str, ignore: frozenset[str] = frozenset()) -> str:
    """Normalize a full URL string (as given to ``purge_url``) like a request's URL."""
    parts = urlsplit(url)
    return normalize_url(parts.scheme, parts.netloc, unquote(parts.path), parts.query, ignore)


def primary_key(prefix: str, url: str) -> str:
    """``<prefix>:<normalized url>`` (a digest for very long URLs)."""
    if len(url) > _MAX_READABLE_KEY:
        url = "#" + digest(url.encode())
    return f"{prefix}:{url}"


def url_tag(url: str) -> str:
    """The internal tag every stored variant of ``url`` (normalized) carries."""
    return "url:" + digest(url.encode())


def status_line(status: int) -> str:
    """``200 OK`` for WSGI's ``start_response``."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def is_error_status(status: int) -> bool:
    """Origin failures that ``stale-if-error`` may hide (RFC 5861 §4)."""
    return status in (500, 502, 503, 504)


def invalidates(method: str, status: int) -> bool:
    """RFC 9111 §4.4: a non-error answer to an unsafe method invalidates the target URI."""
    return method not in ("GET", "HEAD", "OPTIONS", "TRACE") and 200 <= status < 400
