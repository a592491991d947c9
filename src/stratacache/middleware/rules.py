"""Per-route caching rules and the ``cache_response`` decorator.

A request's *directives* (freshness to assume, tags, extra Vary headers,
caching on/off) start from the first matching ``CacheRule`` and may be
refined by the endpoint itself through ``@cache_response(...)``. The
decorator reaches the middleware through a context variable that the
middleware sets for the duration of the call, so it works the same way for
ASGI (Starlette, FastAPI) and WSGI (Flask) endpoints, sync or async, without
any response header leaking to the client.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from ..core.durations import check_optional
from ..core.errors import ConfigError
from ..core.keys import KeyTemplate
from .cookies import compile_names

__all__ = ["CacheRule", "Directives", "RouteRules", "cache_response", "current_directives"]

F = TypeVar("F", bound=Callable[..., Any])

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::path)?\}|\*")


@dataclass(slots=True)
class Directives:
    """What the configuration says about one request; mutable while the endpoint runs."""

    ttl: float | None = None
    tags: list[str] = field(default_factory=list)
    vary: tuple[str, ...] = ()
    enabled: bool = True
    public: bool = False  # requests with cookies share the page (see ``cookies``)
    vary_cookies: tuple[str, ...] = ()  # cookies keying the page; requests with others pass
    ignored_cookies: re.Pattern[str] | None = None  # cookies this route's pages never read


_current: contextvars.ContextVar[Directives | None] = contextvars.ContextVar(
    "stratacache_http_directives", default=None
)


def current_directives() -> Directives | None:
    """The directives of the request being handled, or None outside the middleware."""
    return _current.get()


@contextlib.contextmanager
def directives_in_effect(directives: Directives) -> Iterator[Directives]:
    """Make ``directives`` the current request's while the endpoint runs (the middlewares)."""
    token = _current.set(directives)
    try:
        yield directives
    finally:
        _current.reset(token)


def _compile(pattern: str) -> re.Pattern[str]:
    """``/products/{id}`` (one segment), ``/files/{rest:path}`` and ``*`` to an anchored regex."""
    out: list[str] = []
    pos = 0
    for match in _PARAM.finditer(pattern):
        out.append(re.escape(pattern[pos : match.start()]))
        token = match.group(0)
        if token == "*":
            out.append(".*")
        elif token.endswith(":path}"):
            out.append(f"(?P<{match.group(1)}>.*)")
        else:
            out.append(f"(?P<{match.group(1)}>[^/]+)")
        pos = match.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("".join(out))


class CacheRule:
    """Caching settings for the paths matching ``pattern``.

    Args:
        pattern: a path such as ``/products/{id}``, ``/static/{path:path}`` or ``/admin/*``.
        ttl: freshness (seconds) for responses that carry no ``max-age``/``Expires`` of their own.
        tags: tag templates filled from the pattern's parameters, e.g. ``"product:{id}"``.
        vary: request headers added to the cache key beside the response's ``Vary``.
        enabled: False turns caching off for these paths (no lookup, no store).
        public: requests carrying cookies are answered from and stored in the shared cache
            like any other (by default they go to the app: the page may be built from them).
        vary_on_cookies: cookie names added to the key; a request whose other cookies are all
            ignored shares the page with those of the same values.
        ignore_cookies: cookie names or patterns (``_ga*``) this route's pages never read, on
            top of the middleware's ``ignore_cookies``.
    """

    __slots__ = (
        "_regex",
        "enabled",
        "ignored_cookies",
        "pattern",
        "public",
        "tags",
        "ttl",
        "vary",
        "vary_cookies",
    )

    def __init__(
        self,
        pattern: str,
        *,
        ttl: float | None = None,
        tags: Sequence[str] = (),
        vary: Sequence[str] = (),
        enabled: bool = True,
        public: bool = False,
        vary_on_cookies: Sequence[str] = (),
        ignore_cookies: Sequence[str] = (),
    ) -> None:
        if not isinstance(pattern, str) or not pattern.startswith(("/", "*")):
            raise ConfigError(f"a rule pattern is a path starting with '/': {pattern!r}")
        ttl = check_optional("CacheRule ttl", ttl, zero_ok=True)
        self.pattern = pattern
        self._regex = _compile(pattern)
        self.ttl = ttl
        self.tags = tuple(tags)
        names = set(self._regex.groupindex)
        for tag in self.tags:
            missing = KeyTemplate(tag).fields - names
            if missing:
                raise ConfigError(f"tag {tag!r} names {sorted(missing)}, not in {pattern!r}")
        self.vary = tuple(v.strip().lower() for v in vary)
        self.enabled = enabled
        if isinstance(vary_on_cookies, str):
            raise ConfigError(f"vary_on_cookies is a list of cookie names, not {vary_on_cookies!r}")
        self.public = bool(public)
        self.vary_cookies = tuple(vary_on_cookies)
        self.ignored_cookies = compile_names(ignore_cookies)

    def match(self, path: str) -> Directives | None:
        """The directives for ``path`` if this rule applies to it."""
        found = self._regex.fullmatch(path)
        if found is None:
            return None
        params = found.groupdict()
        tags = [t.format_map(params) for t in self.tags]
        return Directives(
            ttl=self.ttl,
            tags=tags,
            vary=self.vary,
            enabled=self.enabled,
            public=self.public,
            vary_cookies=self.vary_cookies,
            ignored_cookies=self.ignored_cookies,
        )

    def __repr__(self) -> str:
        return f"CacheRule({self.pattern!r}, ttl={self.ttl!r}, enabled={self.enabled!r})"


class RouteRules:
    """An ordered list of ``CacheRule``; the first one matching a path wins."""

    __slots__ = ("rules",)

    def __init__(self, rules: Iterable[CacheRule] = ()) -> None:
        self.rules = tuple(rules)
        for rule in self.rules:
            if not isinstance(rule, CacheRule):
                raise ConfigError(f"rules are CacheRule objects, not {type(rule).__name__}")

    def directives(self, path: str, default_ttl: float | None) -> Directives:
        """Fresh directives for one request to ``path``."""
        for rule in self.rules:
            found = rule.match(path)
            if found is not None:
                if found.ttl is None:
                    found.ttl = default_ttl
                return found
        return Directives(ttl=default_ttl)


def cache_response(
    ttl: float | None = None,
    tags: Sequence[str] = (),
    vary: Sequence[str] = (),
    enabled: bool = True,
) -> Callable[[F], F]:
    """Set caching for one endpoint: freshness, tags (templates of its arguments), Vary extras.

    ``@cache_response(ttl=60, tags=["product:{product_id}"])`` on a FastAPI,
    Starlette or Flask view makes its responses fresh for 60 s (unless they
    say otherwise in ``Cache-Control``) and tags them so that
    ``cache.invalidate(tags=["product:42"])`` purges the pages of product 42.
    Outside the middleware it does nothing.
    """
    ttl = check_optional("cache_response ttl", ttl, zero_ok=True)
    templates = tuple(KeyTemplate(t) for t in tags)
    extra_vary = tuple(v.strip().lower() for v in vary)

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        for template in templates:
            template.check_against(signature.parameters)

        def apply(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            directives = _current.get()
            if directives is None:
                return
            if ttl is not None:
                directives.ttl = ttl
            directives.enabled = enabled
            if extra_vary:
                directives.vary = directives.vary + extra_vary
            if templates:
                bound = signature.bind_partial(*args, **kwargs)
                bound.apply_defaults()
                directives.tags.extend(t.render(bound.arguments) for t in templates)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                apply(args, kwargs)
                return await fn(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            apply(args, kwargs)
            return fn(*args, **kwargs)

        return cast(F, wrapper)

    return decorate
