"""How long an origin response stays fresh (RFC 9111 §4.2.1), and which statuses are stored.

Why: the freshness lifetime is the one computation every stored response goes
through, with its own RFC rules (explicit ages, Expires minus Date, heuristics);
kept apart from the rest of the policy, it reads against the RFC line by line.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..core.durations import MAX_DELTA_SECONDS
from .parsing import http_date, seconds

#: RFC 9110 §15.1: statuses cacheable without explicit freshness (206 left out: no Range support).
HEURISTIC_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
#: Statuses we store when the response gives explicit freshness.
UNDERSTOOD_STATUSES = HEURISTIC_STATUSES | {302, 303, 307}


def freshness_lifetime(
    cc: Mapping[str, str | None],
    fields: Mapping[bytes, str],
    status: int,
    default: float | None,
    now: float,
    heuristic: bool,
    heuristic_max: float,
) -> float | None:
    """Freshness lifetime in seconds (RFC 9111 §4.2.1), or None when the response must not
    be stored.

    ``cc`` is the parsed Cache-Control, ``fields`` the response's header fields (lower-case
    names), ``default`` the route's ttl; without explicit freshness, ``heuristic`` allows 10%
    of the time since Last-Modified, at most ``heuristic_max`` seconds (§4.2.2).
    """
    if status not in UNDERSTOOD_STATUSES:
        return None
    for name in ("s-maxage", "max-age"):
        value = seconds(cc, name)
        if value is not None:
            return float(value)
    if b"expires" in fields:
        expires = http_date(fields[b"expires"])
        date = http_date(fields.get(b"date")) or now
        if expires is None:
            return 0.0
        return float(min(max(0.0, expires - date), MAX_DELTA_SECONDS))
    if status not in HEURISTIC_STATUSES and "public" not in cc:
        return None
    if default is not None:
        return float(default)
    modified = http_date(fields.get(b"last-modified"))
    if heuristic and modified is not None:
        date = http_date(fields.get(b"date")) or now
        return min(max(0.0, (date - modified) * 0.1), heuristic_max)  # §4.2.2
    return None
