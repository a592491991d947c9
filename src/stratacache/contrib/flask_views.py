"""Caching Flask views with ``ext.cached``: one page per request, whole responses replayed.

Why: a view's result depends on the request, not only on its arguments
(``/search?q=a`` and ``?q=b`` call ``search()`` alike), and it is often a
``Response`` (``jsonify``, ``make_response``, a ``(body, status, headers)`` tuple)
that no tier can hold. So when the decorated function is the view serving the
request, its default key is the method and the normalized URL (scheme, host,
path, query in canonical order), and the response is stored as status, headers
and body and rebuilt on a hit. Only GET and HEAD requests use the cache (a POST
has a body the key does not hold, and must run); a request with
``Authorization``, or with cookies the view has not declared (``public``,
``vary_on_cookies``, ``ignore_cookies``, judged as the HTTP middleware judges
them), runs the view uncached. A response that is not a page for everyone
(``Set-Cookie``, ``Vary``, ``Cache-Control: private``/``no-store``, a 5xx, a
stream, or, with the default key, a request whose session was read) is
returned as it is and not stored.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import Callable
from typing import Any

from flask import current_app, has_request_context, request
from flask.globals import request_ctx
from flask.wrappers import Response

from .. import decorators
from ..core.errors import ConfigError
from ..core.keys import function_name
from ..engine.cache import Cache
from ..middleware.cookies import CookieRules, compile_names
from ..middleware.parsing import normalize_url, parse_cache_control, valid_host
from ..middleware.rules import Directives

__all__ = ["VIEW_OPTIONS", "ViewCache", "is_serving_view"]

log = logging.getLogger("stratacache")
#: options that recompute out of a request, where a view cannot run
_NEED_NO_REQUEST = ("refresh_after", "refresh_every", "warm")
#: the responses this request's own view call produced but did not store
_produced: contextvars.ContextVar[list[Response] | None] = contextvars.ContextVar(
    "stratacache_flask_produced", default=None
)
_PAGE = "stratacache_page"
#: ``ext.cached`` options about requests' cookies, meaningful on views only
VIEW_OPTIONS = ("public", "vary_on_cookies", "ignore_cookies")
#: RFC 9110 §9.2.1 safe methods: the only ones whose page may be stored or replayed
_SAFE = frozenset({"GET", "HEAD"})
_COOKIES = CookieRules()


def is_serving_view(wrapper: Callable[..., Any]) -> bool:
    """Whether ``wrapper`` is (or is wrapped by) the view of the request being handled."""
    if not has_request_context() or request.endpoint is None:
        return False
    view: Any = current_app.view_functions.get(request.endpoint)
    for _ in range(32):  # decorators without functools.wraps end the chain
        if view is None:
            return False
        if view is wrapper:
            return True
        view = getattr(view, "__wrapped__", None)
    return False


def page_id(name: str, cookies: dict[str, str] | None = None, vary: tuple[str, ...] = ()) -> str:
    """``name:METHOD url`` for the current request, the URL normalized as the HTTP cache does,
    plus the values of the cookies in ``vary`` (absent counting as empty)."""
    url = normalize_url(
        request.scheme,
        request.host,
        request.script_root + request.path,
        request.query_string.decode("latin-1"),
        frozenset(),
    )
    page = f"{name}:{request.method} {url}"
    if vary:
        found = cookies or {}
        page += f" cookies={[found.get(n, '') for n in vary]!r}"
    return page


def cookie_directives(options: dict[str, Any], keyed: bool) -> Directives:
    """The view's cookie opt-ins (popped from ``options``) in the HTTP middleware's terms."""
    public = options.pop("public", False)
    vary = options.pop("vary_on_cookies", ())
    ignore = options.pop("ignore_cookies", ())
    if isinstance(vary, str) or not all(isinstance(n, str) and n for n in vary):
        raise ConfigError(f"vary_on_cookies is a list of cookie names, not {vary!r}")
    if vary and keyed:
        raise ConfigError("vary_on_cookies keys the default page key: with key= name them in it")
    return Directives(
        public=bool(public), vary_cookies=tuple(vary), ignored_cookies=compile_names(ignore)
    )


def pack(response: Response) -> dict[str, Any]:
    """A response as a msgpack-able value."""
    headers = [[n, v] for n, v in response.headers.items()]
    return {"s": response.status_code, "h": headers, "b": response.get_data()}


def unpack(value: dict[str, Any]) -> Response:
    """A new response from ``pack``'s value (one per request: responses are mutable)."""
    headers = [(str(n), str(v)) for n, v in value["h"]]
    response: Response = current_app.response_class(value["b"], value["s"], headers)
    return response


def _packed(value: Any) -> bool:
    return isinstance(value, dict) and {"s", "h", "b"} <= value.keys()


def why_not_shared(response: Response, session_read: bool) -> str | None:
    """Why ``response`` may not be replayed to other requests, or None if it may."""
    if response.is_streamed or response.direct_passthrough:
        return "it is streamed"
    if response.status_code >= 500:
        return f"its status is {response.status_code}"
    if "Set-Cookie" in response.headers:
        return "it sets a cookie"
    if "Vary" in response.headers:
        return "it varies on request headers (Vary)"
    cc = parse_cache_control(response.headers.get("Cache-Control"))
    if "private" in cc or "no-store" in cc:
        return "its Cache-Control says private or no-store"
    if session_read:
        return "the request read the session (give a key= naming the user to cache it)"
    return None


class ViewCache:
    """``ext.cached(**options)`` for one view function, bound to each application's cache."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        self.fn = fn
        self.name = function_name(fn)
        self.signature = inspect.signature(fn)
        self.options = dict(options)
        self.key = self.options.pop("key", None)
        self.cookies = cookie_directives(self.options, self.key is not None)
        self.condition = self.options.pop("condition", None)
        self.unless = self.options.pop("unless", None)
        self.refused = [o for o in _NEED_NO_REQUEST if self.options.get(o) is not None]
        self.bound: dict[Cache, Callable[..., Any]] = {}

    def loader(self, cache: Cache) -> Callable[..., Any]:
        """The cached page loader of this view on ``cache`` (built on first use)."""
        found = self.bound.get(cache)
        if found is None:
            if self.refused:
                raise ConfigError(
                    f"{self.name} is a Flask view: {', '.join(self.refused)} would run it "
                    "outside a request; cache a function the view calls instead"
                )
            found = self.bound[cache] = self._build(cache)
        return found

    def _build(self, cache: Cache) -> Callable[..., Any]:
        view = self.fn
        signature = self.signature
        automatic = self.key is None

        def produce(rv: Any, session_read: bool) -> Any:
            response = current_app.make_response(rv)
            reason = why_not_shared(response, session_read and automatic)
            if reason is None and self.condition is not None and not self.condition(rv):
                reason = "condition= refused it"
            if reason is None and self.unless is not None and self.unless(rv):
                reason = "unless= refused it"
            if reason is None:
                return pack(response)
            log.debug("stratacache: %s not stored: %s", request.path, reason)
            holder = _produced.get()
            if holder is not None:
                holder.append(response)
            return None

        async def load_async(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args[1:], **kwargs)
            rv = await view(*bound.args, **bound.kwargs)
            return produce(rv, _session_read())

        def load_sync(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args[1:], **kwargs)
            rv = view(*bound.args, **bound.kwargs)
            return produce(rv, _session_read())

        load: Any = load_async if inspect.iscoroutinefunction(view) else load_sync

        page = inspect.Parameter(_PAGE, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        load.__signature__ = signature.replace(parameters=[page, *signature.parameters.values()])
        load.__qualname__ = load.__name__ = getattr(view, "__name__", "view")
        load.__module__ = view.__module__
        key = self.key
        if key is None:
            key = _page_key
        elif callable(key):
            user_key = key
            key = lambda page, *a, **kw: user_key(*a, **kw)  # noqa: E731
        return decorators.cached(  # type: ignore[no-any-return]
            cache, key=key, condition=_packed, name=self.name, **self.options
        )(load)

    def page(self) -> str | None:
        """This request's page id, or None when it may neither be served nor stored."""
        reason = None
        if request.method not in _SAFE:
            reason = f"{request.method} is not a safe method"
        elif not valid_host(request.host):
            reason = "its Host is not a valid host[:port]"
        elif "Authorization" in request.headers:
            reason = "it carries Authorization"
        else:
            cookies, shareable = _COOKIES.admit(request.headers.get("Cookie"), self.cookies)
            if shareable:
                return page_id(self.name, cookies, self.cookies.vary_cookies)
            reason = "its cookies may make the page personal (see public, vary_on_cookies)"
        log.debug("stratacache: %s %s not cached: %s", request.method, request.path, reason)
        return None

    def serve(self, cache: Cache, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The view's response for this request: replayed, or produced (and maybe stored)."""
        page = self.page()
        if page is None:
            return self.fn(*args, **kwargs)
        holder: list[Response] = []
        token = _produced.set(holder)
        try:
            value = self.loader(cache)(page, *args, **kwargs)
        finally:
            _produced.reset(token)
        if _packed(value):
            return unpack(value)
        if holder:
            return holder[0]
        return self.fn(*args, **kwargs)  # a concurrent request's page was not shareable

    async def serve_async(self, cache: Cache, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``serve`` for ``async def`` views."""
        page = self.page()
        if page is None:
            return await self.fn(*args, **kwargs)
        holder: list[Response] = []
        token = _produced.set(holder)
        try:
            value = await self.loader(cache)(page, *args, **kwargs)
        finally:
            _produced.reset(token)
        if _packed(value):
            return unpack(value)
        if holder:
            return holder[0]
        return await self.fn(*args, **kwargs)


def _session_read() -> bool:
    """Whether this request's session was read or written so far (Flask's ``accessed``), by
    the view or before it (a ``before_request`` loading the user makes every page personal).

    Read off the request context: since Flask 3.1 touching ``flask.session`` marks it.
    """
    proxy: Any = request_ctx
    ctx = proxy._get_current_object()
    found = getattr(ctx, "_session", None)  # Flask >= 3.1
    if found is None:
        found = getattr(ctx, "session", None)
    return bool(getattr(found, "accessed", False))


def _page_key(page: str, *args: Any, **kwargs: Any) -> str:
    """The default key of a view: its request's page id."""
    return page
