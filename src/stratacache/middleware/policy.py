"""The RFC 9111 shared-cache policy, free of I/O, shared by the ASGI and WSGI middleware.

The middleware modules only move bytes and call the cache; every decision
lives here: which requests may be answered from the cache (§4), which
responses may be stored and for how long (§3, §4.2), how old a stored
response is (§4.2.3), when a stale one may still be served (RFC 5861
``stale-while-revalidate`` / ``stale-if-error``), conditional requests
(RFC 9110 §13) and the keys.

Keys follow a two-step Vary lookup: the *primary* key of a URL holds either
the response itself (no ``Vary``) or the list of header names the response
varies on; the *variant* key adds the request's values for those headers.
Every stored entry carries the tag ``url:<digest>`` so a URL is purged with
all its variants by one tag invalidation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..core.clock import Clock, SystemClock
from ..core.durations import MAX_DELTA_SECONDS, check_duration, check_optional
from ..core.errors import ConfigError
from ..core.keys import digest
from .cookies import COOKIE_VARY, CookieRules
from .decisions import Headers, Lookup, Plan, Request, Verdict
from .freshness import HEURISTIC_STATUSES, UNDERSTOOD_STATUSES, freshness_lifetime
from .parsing import (
    content_length,
    delta_seconds,
    http_date,
    normalize_url,
    parse_cache_control,
    primary_key,
    seconds,
    url_tag,
    valid_host,
)
from .rules import CacheRule, Directives, RouteRules
from .stored import StoredResponse

__all__ = [
    "HEURISTIC_STATUSES",
    "UNDERSTOOD_STATUSES",
    "HttpCachePolicy",
    "Lookup",
    "Plan",
    "Request",
    "Verdict",
]


#: Hop-by-hop and per-delivery headers never stored (RFC 9111 §3.1, RFC 9110 §7.6.1).
_UNSTORED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"age",
        b"x-cache",
        b"content-length",
    }
)
#: Headers a 304 carries over from the stored response (RFC 9110 §15.4.5).
_NOT_MODIFIED_KEEP = frozenset(
    {b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary", b"last-modified"}
)


class HttpCachePolicy:
    """Configuration plus every HTTP caching decision; one instance per middleware."""

    def __init__(
        self,
        *,
        rules: Iterable[CacheRule] = (),
        default_ttl: float | None = None,
        max_body_size: int = 1 << 20,
        allow_set_cookie: bool = False,
        share_authorized: bool = False,
        heuristic: bool = True,
        heuristic_max: float = 86400.0,
        tags_header: str = "x-cache-tags",
        ignore_query_params: Iterable[str] = (),
        ignore_cookies: Iterable[str] = (),
        key_prefix: str = "http",
        clock: Clock | None = None,
        collapse: bool | str = True,
        collapse_timeout: float = 5.0,
    ) -> None:
        if not (isinstance(collapse, bool) or collapse == "fleet"):
            raise ConfigError(f"collapse must be True, False or 'fleet', not {collapse!r}")
        collapse_timeout = check_duration("collapse_timeout", collapse_timeout, zero_ok=True)
        if not isinstance(max_body_size, int) or max_body_size < 0:
            raise ConfigError(f"max_body_size must be an int >= 0, not {max_body_size!r}")
        default_ttl = check_optional("default_ttl", default_ttl, zero_ok=True)
        heuristic_max = check_duration("heuristic_max", heuristic_max, zero_ok=True)
        if not key_prefix or ":" in key_prefix:
            raise ConfigError(f"key_prefix must be non-empty without ':', not {key_prefix!r}")
        self.rules = RouteRules(rules)
        self.default_ttl = default_ttl
        self.max_body_size = max_body_size
        self.allow_set_cookie = allow_set_cookie
        self.share_authorized = share_authorized
        self.heuristic = heuristic
        self.heuristic_max = heuristic_max
        self.tags_header = tags_header.lower().encode("latin-1")
        self.ignore = frozenset(ignore_query_params)
        self.cookies = CookieRules(ignore_cookies)
        self.key_prefix = key_prefix
        self.collapse = bool(collapse)
        #: collapse across processes too, under the cache's fleet lock
        self.collapse_fleet = collapse == "fleet"
        self.collapse_timeout = collapse_timeout
        self.now: Callable[[], float] = (clock or SystemClock()).time
        self.url = functools.lru_cache(maxsize=4096)(self._url)

    def _url(self, scheme: str, host: str, path: str, query: str) -> str:
        return normalize_url(scheme, host, path, query, self.ignore)

    def directives(self, path: str) -> Directives:
        """Fresh directives for a request to ``path`` from the route rules."""
        return self.rules.directives(path, self.default_ttl)

    # -- keys ---------------------------------------------------------------------------------

    def primary_key(self, url: str) -> str:
        """The key holding a URL's response (no Vary) or its Vary header names."""
        return primary_key(self.key_prefix, url)

    def variant_key(self, req: Request, names: Sequence[str]) -> str:
        """The key of the variant selected by the request's values of the ``Vary`` headers
        (and of the cookies its route varies on, named ``cookie:<name>``)."""
        headers, cookies = req.headers, req.cookies
        values = "\n".join(
            f"{n}:{cookies.get(n[len(COOKIE_VARY) :], '')}"
            if n.startswith(COOKIE_VARY)
            else f"{n}:{' '.join(headers.get(n, '').split())}"
            for n in names
        )
        return f"{self.primary_key(req.url)}#v:{digest(values.encode('latin-1', 'replace'))}"

    def collapse_key(self, req: Request, variant_key: str | None) -> str | None:
        """The key concurrent misses of ``req`` wait on while one of them runs the app, or None.

        Only requests whose response could be stored and served to them collapse (a
        ``no-cache``/``no-store`` request, a HEAD or a Range request goes straight to the app),
        and they collapse per variant once the URL's ``Vary`` is known, per URL before that
        (as nginx's ``proxy_cache_lock``).
        """
        if not (self.collapse and req.may_serve and req.may_store):
            return None
        return variant_key or self.primary_key(req.url)

    def resolve_primary(self, req: Request, primary: Any) -> tuple[str | None, Any]:
        """Step one of the Vary lookup: ``(variant key to fetch, None)`` when the primary entry
        lists Vary headers, else ``(None, the stored response value or None)``."""
        if not isinstance(primary, dict):
            return None, None
        value = primary.get("r")
        if value is not None:
            return None, value
        names = primary.get("v")
        if not isinstance(names, list) or not names:
            return None, None
        return self.variant_key(req, names), None

    def lookup(self, req: Request, value: Any) -> Lookup | None:
        """Step two: a stored response value judged for ``req``, or None when unusable."""
        stored = StoredResponse.from_value(value)
        if stored is None:
            return None
        judged = self.judge(req, stored, self.now())
        return judged if isinstance(judged, Lookup) else None

    # -- requests -----------------------------------------------------------------------------

    def request(
        self, method: str, url: str, path: str, headers: Mapping[str, str], directives: Directives
    ) -> Request:
        """Classify a GET/HEAD request: may the cache answer it, may its response be stored.

        A request with cookies its route has not declared shareable goes to the app and its
        response is not stored (``cookies``): the page may have been built from them.
        A request whose ``Host`` is not a valid host[:port] bypasses the cache (``keyed``):
        its URL would not name what it asks for.
        """
        cc = parse_cache_control(headers.get("cache-control"))
        if not cc and "no-cache" in headers.get("pragma", "").lower():
            cc = {"no-cache": None}  # RFC 9111 §5.4: Pragma only counts without Cache-Control
        cookies, shareable = self.cookies.admit(headers.get("cookie"), directives)
        keyed = valid_host(headers.get("host"))
        usable = keyed and directives.enabled and "range" not in headers and shareable
        may_serve = usable and "no-cache" not in cc
        may_store = usable and method == "GET" and "no-store" not in cc
        return Request(
            method, url, path, headers, directives, cc, may_serve, may_store, cookies, keyed
        )

    def judge(self, req: Request, stored: StoredResponse, now: float) -> Verdict | Lookup:
        """How the stored response may be used for this request (RFC 9111 §4, RFC 5861)."""
        if "authorization" in req.headers and not (stored.auth_ok or self.share_authorized):
            return Verdict.UNUSABLE  # §3.5: never hand a shared copy to an authenticated request
        age = stored.age(now)
        fresh = stored.lifetime - age
        cc = req.cc
        max_age = seconds(cc, "max-age")
        min_fresh = seconds(cc, "min-fresh") or 0
        iage = math.floor(age)
        if fresh > min_fresh and (max_age is None or age <= max_age):
            return Lookup(Verdict.FRESH, stored, iage, False)
        if max_age is not None and age > max_age:
            return Verdict.UNUSABLE  # older than this client accepts, stale or not
        if fresh > 0:
            return Verdict.UNUSABLE  # fresh, but not for as long as min-fresh asks
        staleness = -fresh
        if stored.must_revalidate:
            return Verdict.UNUSABLE
        if "max-stale" in cc:
            limit = cc["max-stale"]
            if limit is None or staleness <= (seconds(cc, "max-stale") or 0):
                return Lookup(Verdict.STALE_OK, stored, iage, False)
        if staleness < stored.swr:
            return Lookup(Verdict.STALE_OK, stored, iage, True)
        if staleness < stored.sie:
            return Lookup(Verdict.STALE_IF_ERROR, stored, iage, False)
        return Verdict.UNUSABLE

    # -- conditional requests -----------------------------------------------------------------

    @staticmethod
    def not_modified(headers: Mapping[str, str], stored: StoredResponse) -> bool:
        """True when the request's validators match the stored response (RFC 9110 §13.2.2)."""
        if stored.status != 200:
            return False
        inm = headers.get("if-none-match")
        if inm is not None:
            if stored.etag is None:
                return inm.strip() == "*"
            mine = stored.etag.removeprefix("W/")
            for tag in inm.split(","):
                tag = tag.strip()
                if tag == "*" or tag.removeprefix("W/") == mine:
                    return True
            return False
        since = http_date(headers.get("if-modified-since"))
        modified = stored.last_modified
        return since is not None and modified is not None and modified <= since

    # -- answers from the cache ---------------------------------------------------------------

    @staticmethod
    def only_if_cached_miss(req: Request, found: Lookup | None) -> bool:
        """Whether to answer 504 without the app: the request said ``only-if-cached`` and the
        cache holds nothing that answers it (RFC 9111 §5.2.1.7)."""
        return "only-if-cached" in req.cc and not (found is not None and found.answers)

    #: the cache's own 504 for an ``only-if-cached`` request it cannot answer
    GATEWAY_TIMEOUT: tuple[tuple[bytes, bytes], ...] = (
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"0"),
        (b"x-cache", b"MISS"),
    )

    @staticmethod
    def served_headers(stored: StoredResponse, age: int, label: bytes) -> Headers:
        """Headers for a 200-like answer from the cache: stored ones plus framing, Age, X-Cache."""
        headers = list(map(tuple, stored.headers))
        headers.append((b"content-length", str(len(stored.body)).encode()))
        headers.append((b"age", str(age).encode()))
        headers.append((b"x-cache", label))
        return headers  # type: ignore[return-value]

    @staticmethod
    def not_modified_headers(stored: StoredResponse, age: int, label: bytes) -> Headers:
        """Headers of a 304 built from the stored response."""
        headers: Headers = [(n, v) for n, v in stored.headers if n in _NOT_MODIFIED_KEEP]
        headers.append((b"age", str(age).encode()))
        headers.append((b"x-cache", label))
        return headers

    # -- storing origin responses -------------------------------------------------------------

    def plan(self, req: Request, status: int, headers: Headers, now: float) -> Plan:
        """Decide whether the origin's response is stored; strip what the client must not see.

        Called once the endpoint ran: ``req.directives`` holds what it set through
        ``@cache_response`` (``enabled=False`` keeps its response out of the cache).
        """
        client: Headers = []
        stored: Headers = []
        tags = list(req.directives.tags)
        fields: dict[bytes, str] = {}
        cookie = False
        for name, value in headers:
            lname = name.lower()
            if lname == self.tags_header:
                tags.extend(t.strip() for t in value.decode("latin-1").split(",") if t.strip())
                continue
            if lname == b"x-cache":
                continue
            client.append((name, value))
            if lname == b"set-cookie":
                cookie = True
                continue
            if lname in fields:
                fields[lname] += ", " + value.decode("latin-1")
            else:
                fields[lname] = value.decode("latin-1")
            if lname not in _UNSTORED:
                stored.append((lname, value))
        client.append((b"x-cache", b"MISS"))
        plan = Plan(client, False, stored, status, 0.0, 0.0, tags, ())
        if not req.may_store or (cookie and not self.allow_set_cookie):
            return plan
        if not req.directives.enabled:  # the endpoint turned caching off while it ran
            return plan
        cc = parse_cache_control(fields.get(b"cache-control"))
        if "no-store" in cc or "private" in cc or "no-cache" in cc:
            return plan
        explicit = "public" in cc or "s-maxage" in cc or "must-revalidate" in cc
        if "authorization" in req.headers and not (explicit or self.share_authorized):
            return plan
        vary = tuple(v.strip().lower() for v in fields.get(b"vary", "").split(",") if v.strip())
        if "*" in vary:
            return plan
        length = None
        if b"content-length" in fields:
            length = content_length(fields[b"content-length"])
            if length is None or length > self.max_body_size:
                return plan
        lifetime = freshness_lifetime(
            cc, fields, status, req.directives.ttl, now, self.heuristic, self.heuristic_max
        )
        if lifetime is None:
            return plan
        initial_age = float(delta_seconds(fields.get(b"age")) or 0)
        revalidate = "must-revalidate" in cc or "proxy-revalidate" in cc or "s-maxage" in cc
        swr = 0 if revalidate else (seconds(cc, "stale-while-revalidate") or 0)
        sie = 0 if revalidate else (seconds(cc, "stale-if-error") or 0)
        ttl = lifetime - initial_age + max(swr, sie)
        if ttl <= 0:
            return plan
        extra = tuple(v for v in req.directives.vary if v not in vary)
        extra += tuple(COOKIE_VARY + name for name in req.directives.vary_cookies)
        plan.store = True
        plan.length = length
        plan.lifetime = lifetime
        plan.ttl = float(min(math.ceil(ttl), MAX_DELTA_SECONDS))  # §1.2.2: overflow is 2**31
        plan.vary = tuple(sorted(set(vary + extra)))
        plan.tags = [*dict.fromkeys(tags), url_tag(req.url)]
        plan.initial_age, plan.swr, plan.sie = initial_age, swr, sie
        plan.must_revalidate, plan.auth_ok = revalidate, explicit
        return plan

    @staticmethod
    def complete(plan: Plan, size: int) -> bool:
        """Whether a streamed body of ``size`` bytes is all the response declared.

        RFC 9111 §3.3: a body that ends short of (or runs past) its ``Content-Length`` is
        incomplete, and an incomplete response is never stored as if it were complete.
        """
        return plan.length is None or plan.length == size

    def build(self, req: Request, plan: Plan, body: bytes, now: float) -> list[tuple[str, Any]]:
        """The ``(key, value)`` pairs to write for a stored response (primary, then variant)."""
        fields = {n: v for n, v in plan.stored_headers}
        stored = StoredResponse(
            status=plan.status,
            headers=plan.stored_headers,
            body=body,
            response_time=now,
            initial_age=plan.initial_age,
            lifetime=plan.lifetime,
            swr=plan.swr,
            sie=plan.sie,
            must_revalidate=plan.must_revalidate,
            auth_ok=plan.auth_ok,
            etag=fields[b"etag"].decode("latin-1") if b"etag" in fields else None,
            last_modified=http_date(
                (fields.get(b"last-modified") or fields.get(b"date") or b"").decode("latin-1")
            ),
        )
        primary = self.primary_key(req.url)
        if not plan.vary:
            return [(primary, {"v": [], "r": stored.to_value()})]
        return [
            (primary, {"v": list(plan.vary)}),
            (self.variant_key(req, plan.vary), {"r": stored.to_value()}),
        ]
