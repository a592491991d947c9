"""Which request cookies make a page personal, and the route opt-ins that share it anyway.

Why: a page built from a session cookie looks like any other response (no
``Vary: Cookie``, no ``Set-Cookie``), so a shared cache cannot tell it is personal.
As Varnish's built-in policy does, a request carrying a cookie is neither answered
from nor stored in the shared cache unless its route opts in (``public=True``, or
``vary_on_cookies=[names]`` keying the page on those cookies). Cookies named by
``ignore_cookies`` (analytics, consent banners; the middleware's for every route,
a rule's for its own) do not count. A request naming a cookie it may be keyed on or
built from twice (``lang=en; lang=fr``) passes too: the cache would read the first
and the framework may read the last, storing the French page under ``lang=en``.
Decided here once for the ASGI and WSGI middleware and Flask's cached views.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from ..core.errors import ConfigError

if TYPE_CHECKING:
    from .rules import Directives

__all__ = ["COOKIE_VARY", "CookieRules", "compile_names", "parse_cookies", "repeated_names"]

#: prefix of a cookie among the names a stored page varies on (``cookie:lang``); no
#: header name can carry it (``:`` is not a token character)
COOKIE_VARY = "cookie:"


def parse_cookies(header: str | None) -> dict[str, str]:
    """``"a=1; b=2"`` → ``{"a": "1", "b": "2"}`` (RFC 6265 §5.4 shape; the first of a name wins)."""
    out: dict[str, str] = {}
    if not header:
        return out
    for part in header.split(";"):
        name, _, value = part.partition("=")
        name = name.strip()
        if name and name not in out:
            out[name] = value.strip()
    return out


def repeated_names(header: str | None) -> frozenset[str]:
    """The cookie names ``header`` carries more than once (frameworks disagree on which wins)."""
    if not header:
        return frozenset()
    seen: set[str] = set()
    repeated: set[str] = set()
    for part in header.split(";"):
        name = part.partition("=")[0].strip()
        if name:
            (repeated if name in seen else seen).add(name)
    return frozenset(repeated)


def compile_names(ignore: Iterable[str]) -> re.Pattern[str] | None:
    """Cookie names or ``fnmatch`` patterns (``_ga*``) as one regex (None for none)."""
    if isinstance(ignore, str):
        raise ConfigError(f"ignore_cookies is a list of names or patterns, not {ignore!r}")
    patterns = []
    for name in ignore:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"ignore_cookies holds cookie names or patterns, not {name!r}")
        patterns.append(fnmatch.translate(name))
    return re.compile("|".join(patterns)) if patterns else None


class CookieRules:
    """The cookie names (or patterns) no page depends on: everywhere, plus per route."""

    __slots__ = ("_ignored",)

    def __init__(self, ignore: Iterable[str] = ()) -> None:
        self._ignored = compile_names(ignore)

    def relevant(self, cookies: Mapping[str, str], directives: Directives) -> set[str]:
        """The names of the request's cookies a page of this route may depend on."""
        out = set(cookies)
        for ignored in (self._ignored, directives.ignored_cookies):
            if ignored is not None:
                out = {name for name in out if not ignored.fullmatch(name)}
        return out

    def shareable(
        self,
        cookies: Mapping[str, str],
        directives: Directives,
        repeated: frozenset[str] = frozenset(),
    ) -> bool:
        """Whether a request with these cookies (``repeated``: the names it carries twice)
        may use the shared cache on its route."""
        if not cookies:
            return True
        if repeated & set(directives.vary_cookies):
            return False  # the key and the page could read two different values
        if directives.public:
            return True
        relevant = self.relevant(cookies, directives)
        if relevant & repeated:
            return False
        return not relevant or relevant <= set(directives.vary_cookies)

    def admit(self, header: str | None, directives: Directives) -> tuple[dict[str, str], bool]:
        """A ``Cookie`` header's cookies, and whether its request may use the shared cache."""
        cookies = parse_cookies(header)
        return cookies, self.shareable(cookies, directives, repeated_names(header))
