"""Which statements and connections may use the query cache: options and isolation levels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.errors import ConfigError

SAFE_LEVELS = frozenset({"READ COMMITTED", "READ UNCOMMITTED", "AUTOCOMMIT"})
"""Isolation levels at which a cached result is as good as a fresh read of the same statement."""

_OPTION_KEYS = frozenset({"ttl", "tags"})


def check_ttl(ttl: Any) -> float | None:
    """``ttl`` checked: a positive number of seconds or None; raises ConfigError otherwise."""
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0):
        raise ConfigError(f"ttl must be a positive number of seconds or None, not {ttl!r}")
    return None if ttl is None else float(ttl)


def parse_option(value: Any) -> tuple[float | None, list[str]]:
    """The ``stratacache`` execution option as (ttl, extra tags); raises ConfigError if malformed."""
    if value is True:
        return None, []
    if not isinstance(value, Mapping):
        raise ConfigError(f"execution option stratacache must be a bool or a dict, not {value!r}")
    unknown = set(value) - _OPTION_KEYS
    if unknown:
        raise ConfigError(f"unknown stratacache option(s) {sorted(unknown)}; known: ttl, tags")
    tags = value.get("tags", ())
    if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
        raise ConfigError("stratacache tags must be a list of strings")
    return check_ttl(value.get("ttl")), list(tags)


def engine_isolation(dialect: Any) -> str | None:
    """The isolation level an engine's connections start at (None: unknown)."""
    level = getattr(dialect, "_on_connect_isolation_level", None)
    return level or getattr(dialect, "default_isolation_level", None)


def autocommit(conn: Any, context: Any) -> bool:
    """Whether the connection commits each statement as it runs."""
    options = context.execution_options if context is not None else conn.get_execution_options()
    level = options.get("isolation_level") or engine_isolation(conn.dialect)
    return level == "AUTOCOMMIT"


__all__ = ["SAFE_LEVELS", "autocommit", "check_ttl", "engine_isolation", "parse_option"]
