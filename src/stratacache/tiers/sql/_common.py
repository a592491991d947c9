"""What the SQLite and PostgreSQL stores share: leases, stored rows, prefix ranges, URLs, fork.

A store keeps two tables. ``<table>``: ``key`` (PK), ``value`` (codec bytes; NULL
marks a *tombstone* left by a delete), ``expires_at`` (NULL: never), ``tags``
(the entry's tags, NULL when none), ``seq`` (the namespace sequence number
current when the entry's load began, or bumped by a plain write), ``size`` (bytes of
``value``) and ``atime`` (last write, or last read as flushed by the tier).
``<table>_versions``: per namespace, the sequence counter (name ``#``) and for
each tag (``t<tag>``) or deleted prefix (``p<prefix>``) the sequence number of
its last invalidation.
"""

from __future__ import annotations

import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from ...core.durations import check_duration, check_optional
from ...core.entry import Entry
from ...core.errors import ConfigError

#: how long tombstones and prefix rows void leases; no loader runs that long
LEASE_HORIZON = 86_400.0
COUNTER = "#"


@dataclass(frozen=True, slots=True)
class SQLLease:
    """The namespace sequence number when a load began."""

    seq: int


@dataclass(slots=True)
class Row:
    """One entry as stored: the codec bytes and the columns the queries need."""

    key: str
    value: bytes
    expires_at: float | None
    tags: tuple[str, ...]


class MissLeases:
    """Leases read by gets that missed, handed to the load that follows: a miss and its load's
    lease cost one statement, not two.

    An older lease only refuses more (a write is refused when anything moved past it), so a
    remembered one is as safe as a fresh one; to keep false refusals rare, one is used once,
    within ``max_age`` seconds, and all are forgotten when this tier invalidates anything.
    """

    __slots__ = ("_memo", "limit", "max_age")

    def __init__(self, limit: int = 4096, max_age: float = 2.0) -> None:
        self._memo: dict[str, tuple[int, float]] = {}
        self.limit = limit
        self.max_age = max_age

    def remember(self, key: str, seq: int) -> None:
        memo = self._memo
        if len(memo) >= self.limit:
            memo.clear()  # loads follow their miss at once: old ones are worth nothing
        memo[key] = (seq, time.monotonic())

    def take(self, key: str) -> SQLLease | None:
        """The lease remembered for ``key`` (forgotten now), or None: ask the database."""
        found = self._memo.pop(key, None)
        if found is None or time.monotonic() - found[1] > self.max_age:
            return None
        return SQLLease(found[0])

    def forget(self, key: str | None = None) -> None:
        """Forget ``key``'s lease (None: every lease)."""
        if key is None:
            self._memo = {}
        else:
            self._memo.pop(key, None)


def voided(key: str, tags: Sequence[str], names: Sequence[str]) -> bool:
    """Whether invalidations ``names`` (version rows moved past a lease) touch ``key``/``tags``."""
    for name in names:
        if name[0] == "t" and name[1:] in tags:
            return True
        if name[0] == "p" and key.startswith(name[1:]):
            return True
    return False


def over(count: int, size: int, max_entries: int | None, max_bytes: int | None) -> bool:
    """Whether ``count`` entries of ``size`` bytes in all exceed a bound."""
    return (max_entries is not None and count > max_entries) or (
        max_bytes is not None and size > max_bytes
    )


def victims(
    rows: Any, count: int, size: int, max_entries: int | None, max_bytes: int | None
) -> list[str]:
    """Keys to drop from ``rows`` (``(key, size)``, least recently used first) until both bounds
    hold."""
    doomed = []
    for key, nbytes in rows:
        if not over(count, size, max_entries, max_bytes):
            break
        doomed.append(key)
        count -= 1
        size -= nbytes
    return doomed


def prefix_upper(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix`` (None: no bound).

    Both engines compare text by its UTF-8 bytes, which orders like code points, so
    ``lower <= key < upper`` is exactly "key starts with prefix" and uses the primary key.
    """
    stem = prefix.rstrip("\U0010ffff")
    if not stem:
        return None
    code = ord(stem[-1]) + 1
    if 0xD800 <= code <= 0xDFFF:  # surrogates are not encodable: skip past them
        code = 0xE000
    return stem[:-1] + chr(code)


TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,50}")


def check_config(
    ttl: Any, sweep_interval: Any, max_entries: Any, max_bytes: Any, table: Any, pool_size: Any
) -> None:
    """Raise ``ConfigError`` for the first bad ``SQLTier`` argument."""
    check_optional("SQLTier ttl", ttl)
    check_duration("SQLTier sweep_interval", sweep_interval, zero_ok=True)
    for label, bound in (("max_entries", max_entries), ("max_bytes", max_bytes)):
        if bound is not None and (not isinstance(bound, int) or bound < 1):
            raise ConfigError(f"SQLTier {label} must be a positive int or None, not {bound!r}")
    if not isinstance(table, str) or not TABLE_NAME.fullmatch(table):
        raise ConfigError(f"SQLTier table must be a plain SQL identifier, not {table!r}")
    if not isinstance(pool_size, int) or pool_size < 1:
        raise ConfigError(f"SQLTier pool_size must be a positive int, not {pool_size!r}")


def sweep_statements(table: str, mark: str) -> tuple[str, str]:
    """The sweep's two deletes (rows past their end; prefix marks past the lease horizon),
    with the driver's placeholder ``mark``."""
    return (
        f"DELETE FROM {table} WHERE expires_at <= {mark} RETURNING value IS NOT NULL",
        f"DELETE FROM {table}_versions WHERE name >= 'p' AND name < 'q' AND updated < {mark}",
    )


def scan_query(
    table: str, prefix: str, cursor: str, limit: int, now: float, mark: str
) -> tuple[str, tuple[Any, ...]]:
    """SQL and arguments listing up to ``limit`` live keys under ``prefix`` after ``cursor``,
    in key order (``mark``: the driver's placeholder, ``?`` or ``%s``)."""
    upper = prefix_upper(prefix)
    where = f"key >= {mark} AND key > {mark}" + ("" if upper is None else f" AND key < {mark}")
    bounds: tuple[Any, ...] = (prefix, cursor) if upper is None else (prefix, cursor, upper)
    sql = (
        f"SELECT key FROM {table} WHERE {where} AND value IS NOT NULL"
        f" AND (expires_at IS NULL OR expires_at > {mark}) ORDER BY key LIMIT {mark}"
    )
    return sql, (*bounds, now, limit)


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed ``url``: which engine, and where (a SQLite path or a libpq URI)."""

    dialect: str  # "sqlite" or "postgresql"
    where: str


def parse_url(url: str) -> Target:
    """``sqlite:///path.db``, ``sqlite://`` (private in-memory) or ``postgresql[+driver]://…``."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"SQLTier url must look like 'sqlite:///cache.db', not {url!r}")
    scheme, rest = url.split("://", 1)
    backend = scheme.split("+", 1)[0].lower()
    if backend == "sqlite":
        path = rest[1:] if rest.startswith("/") else rest
        path = unquote(path.split("?", 1)[0])
        if path in ("", ":memory:"):
            return Target("sqlite", ":memory:")
        # absolute: connections opened later (new threads, a reopen) after the process changed
        # its working directory must still reach this file, not another one
        return Target("sqlite", os.path.abspath(path))
    if backend in ("postgresql", "postgres"):
        if not urlsplit(url).hostname and "host=" not in url:
            raise ConfigError(f"SQLTier PostgreSQL url needs a host: {url!r}")
        return Target("postgresql", "postgresql://" + rest)
    raise ConfigError(f"SQLTier supports sqlite and postgresql, not {backend!r} ({url!r})")


def engine_url(engine: Any) -> str:
    """The URL of a SQLAlchemy ``Engine`` (passwords included: we open our own connections)."""
    try:
        return str(engine.url.render_as_string(hide_password=False))
    except AttributeError as exc:
        raise ConfigError(f"SQLTier engine= must be a SQLAlchemy Engine, not {engine!r}") from exc


# -- fork: a child never uses a connection (or thread) of its parent ------------------------------
_forkable: weakref.WeakSet[Any] = weakref.WeakSet()
#: connections inherited from the parent: kept referenced, never closed, so their finalizers
#: cannot end the parent's sessions or touch its SQLite locks
_inherited: list[Any] = []
_hook_lock = threading.Lock()
_hooked = False


def on_fork(obj: Any, reset: Callable[[], list[Any]]) -> None:
    """Call ``reset`` in a forked child; it returns the inherited handles to keep (never closed)."""
    global _hooked
    with _hook_lock:
        if not _hooked and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork)
            _hooked = True
    obj._fork_reset = reset
    _forkable.add(obj)


def _after_fork() -> None:
    for obj in list(_forkable):
        _inherited.extend(obj._fork_reset())


def tag_tokens(codec: Any, tags: Sequence[str]) -> list[str]:
    """The stored forms of ``tags`` (keyed digests under encryption), without repeats."""
    return list(dict.fromkeys(x for t in tags for x in codec.tag_tokens(t)))


def make_row(codec: Any, key: str, entry: Entry, now: float, ttl: float | None) -> Row | None:
    """The row storing ``entry`` at ``now``, or None when it is already past its end."""
    remaining = entry.keep_for(now, ttl)
    if remaining is not None and remaining <= 0:
        return None
    expires_at = None if remaining is None else now + remaining
    tags = tuple(codec.tag_token(t) for t in entry.tags)  # keyed digests under encryption
    return Row(key, codec.encode(entry, key=key), expires_at, tags)
