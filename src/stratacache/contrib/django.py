"""Django integration: a ``CACHES`` backend, and model signals as invalidation rules.

settings.py::

    CACHES = {
        "default": {
            "BACKEND": "stratacache.contrib.django.StratacacheBackend",
            "LOCATION": "memory://?maxsize=10000,redis://127.0.0.1:6379/0",
            "KEY_PREFIX": "shop",          # the stratacache namespace (default "django")
            "TIMEOUT": 300,                # None: forever; 0: do not cache
            "OPTIONS": {"stale_ttl": 60},  # any Cache option (see stratacache.config)
        }
    }

Everything built on ``django.core.cache`` then runs on the tiers: sessions
(``SESSION_ENGINE = "django.contrib.sessions.backends.cache"``), ``cache_page``,
template fragments, and the low-level API, with Django's semantics (versions,
``KEY_FUNCTION``, ``add``/``incr``/``touch``…). ``incr``/``add`` are atomic on a
Redis or SQL lowest tier (see ``stratacache.engine.primitives``).

Values are msgpack, never pickle: what Django itself caches (strings, safe
strings, lists, dicts, ``HttpResponse`` objects from ``cache_page``) is converted
here; any other object that msgpack cannot carry raises ``SerializationError``
at ``set``, never later.

One ``Cache`` is built per configuration and process and shared by every
thread's backend object (Django makes one per thread); ``close()`` after each
request therefore leaves it open.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache, default_key_func
from django.http import HttpResponse
from django.utils.safestring import SafeString, mark_safe

from ..client import Cache as PublicCache
from ..core.durations import MAX_SECONDS, MIN_SECONDS
from ..core.errors import ConfigError
from ..core.keys import shorten
from ..engine.cache import Cache

_MARK = "__stratacache_django__"
_shared: dict[tuple[Any, ...], Cache] = {}
_shared_lock = threading.Lock()
_MISSING: Any = object()


def shared_cache(location: str, namespace: str, options: Mapping[str, Any]) -> Cache:
    """The process's one ``Cache`` for this configuration (built on first use)."""
    ident = (location, namespace, tuple(sorted((k, repr(v)) for k, v in options.items())))
    with _shared_lock:
        cache = _shared.get(ident)
        if cache is None:
            settings = {**options, "tiers": location, "namespace": namespace}
            cache = _shared[ident] = PublicCache.from_dict(settings)
        return cache


def close_all() -> None:
    """Close every shared ``Cache`` (at shutdown, or between tests); later use builds anew."""
    with _shared_lock:
        built = list(_shared.values())
        _shared.clear()
    for cache in built:
        cache.sync.close()


def pack(value: Any) -> Any:
    """``value`` as msgpack can carry it: safe strings and responses get a marked dict."""
    if isinstance(value, SafeString):
        return {_MARK: "safe", "v": value.encode().decode()}  # a plain str
    if isinstance(value, HttpResponse):
        cookies = [(n, m.value, dict(m)) for n, m in value.cookies.items()]
        return {
            _MARK: "response",
            "status": value.status_code,
            "reason": value.reason_phrase,
            "headers": list(value.headers.items()),
            "content": value.content,
            "cookies": cookies,
        }
    return value


def unpack(value: Any) -> Any:
    """The object ``pack`` stored."""
    if type(value) is not dict or _MARK not in value:
        return value
    kind = value[_MARK]
    if kind == "safe":
        return mark_safe(value["v"])
    if kind == "response":
        response = HttpResponse(value["content"], status=value["status"], reason=value["reason"])
        for name, header in value["headers"]:
            response.headers[name] = header
        for name, cookie, attrs in value["cookies"]:
            response.cookies[name] = cookie
            response.cookies[name].update({k: v for k, v in attrs.items() if v})
        return response
    return value


class StratacacheBackend(BaseCache):  # type: ignore[misc]
    """A Django cache backend on a stratacache ``Cache`` (``LOCATION``: the tier URL string)."""

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        timeout = params.get("TIMEOUT", params.get("timeout", 300))
        params = {**params, "TIMEOUT": timeout}
        super().__init__(params)
        self.default_timeout = _check_timeout("TIMEOUT", timeout)
        prefix = self.key_prefix or "django"
        if not isinstance(prefix, str) or ":" in prefix:
            raise ConfigError(f"KEY_PREFIX must be a string without ':', not {prefix!r}")
        options = dict(params.get("OPTIONS") or {})
        django_only = sorted(k for k in options if k.isupper())
        if django_only:
            raise ConfigError(
                f"OPTIONS {django_only} are for Django's own backends; bound the memory tier "
                "in LOCATION instead (memory://?maxsize=...)"
            )
        if not isinstance(location, str) or not location:
            raise ConfigError("LOCATION must be the tier URL string, e.g. 'memory://,redis://…'")
        self.cache = shared_cache(location, prefix, options)
        self.sync = self.cache.sync

    # -- keys and timeouts -----------------------------------------------------------------------
    def make_key(self, key: Any, version: int | None = None) -> str:
        """``version:key`` inside the namespace (KEY_PREFIX), or ``KEY_FUNCTION``'s result.

        A key longer than the cache's ``max_key_length`` is shortened to its head, ``~``
        and a digest of the whole, as decorators do: Django code may use any length.
        """
        version = self.version if version is None else version
        if self.key_func is default_key_func:
            made = f"{version}:{key}"
        else:
            made = str(self.key_func(key, self.key_prefix, version))
        return shorten(made, self.cache.max_key_length)

    def validate_key(self, key: str) -> None:
        """Keys are checked by stratacache itself (``CacheKeyError``)."""

    def _ttl(self, timeout: Any) -> float | bool | None:
        """The stratacache ttl for a Django timeout; False means "do not store"."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return None
        seconds = float(_check_timeout("timeout", timeout) or 0.0)
        if seconds <= 0:
            return False
        return min(max(seconds, MIN_SECONDS), float(MAX_SECONDS))

    # -- operations ------------------------------------------------------------------------------
    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        value = self.sync.get(self.make_and_validate_key(key, version), _MISSING)
        return default if value is _MISSING else unpack(value)

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        fkey = self.make_and_validate_key(key, version)
        ttl = self._ttl(timeout)
        if ttl is False:
            self.sync.delete(fkey)
        else:
            self.sync.set(fkey, pack(value), ttl=ttl)

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        fkey = self.make_and_validate_key(key, version)
        ttl = self._ttl(timeout)
        if ttl is False:
            return not self.sync.exists(fkey)
        return bool(self.sync.add(fkey, pack(value), ttl=ttl))

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        fkey = self.make_and_validate_key(key, version)
        ttl = self._ttl(timeout)
        if ttl is False:
            return self.delete(key, version)
        return bool(self.sync.touch(fkey, ttl=ttl))

    def delete(self, key: Any, version: int | None = None) -> bool:
        fkey = self.make_and_validate_key(key, version)
        existed = bool(self.sync.exists(fkey))
        self.sync.delete(fkey)
        return existed

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return bool(self.sync.exists(self.make_and_validate_key(key, version)))

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        fkey = self.make_and_validate_key(key, version)
        try:
            return int(self.sync.incr(fkey, delta, initial=None))
        except KeyError:
            raise ValueError(f"Key '{key}' not found") from None

    def decr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return self.incr(key, -delta, version)

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        made = {self.make_and_validate_key(k, version): k for k in keys}
        found = self.sync.get_many(list(made))
        return {made[fk]: unpack(v) for fk, v in found.items()}

    def set_many(
        self,
        data: Mapping[Any, Any],
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> list[Any]:
        items = {self.make_and_validate_key(k, version): pack(v) for k, v in data.items()}
        ttl = self._ttl(timeout)
        if ttl is False:
            self.sync.invalidate(keys=list(items))
        elif items:
            self.sync.set_many(items, ttl=ttl)
        return []

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        made = [self.make_and_validate_key(k, version) for k in keys]
        if made:
            self.sync.invalidate(keys=made)

    def clear(self) -> None:
        self.sync.clear()

    def close(self, **kwargs: Any) -> None:
        """Nothing to do: the ``Cache`` is shared by the process and outlives requests."""


def _check_timeout(name: str, timeout: Any) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ConfigError(f"{name} must be a number of seconds or None, not {timeout!r}")
    if timeout != timeout:  # NaN
        raise ConfigError(f"{name} must be a number of seconds or None, not {timeout!r}")
    return float(timeout)


# -- model signals as invalidation rules ---------------------------------------------------------
def invalidate_on_save(
    model: Any,
    *,
    tags: Sequence[str] = (),
    keys: Sequence[str] = (),
    cache: Cache | None = None,
    alias: str = "default",
) -> Callable[..., None]:
    """Invalidate ``tags``/``keys`` whenever an instance of ``model`` is saved or deleted.

    Templates are filled with ``pk``, ``model`` (``app_label.modelname``) and the
    instance's attributes (``"product:{pk}"``, ``"shop:{shop_id}"``). The invalidation
    runs when the surrounding transaction commits (at once outside one), so no reader
    refills the cache from data that is about to change. ``cache`` defaults to the
    stratacache behind ``caches[alias]``. Returns the connected receiver.

    Raises:
        ConfigError: no template given, or ``caches[alias]`` is not a stratacache backend.
    """
    from django.db import transaction
    from django.db.models.signals import post_delete, post_save

    if isinstance(tags, str) or isinstance(keys, str):
        raise ConfigError("tags and keys must be lists of templates, not a single string")
    if not tags and not keys:
        raise ConfigError("invalidate_on_save needs tags=[...] or keys=[...] templates")
    label = f"{model._meta.app_label}.{model._meta.model_name}"

    def target() -> Cache:
        if cache is not None:
            return cache
        from django.core.cache import caches

        backend = caches[alias]
        if not isinstance(backend, StratacacheBackend):
            raise ConfigError(f"caches[{alias!r}] is not a StratacacheBackend")
        return backend.cache

    def receiver(sender: Any, instance: Any, using: str | None = None, **kwargs: Any) -> None:
        fields = {**vars(instance), "pk": instance.pk, "model": label}
        filled_tags = [t.format(**fields) for t in tags]
        filled_keys = [k.format(**fields) for k in keys]

        def run() -> None:
            target().sync.invalidate(keys=filled_keys, tags=filled_tags, reason=f"{label} changed")

        transaction.on_commit(run, using=using)

    post_save.connect(receiver, sender=model, weak=False)
    post_delete.connect(receiver, sender=model, weak=False)
    return receiver


__all__ = ["StratacacheBackend", "close_all", "invalidate_on_save", "shared_cache"]
