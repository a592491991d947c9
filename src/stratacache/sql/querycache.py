"""``QueryCache``: SELECT results cached at the SQLAlchemy boundary, invalidated by the writes.

It hooks one ``Engine`` (or an ``AsyncEngine``'s ``sync_engine``) with
SQLAlchemy events and talks to the ``Cache`` through its public API only:

* ``do_execute``: a cacheable read is answered from the cache (``get_or_set``
  keyed by database, dialect, SQL and parameters, tagged by the tables it
  reads); on a miss the real cursor runs inside the loader, so the engine's
  single-flight and its no-stale-set leases apply. The rows go to SQLAlchemy
  through ``StoredCursor`` on a hit and a miss alike.
* ``before_cursor_execute``: a write records the tables it touches on the
  connection; reads of those tables bypass the cache until the transaction
  ends (read-your-writes), and nothing read in it is stored.
* the dialect's commit: once the database has committed, the written tables'
  tags are invalidated in every tier and, through the bus, every process.
  A rollback (or a connection returned to the pool unfinished) invalidates nothing.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, Result
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.base import Executable
from sqlalchemy.util import await_only, greenlet_spawn

from ..core.errors import ConfigError, StratacacheError
from ..engine.cache import Cache
from .analysis import ALL, Analysis, analyze_compiled, analyze_text, volatility
from .fastpath import FastPath, Standalone, connection_class
from .keys import (
    Unkeyable,
    database_id,
    database_identity,
    query_key,
    read_tags,
    tags_for,
    write_tags,
)
from .policy import SAFE_LEVELS, autocommit, check_ttl, engine_isolation, parse_option
from .rows import Stored, StoredCursor, capture, from_cache, well_formed
from .stats import QueryStats

_WRITTEN = "stratacache.written"  # connection.info: tables written by the open transaction
_TAGS = "stratacache.tags"  # connection.info: tags the open transaction's writes invalidate
_SESSION = "stratacache.session"  # connection.info: its session state was changed by SQL
_COMMITTING = "stratacache.committing"  # connection.info: (tags, tables) of the commit under way
_MEMO_MAX = 4096
_ATTACHED: weakref.WeakKeyDictionary[Engine, QueryCache] = weakref.WeakKeyDictionary()


class QueryCache:
    """Cache SELECT results of one SQLAlchemy engine in ``cache``; writes invalidate them on commit.

    A statement is cached when it asks (``.execution_options(stratacache=True)`` or
    ``stratacache={"ttl": 60, "tags": ["catalog"]}``) or, with ``cache_all=True``, when it
    does not refuse (``stratacache=False``). Only reads that are safe to share are cached:
    see the module docstring of ``stratacache.sql`` for the rules.

    Args:
        cache: the ``Cache`` holding results (its tiers, TTLs and bus apply).
        engine: a sync ``Engine`` or an ``AsyncEngine``. Attaching twice is harmless: the
            newer ``QueryCache`` replaces the older one on that engine.
        cache_all: cache every eligible SELECT without being asked.
        exclude_tables: tables whose reads are never cached (bare names, any case).
        ttl: seconds a result lives (None: the cache's ``default_ttl``).
        deterministic_functions: SQL functions to treat as deterministic besides the
            built-in list (a read calling any other function is not cached).
        isolation_levels: the isolation levels at which reads may be cached (default:
            READ COMMITTED, READ UNCOMMITTED, AUTOCOMMIT; SQLite is always eligible).
        database: the database's identity, when the URL alone does not name it (e.g. a
            ``search_path`` set in ``connect_args``); results of different identities
            are never shared.

    Raises:
        ConfigError: ``engine`` is not an SQLAlchemy engine, or is attached to another cache.
    """

    def __init__(
        self,
        cache: Cache,
        engine: Engine | AsyncEngine,
        *,
        cache_all: bool = False,
        exclude_tables: Iterable[str] = (),
        ttl: float | None = None,
        deterministic_functions: Iterable[str] = (),
        isolation_levels: Iterable[str] = SAFE_LEVELS,
        database: str | None = None,
    ) -> None:
        sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
        if not isinstance(sync_engine, Engine):
            raise ConfigError(f"QueryCache needs an Engine or AsyncEngine, not {engine!r}")
        if isinstance(exclude_tables, str) or isinstance(deterministic_functions, str):
            raise ConfigError("exclude_tables and deterministic_functions take lists of names")
        self.cache = cache
        self.engine = sync_engine
        self.async_engine = engine if isinstance(engine, AsyncEngine) else None
        self.cache_all = cache_all
        self.exclude_tables = frozenset(t.lower() for t in exclude_tables)
        self.ttl = check_ttl(ttl)
        self.deterministic = frozenset(f.lower() for f in deterministic_functions)
        self.isolation_levels = frozenset(level.upper() for level in isolation_levels)
        #: short id of the database (in keys and tags: ``sqltable:<database_id>:<table>``)
        self.database_id = database_id(database or database_identity(sync_engine.url))
        self.counters = QueryStats()
        self._memo: dict[tuple[bool, str], Analysis] = {}
        self._fast = FastPath(self)
        self._standalone = Standalone(self._fast)
        self._attach()

    # -- public API ------------------------------------------------------------------------------
    def table_tags(self, table: str) -> list[str]:
        """The tags to invalidate for ``table`` (``cache.invalidate(tags=...)``, the CLI)."""
        return tags_for(self.database_id, frozenset({table.lower()}))

    def invalidate_tables(self, tables: Iterable[str] | None = None) -> None:
        """Outdate cached results reading ``tables`` (None: every result of this database).

        For writes made outside this engine. From async code use ``ainvalidate_tables``.
        """
        tags, names = self._tags_of(tables)
        self.cache.sync.invalidate(tags=tags, reason="sql write")
        self._count_invalidations(names)

    async def ainvalidate_tables(self, tables: Iterable[str] | None = None) -> None:
        """``invalidate_tables`` for async code."""
        tags, names = self._tags_of(tables)
        await self.cache.invalidate(tags=tags, reason="sql write")
        self._count_invalidations(names)

    def execute(self, statement: Executable) -> Result[Any]:
        """Execute a Core SELECT on a connection of its own; a repeated cached one needs none.

        ``engine.connect()`` + ``conn.execute(statement)`` costs a pool checkout even when
        the cache answers. Here a statement the cache has answered before (same shape and
        values, see the fast path in the docs) is served with no connection, no
        transaction and no compilation; anything else runs on a fresh connection exactly
        as ``conn.execute`` would, and its result is returned fully buffered. Outside a
        transaction only: inside one, execute on its connection.

        Raises:
            ConfigError: the engine is an ``AsyncEngine`` (use ``aexecute``).
        """
        if self.async_engine is not None or self.engine.dialect.is_async:
            raise ConfigError("this QueryCache is on an AsyncEngine: use await qc.aexecute(...)")
        result: Result[Any] = self._standalone.execute(statement)
        return result

    async def aexecute(self, statement: Executable) -> Result[Any]:
        """``execute`` for an ``AsyncEngine``: a repeated cached SELECT costs no greenlet switch.

        Raises:
            ConfigError: the QueryCache was not given an ``AsyncEngine``.
        """
        if self.async_engine is None:
            raise ConfigError("aexecute needs a QueryCache on an AsyncEngine; use execute")
        result: Result[Any] = await self._standalone.aexecute(statement, self.async_engine)
        return result

    def stats(self) -> dict[str, Any]:
        """``{"database": id, "tables": {name: hits, misses, rows_served, …}, "uncached": {…}}``."""
        return {"database": self.database_id, **self.counters.as_dict()}

    def detach(self) -> None:
        """Remove the hooks from the engine (cached results stay until they expire)."""
        if _ATTACHED.get(self.engine) is not self:
            return
        del _ATTACHED[self.engine]
        for target, name, fn in self._listeners():
            if event.contains(target, name, fn):
                event.remove(target, name, fn)
        self.engine.dialect.__dict__.pop("do_commit", None)
        self._fast.enabled = False
        if (
            getattr(self.engine.__dict__.get("_connection_cls"), "stratacache_fast", None)
            is self._fast
        ):
            del self.engine.__dict__["_connection_cls"]

    # -- attaching -------------------------------------------------------------------------------
    def _listeners(self) -> list[tuple[Any, str, Callable[..., Any]]]:
        engine = self.engine
        return [
            (engine, "do_execute", self._on_do_execute),
            (engine, "do_execute_no_params", self._on_do_execute_no_params),
            (engine, "before_cursor_execute", self._on_before_cursor_execute),
            (engine, "after_cursor_execute", self._on_after_cursor_execute),
            (engine, "commit", self._on_commit),
            (engine, "rollback", self._on_rollback),
            (engine.pool, "checkin", self._on_checkin),
        ]

    def _attach(self) -> None:
        previous = _ATTACHED.get(self.engine)
        if previous is not None:
            if previous.cache is not self.cache:
                raise ConfigError("this engine already has a QueryCache on another cache")
            previous.detach()
        for target, name, fn in self._listeners():
            event.listen(target, name, fn)
        dialect = self.engine.dialect
        original = type(dialect).do_commit

        def do_commit(dbapi_connection: Any) -> None:
            try:
                original(dialect, dbapi_connection)
            finally:
                self._committed(dbapi_connection)

        dialect.do_commit = do_commit  # type: ignore[method-assign]
        if self.engine._connection_cls is Connection:  # hits skip SQLAlchemy's per-statement work
            self.engine._connection_cls = connection_class(self._fast)
        _ATTACHED[self.engine] = self

    # -- reads -----------------------------------------------------------------------------------
    def _on_do_execute(self, cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        return self._serve(cursor, statement, parameters, context)

    def _on_do_execute_no_params(self, cursor: Any, statement: str, context: Any) -> bool:
        return self._serve(cursor, statement, None, context)

    def _serve(self, cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        """Answer a cacheable read from the cache; False lets SQLAlchemy execute as usual."""
        options = context.execution_options
        wanted = options.get("stratacache")
        if wanted is None:
            wanted = self.cache_all
        if not wanted or options.get("stream_results") or options.get("yield_per"):
            return False
        analysis = self._analyze(context, statement)
        if analysis.kind != "read":
            return False
        reason = analysis.refusal or self.refusal(analysis.tables, options, context.dialect)
        if reason is not None:
            self.counters.skipped(reason)
            return False
        ttl, extra_tags = parse_option(wanted)
        try:
            dialect = (
                f"{context.dialect.name}+{context.dialect.driver}"  # drivers return unlike rows
            )
            key = query_key(self.database_id, dialect, statement, parameters)
        except Unkeyable:
            self.counters.skipped("unkeyable parameter")
            return False
        params = context.compiled_parameters[0] if analysis.point is not None else {}
        own_tags = read_tags(self.database_id, analysis, params)
        tags = own_tags + extra_tags
        info = context.root_connection.info
        if _SESSION in info:
            self.counters.skipped("session state")
            return False  # SET search_path, SET ROLE, …: the same SQL may mean other rows here
        written = info.get(_WRITTEN)
        if written and (ALL in written or written & analysis.tables):
            for name in analysis.tables:
                self.counters.table(name).bypassed += 1
            return False  # read-your-writes: this transaction changed what the query reads
        is_async = context.dialect.is_async
        if written:  # nothing read in a writing transaction is stored: look only
            stored = self._peek(key, tags, is_async)
            if stored is None:
                return False
            hit = True
        else:
            stored, hit = self._fetch(key, tags, ttl, cursor, statement, parameters, context)
            if stored is None:
                return True  # executed, and it returned no rows to keep: the cursor stands
        self.counters.served(analysis.tables, len(stored[1]), hit)
        context.cursor = StoredCursor(stored, hit, (key, own_tags, analysis.tables))
        return True

    def refusal(
        self, tables: frozenset[str], options: Mapping[str, Any], dialect: Any
    ) -> str | None:
        """Why a read of ``tables`` with these execution options may not use the cache (None: it may)."""
        if tables & self.exclude_tables:
            return "excluded table"
        if dialect.name == "sqlite":
            return None
        level = options.get("isolation_level") or engine_isolation(dialect)
        if level is not None and level.upper() not in self.isolation_levels:
            return "isolation level"
        return None

    def _analyze(self, context: Any, statement: str) -> Analysis:
        compiled = context.compiled
        memo_key = (compiled is not None, statement)
        analysis = self._memo.get(memo_key)
        if analysis is None:
            if compiled is None:
                analysis = analyze_text(statement)
            else:
                analysis = analyze_compiled(compiled, statement)
            if analysis.kind == "read":
                refusal = volatility(statement, self.deterministic)
                if refusal is not None:
                    analysis = Analysis("read", analysis.tables, refusal)
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            self._memo[memo_key] = analysis
        return analysis

    @staticmethod
    def session_changed(info: Mapping[str, Any]) -> bool:
        """Whether a connection's session state was changed by SQL (its reads bypass the cache)."""
        return _SESSION in info

    @staticmethod
    def written(info: Mapping[str, Any]) -> bool:
        """Whether a connection's open transaction has written (its reads take the careful path)."""
        return bool(info.get(_WRITTEN))

    def _peek(self, key: str, tags: list[str], is_async: bool) -> Stored | None:
        if is_async:
            value = await_only(self.cache.get(key, tags=tags))
        else:
            value = self.cache.sync.get(key, tags=tags)
        return value if well_formed(value) else None

    def _fetch(
        self,
        key: str,
        tags: list[str],
        ttl: float | None,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
    ) -> tuple[Stored | None, bool]:
        """``get_or_set`` whose loader runs the caller's cursor (or, refreshing later, a fresh one)."""
        ran: list[Stored | None] = []
        home = threading.get_ident()
        active = True

        def run_here() -> Stored | None:
            if parameters is None:
                context.dialect.do_execute_no_params(cursor, statement, context)
            else:
                context.dialect.do_execute(cursor, statement, parameters, context)
            return capture(cursor)

        def load() -> Stored | None:
            if active and (context.dialect.is_async or threading.get_ident() == home):
                rows = run_here()
                ran.append(rows)
            else:  # a background refresh after the caller has gone: its own connection
                rows = self._load_alone(statement, parameters)
            if rows is None:
                raise _NoRows
            return rows

        loader: Callable[[], Any] = load
        if context.dialect.is_async:
            loader = lambda: greenlet_spawn(load)  # noqa: E731 - the loader runs in another task
        kwargs: dict[str, Any] = {"tags": tags, "refresh_after": None, "stale_ttl": 0}
        if ttl is not None or self.ttl is not None:
            kwargs["ttl"] = ttl if ttl is not None else self.ttl
        try:
            if context.dialect.is_async:
                value = await_only(self.cache.get_or_set(key, loader, **kwargs))
            else:
                value = self.cache.sync.get_or_set(key, loader, **kwargs)
        except Exception as exc:
            if not ran:  # another caller's load failed: this one runs its own query
                return run_here(), False
            if isinstance(exc, _NoRows):
                return None, False
            if not isinstance(exc, StratacacheError):
                raise  # the query itself failed: SQLAlchemy reports it as usual
            self.counters.skipped("unstorable result")
            return ran[0], False  # the rows could not be stored (e.g. an unserializable type)
        finally:
            active = False
        if not well_formed(value):  # not a stored result (a foreign value): ask the database
            return (ran[0] if ran else run_here()), False
        return value, not ran

    def _load_alone(self, statement: str, parameters: Any) -> Stored | None:
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            if parameters is None:
                cursor.execute(statement)
            else:
                cursor.execute(statement, parameters)
            return capture(cursor)
        finally:
            raw.rollback()
            raw.close()

    # -- writes ----------------------------------------------------------------------------------
    def _on_before_cursor_execute(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        analysis = self._analyze(context, statement) if context is not None else WRITES
        if analysis.kind == "session":
            conn.info[_SESSION] = True  # for the life of the database connection
        elif analysis.kind == "write":
            info = conn.info
            info.setdefault(_WRITTEN, set()).update(analysis.tables)
            params = context.compiled_parameters if analysis.point is not None else None
            info.setdefault(_TAGS, set()).update(write_tags(self.database_id, analysis, params))

    def _on_after_cursor_execute(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if _WRITTEN in conn.info and autocommit(conn, context):
            tables = conn.info.pop(_WRITTEN)
            self._invalidate(sorted(conn.info.pop(_TAGS, ())), tables, conn.dialect.is_async)

    def _on_commit(self, conn: Any) -> None:
        written = conn.info.pop(_WRITTEN, None)
        tags = conn.info.pop(_TAGS, None)
        if written:
            conn.info[_COMMITTING] = (sorted(tags or ()), written)

    def _committed(self, pooled: Any) -> None:
        info = getattr(pooled, "info", None)  # the pool's proxy: its info is the connection's
        committing = info.pop(_COMMITTING, None) if isinstance(info, dict) else None
        if committing:
            tags, tables = committing
            self._invalidate(tags, tables, self.engine.dialect.is_async)

    def _on_rollback(self, conn: Any) -> None:
        conn.info.pop(_WRITTEN, None)
        conn.info.pop(_TAGS, None)

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        for name in (_WRITTEN, _TAGS, _COMMITTING):
            record.info.pop(name, None)

    def _invalidate(self, tags: list[str], tables: set[str], is_async: bool) -> None:
        if is_async:
            await_only(self.cache.invalidate(tags=tags, reason="sql write"))
        else:
            self.cache.sync.invalidate(tags=tags, reason="sql write")
        self._count_invalidations(tables)

    def _tags_of(self, tables: Iterable[str] | None) -> tuple[list[str], set[str]]:
        if isinstance(tables, str):
            raise ConfigError("invalidate_tables takes a list of table names, not a string")
        names = {ALL} if tables is None else {t.lower() for t in tables}
        return tags_for(self.database_id, frozenset(names)), names

    def _count_invalidations(self, tables: Iterable[str]) -> None:
        for name in tables:
            if name == ALL:
                for counters in self.counters.tables.values():
                    counters.invalidations += 1
            else:
                self.counters.table(name).invalidations += 1


class _NoRows(Exception):
    """The statement returned no result set: nothing to cache."""


WRITES = Analysis("write", frozenset({ALL}))


__all__ = ["QueryCache", "from_cache"]
