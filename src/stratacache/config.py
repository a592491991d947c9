"""Build a ``Cache`` from a URL string, environment variables or a plain dict.

Three forms, one result (the same stack the constructor form builds)::

    Cache.from_url("memory://?maxsize=10000,redis://127.0.0.1:6379/0,sqlite:///cache.db",
                   namespace="shop", default_ttl=300)
    Cache.from_env()          # STRATACACHE_URL, STRATACACHE_NAMESPACE, ...
    Cache.from_dict({"tiers": "memory://,redis://127.0.0.1:6379/0", "namespace": "shop"})

Tiers are listed top-down, comma-separated; each tier's options are query
parameters of its URL (``memory://?maxsize=1000&ttl=30``). Schemes:
``memory://``; ``redis://``, ``rediss://``, ``unix://`` (``RedisTier``);
``sqlite://``, ``postgresql://``, ``postgresql+psycopg://``, ``postgres://``
(``SQLTier``). Durations accept seconds or a unit suffix (``500ms``, ``30s``,
``5m``, ``2h``, ``1d``); ``none`` means no expiry where ``None`` is accepted.

With a process-local tier above a Redis tier the cache gets a ``RedisBus`` on
that Redis by default, so every process's memory tier stays coherent
(``bus=False`` or ``STRATACACHE_BUS=off`` turns it off; a URL picks another
Redis). Every option is checked: an unknown one, or a value of the wrong
shape, raises ``ConfigError`` naming it, before anything connects.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from .core.durations import check_duration
from .core.errors import ConfigError
from .core.tier import Tier
from .engine.cache import Cache
from .fleet.bus import RedisBus
from .fleet.lock import RedisLock
from .tiers.memory import MemoryTier

Parser = Callable[[str, str], Any]
#: the class a builder makes: the engine's ``Cache`` or a subclass (``stratacache.Cache``)
CacheT = TypeVar("CacheT", bound=Cache)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|m|h|d)?\s*$")
_TIER_START = re.compile(r",(?=\s*[A-Za-z][A-Za-z0-9+.-]*://)")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2")
_OFF = ("", "0", "off", "false", "no", "none")
_ON = ("1", "on", "true", "yes")


# -- value parsers (each names the option in its error) ---------------------------------------
def parse_duration(name: str, text: str) -> float:
    """``"30"``, ``"1.5"``, ``"500ms"``, ``"5m"`` … as seconds, or ``ConfigError`` naming ``name``."""
    match = _DURATION.match(text)
    if match is None:
        raise ConfigError(
            f"{name} must be a number of seconds, optionally with a unit "
            f"(ms, s, m, h, d), not {text!r}"
        )
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def parse_optional_duration(name: str, text: str) -> float | None:
    """``parse_duration``, where ``none`` (or an empty value) means ``None``."""
    return None if text.strip().lower() in ("", "none") else parse_duration(name, text)


def parse_int(name: str, text: str) -> int:
    """A base-10 integer, or ``ConfigError`` naming ``name``."""
    try:
        return int(text.strip(), 10)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {text!r}") from None


def parse_float(name: str, text: str) -> float:
    """A decimal number, or ``ConfigError`` naming ``name``."""
    try:
        return float(text.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {text!r}") from None


def parse_bool(name: str, text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off``, or ``ConfigError`` naming ``name``."""
    word = text.strip().lower()
    if word in _ON:
        return True
    if word in _OFF and word not in ("", "none"):
        return False
    raise ConfigError(f"{name} must be true or false (1/0, yes/no, on/off), not {text!r}")


def parse_str(name: str, text: str) -> str:
    """Any non-empty string."""
    if not text:
        raise ConfigError(f"{name} must not be empty")
    return text


def parse_switch(name: str, text: str) -> str | bool:
    """``off``/``on`` as a bool, anything with ``://`` as a URL; else ``ConfigError``."""
    word = text.strip().lower()
    if word in _OFF:
        return False
    if word in _ON:
        return True
    if "://" in text:
        return text.strip()
    raise ConfigError(f"{name} must be on, off or a redis:// URL, not {text!r}")


_MEMORY_OPTIONS: dict[str, Parser] = {
    "maxsize": parse_int,
    "ttl": parse_optional_duration,
    "max_bytes": parse_int,
    "name": parse_str,
}
_REDIS_OPTIONS: dict[str, Parser] = {
    "ttl": parse_optional_duration,
    "max_connections": parse_int,
    "socket_timeout": parse_duration,
    "socket_connect_timeout": parse_duration,
    "pool_timeout": parse_optional_duration,
    "name": parse_str,
    "cluster": parse_bool,
}
_SQL_OPTIONS: dict[str, Parser] = {
    "ttl": parse_optional_duration,
    "sweep_interval": parse_duration,
    "table": parse_str,
    "name": parse_str,
    "max_entries": parse_int,
    "max_bytes": parse_int,
    "pool_size": parse_int,
    "lock_timeout": parse_duration,
}
#: Cache options as text (URL query, environment), with their parsers
CACHE_OPTIONS: dict[str, Parser] = {
    "namespace": parse_str,
    "default_ttl": parse_optional_duration,
    "refresh_after": parse_optional_duration,
    "stale_ttl": parse_duration,
    "jitter": parse_float,
    "early_refresh_beta": parse_float,
    "cache_none": parse_bool,
    "max_key_length": parse_int,
    "breaker_threshold": parse_int,
    "breaker_reset": parse_duration,
    "bus": parse_switch,
    "lock": parse_switch,
}
#: options that take Python objects only (dict and keyword forms)
_OBJECT_OPTIONS = ("serializer", "envelopes", "clock")


# -- tiers -------------------------------------------------------------------------------------
def split_tiers(url: str) -> list[str]:
    """The tier URLs of a comma-separated tier string, top-down (empty parts refused)."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"a tier URL string is needed, e.g. 'memory://,redis://…', not {url!r}")
    parts = [part.strip() for part in _TIER_START.split(url)]
    for part in parts:
        if "://" not in part:
            raise ConfigError(f"tier URL {part!r} has no scheme (memory://, redis://, sqlite://…)")
    return parts


def _options(where: str, query: str, known: Mapping[str, Parser]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, text in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        parser = known.get(key)
        if parser is None:
            raise ConfigError(f"{where}: unknown option {key!r}; known: {', '.join(sorted(known))}")
        if key in result:
            raise ConfigError(f"{where}: option {key!r} given twice")
        result[key] = parser(f"{where} {key}", text)
    return result


def build_tier(url: str) -> Tier:
    """One tier from its URL (``memory://?maxsize=100``, ``redis://host/0?ttl=60`` …).

    Raises:
        ConfigError: unknown scheme, unknown option or a value of the wrong shape.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        if parts.netloc or parts.path not in ("", "/"):
            raise ConfigError(
                f"memory tier URL takes only options, e.g. memory://?maxsize=1000; got {url!r}"
            )
        return MemoryTier(**_options("memory tier", parts.query, _MEMORY_OPTIONS))
    bare = _bare(url)
    if scheme in _REDIS_SCHEMES:
        from .tiers.redis import RedisTier

        return RedisTier(bare, **_options("redis tier", parts.query, _REDIS_OPTIONS))
    if scheme in _SQL_SCHEMES:
        from .tiers.sql import SQLTier

        if scheme in ("postgres", "postgresql"):
            bare = "postgresql+psycopg" + bare[len(scheme) :]
        query, driver = parts.query, ""
        if scheme != "sqlite":  # PostgreSQL's own parameters (sslmode, options …) go to the driver
            ours = [
                (k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k in _SQL_OPTIONS
            ]
            theirs = [
                (k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in _SQL_OPTIONS
            ]
            query, driver = urlencode(ours), urlencode(theirs)
        if driver:
            bare += "?" + driver
        return SQLTier(bare, **_options("sql tier", query, _SQL_OPTIONS))
    raise ConfigError(
        f"unknown tier scheme {parts.scheme!r} in {url!r}; use memory://, redis://, rediss://, "
        "unix://, sqlite:// or postgresql://"
    )


# -- the cache ---------------------------------------------------------------------------------
def build_from_url(cls: type[CacheT], url: str, **options: Any) -> CacheT:
    """A ``cls`` over the tiers ``url`` lists top-down; ``options`` are ``Cache`` keywords.

    ``stratacache.Cache.from_url(url, ...)`` calls ``build_from_url(Cache, url, ...)``.

    ``bus``: ``True``/``None`` (default: a ``RedisBus`` on the first Redis tier when a
    local tier sits above a shared one), ``False`` (none), a URL, or an ``InvalidationBus``.
    ``lock``: ``True`` (a ``RedisLock`` on the first Redis tier), a URL, or a ``FleetLock``.

    Raises:
        ConfigError: anything in ``url`` or ``options`` that the constructors would refuse.
    """
    tier_urls = split_tiers(url)
    tiers = [build_tier(part) for part in tier_urls]
    redis_url = next((u for u in tier_urls if urlsplit(u).scheme.lower() in _REDIS_SCHEMES), None)
    unknown = set(options) - set(CACHE_OPTIONS) - set(_OBJECT_OPTIONS)
    if unknown:
        known = sorted({*CACHE_OPTIONS, *_OBJECT_OPTIONS})
        raise ConfigError(f"unknown cache option(s) {sorted(unknown)}; known: {', '.join(known)}")
    _check_plain(options)
    bus = options.pop("bus", None)
    lock = options.pop("lock", None)
    if isinstance(bus, str):  # keyword and dict forms take the text forms too
        bus = parse_switch("bus", bus)
    if isinstance(lock, str):
        lock = parse_switch("lock", lock)
    options["bus"] = _bus(bus, tiers, redis_url)
    options["lock"] = _lock(lock, redis_url, tiers)
    return cls(tiers, **options)


def _check_plain(options: Mapping[str, Any]) -> None:
    """Checks the ``Cache`` constructor leaves to its callers (ints and bools)."""
    for name in ("max_key_length", "breaker_threshold"):
        value = options.get(name, 1)
        if type(value) is not int or value < 1:
            raise ConfigError(f"{name} must be a positive int, not {value!r}")
    if type(options.get("cache_none", True)) is not bool:
        raise ConfigError(f"cache_none must be True or False, not {options['cache_none']!r}")


def _bare(url: str) -> str:
    """``url`` without its query (our options); kept verbatim otherwise (``sqlite:///…``)."""
    return url.split("?", 1)[0].split("#", 1)[0]


def _bus(bus: Any, tiers: list[Tier], redis_url: str | None) -> Any:
    if bus is False:
        return False  # the cache's explicit opt-out (None would mean "derive one")
    if isinstance(bus, str):
        return RedisBus(bus)
    if bus is None or bus is True:
        local_above_shared = any(
            not getattr(t, "shared", True)
            and any(getattr(s, "shared", True) for s in tiers[i + 1 :])
            for i, t in enumerate(tiers)
        )
        if redis_url is not None and (local_above_shared or bus is True):
            return _on_tier(tiers, "fleet_bus") or RedisBus(_bare(redis_url))
        if bus is True:
            raise ConfigError("bus=True needs a redis:// tier or a bus URL")
        return None
    return bus


def _on_tier(tiers: list[Tier], build: str) -> Any:
    """The bus or lock built on the first Redis tier's own connection (Cluster, Sentinel too)."""
    for tier in tiers:
        method = getattr(tier, build, None)
        # a SQL tier builds a bus too (``offers_lock`` False), but not on Redis
        if callable(method) and getattr(tier, "offers_lock", True):
            return method()
    return None


def _lock(lock: Any, redis_url: str | None, tiers: list[Tier]) -> Any:
    if lock is None or lock is False:
        return None
    if isinstance(lock, str):
        return RedisLock(lock)
    if lock is True:
        if redis_url is None:
            raise ConfigError("lock=True needs a redis:// tier or a lock URL")
        return _on_tier(tiers, "fleet_lock") or RedisLock(_bare(redis_url))
    return lock


def build_from_dict(cls: type[CacheT], settings: Mapping[str, Any]) -> CacheT:
    """A ``cls`` from a settings mapping: ``{"tiers": <url string or list of URLs>, ...}``.

    Other keys are ``Cache`` options; values may be Python objects or their text form
    (``"5m"``, ``"true"``), as in a settings file or the environment.

    Raises:
        ConfigError: a missing ``tiers``, an unknown key or a bad value (named).
    """
    if not isinstance(settings, Mapping):
        raise ConfigError(f"settings must be a mapping, not {type(settings).__name__}")
    options = dict(settings)
    tiers = options.pop("tiers", None)
    if tiers is None:
        raise ConfigError("settings need 'tiers', e.g. 'memory://,redis://127.0.0.1:6379/0'")
    if not isinstance(tiers, str):
        if not isinstance(tiers, (list, tuple)) or not all(isinstance(t, str) for t in tiers):
            raise ConfigError("tiers must be a URL string or a list of tier URL strings")
        tiers = ",".join(tiers)
    for key, value in list(options.items()):
        parser = CACHE_OPTIONS.get(key)
        if parser is not None and isinstance(value, str) and parser is not parse_str:
            options[key] = parser(key, value)
    return build_from_url(cls, tiers, **options)


#: environment variable of each option (``STRATACACHE_URL`` holds the tiers)
ENVIRONMENT = {"tiers": "STRATACACHE_URL"} | {
    name: "STRATACACHE_" + name.upper() for name in CACHE_OPTIONS
}


def build_from_env(
    cls: type[CacheT], environ: Mapping[str, str] | None = None, **overrides: Any
) -> CacheT:
    """A ``cls`` from ``STRATACACHE_URL`` and the ``STRATACACHE_<OPTION>`` variables.

    ``overrides`` (``Cache`` keywords) win over the environment.

    Raises:
        ConfigError: ``STRATACACHE_URL`` missing, or a variable with a bad value (named).
    """
    env = os.environ if environ is None else environ
    settings: dict[str, Any] = {}
    for option, variable in ENVIRONMENT.items():
        if variable in env:
            text = env[variable]
            settings[option] = text if option == "tiers" else CACHE_OPTIONS[option](variable, text)
    if "tiers" not in settings:
        raise ConfigError("STRATACACHE_URL is not set (e.g. 'memory://,redis://127.0.0.1:6379/0')")
    settings.update(overrides)
    return build_from_dict(cls, settings)


def check_ttl(name: str, value: Any) -> float | None:
    """A TTL given as number, text or None (no expiry), checked (``ConfigError`` names ``name``)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = parse_optional_duration(name, value)
        if value is None:
            return None
    return check_duration(name, value)


_MOVED = {"from_url", "from_env", "from_dict"}

if not TYPE_CHECKING:  # type checkers see no catch-all attribute

    def __getattr__(name: str) -> Any:
        if name in _MOVED:
            raise AttributeError(
                f"stratacache.config.{name} is now stratacache.Cache.{name} (or "
                f"stratacache.config.build_{name}(cls, ...) for another Cache class)"
            )
        raise AttributeError(f"module 'stratacache.config' has no attribute {name!r}")


__all__ = [
    "ENVIRONMENT",
    "build_from_dict",
    "build_from_env",
    "build_from_url",
    "build_tier",
    "split_tiers",
]
