"""``QueryCache``: SELECT results cached at the SQLAlchemy boundary, invalidated by the writes.

It hooks one ``Engine`` (or an ``AsyncEngine``'s ``sync_engine``) with SQLAlchemy
events and talks to the ``Cache`` through its public API only. The work is
split by job: ``reads.py`` answers cacheable reads at the driver boundary,
``writes.py`` tracks writes and invalidates after commit, ``fastpath.py`` and
``sessions.py`` serve repeated hits before SQLAlchemy's per-statement work
(``sa_private.py`` holds the SQLAlchemy internals the Core fast path needs).
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, Result
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.base import Executable

from ..core.errors import ConfigError
from ..engine.cache import Cache
from . import sa_private, sessions
from .analysis import ALL, SESSION, Analysis, analyze_text, changes_session, volatility
from .compiled import analyze_compiled, declared_cascades, metadata_of
from .fastpath import FastPath, Standalone
from .identity import explicit_id, identities
from .keys import database_id as short_id
from .keys import tags_for
from .policy import SAFE_LEVELS, check_ttl, engine_isolation
from .reads import Reads
from .rows import from_cache
from .stats import QueryStats
from .writes import Writes, session_changed, written

_MEMO_MAX = 4096
#: SQLAlchemy MetaData collections a query cache remembers for the cascades of text writes
_METADATA_MAX = 64
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
        exclude_tables: tables whose reads are never cached (any case; a schema-qualified
            name counts by its bare name, as tables are compared everywhere).
        ttl: seconds a result lives (None: the cache's ``default_ttl``).
        deterministic_functions: SQL functions to treat as deterministic besides the
            built-in list (a read calling any other function is not cached).
        isolation_levels: the isolation levels at which reads may be cached (default:
            READ COMMITTED, READ UNCOMMITTED, AUTOCOMMIT; SQLite is always eligible).
        database: the identity results are keyed by, when the URL alone does not tell
            what a query returns (e.g. a ``search_path`` set in ``connect_args``); results
            of different identities are never shared.
        database_id: the id writes invalidate under (in tags: ``sqltable:<id>:<table>``);
            engines with the same id invalidate each other. Default: derived from the
            backend and the database name, so any spelling of one database's URL agrees.

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
        database_id: str | None = None,
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
        # tables are compared by bare name everywhere: "audit.log" excludes every "log"
        self.exclude_tables = frozenset(
            t.rsplit(".", 1)[-1].strip('"`[]').lower() for t in exclude_tables
        )
        self.ttl = check_ttl(ttl)
        self.deterministic = frozenset(f.lower() for f in deterministic_functions)
        self.isolation_levels = frozenset(level.upper() for level in isolation_levels)
        try:
            written_id = None if database_id is None else explicit_id(database_id)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        writes_under, results_under = identities(sync_engine.url)
        #: id of the database writes invalidate under (in tags: ``sqltable:<database_id>:<table>``)
        self.database_id = written_id or short_id(writes_under)
        #: id of what a query returns here (in keys: ``sql:<result_id>:<digest>``)
        self.result_id = short_id(database or results_under)
        self.counters = QueryStats()
        self._memo: dict[tuple[bool, str], Analysis] = {}
        #: the MetaData of tables in the statements seen (oldest first): the ON DELETE/UPDATE
        #: foreign keys declared there say what a text write changes besides its target
        self._metadata: tuple[weakref.ref[Any], ...] = ()
        self._metadata_lock = threading.Lock()
        self._metadata_added = 0
        self._cascading: dict[Analysis, tuple[tuple[int, ...], Analysis]] = {}
        self._reads = Reads(self)
        self._writes = Writes(self)
        #: this query cache's own ``do_execute`` listeners (any other may answer executions)
        self.own_listeners = (self._reads.on_do_execute, self._reads.on_do_execute_no_params)
        self._fast = FastPath(self)
        self._standalone = Standalone(self._fast)
        self._session_hook = sessions.SessionHook(self._fast)
        self._attach()

    # -- public API ------------------------------------------------------------------------------
    def table_tags(self, table: str) -> list[str]:
        """The tags to invalidate for ``table`` (``cache.invalidate(tags=...)``, the CLI)."""
        return tags_for(self.database_id, frozenset({table.lower()}))

    def invalidate_tables(self, tables: Iterable[str] | None = None) -> None:
        """Outdate cached results reading ``tables`` (None: every result of this database).

        For writes made outside this engine. From async code use ``ainvalidate_tables``.
        """
        tags, names = self._writes.tags_of(tables)
        self.cache.sync.invalidate(tags=tags, reason="sql write")
        self._writes.count_invalidations(names)

    async def ainvalidate_tables(self, tables: Iterable[str] | None = None) -> None:
        """``invalidate_tables`` for async code."""
        tags, names = self._writes.tags_of(tables)
        await self.cache.invalidate(tags=tags, reason="sql write")
        self._writes.count_invalidations(names)

    def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Result[Any]:
        """Execute a Core SELECT on a connection of its own; a repeated cached one needs none.

        ``engine.connect()`` + ``conn.execute(statement)`` costs a pool checkout even when
        the cache answers. Here a statement the cache has answered before (same shape and
        values, see the fast path in the docs) is served with no connection, no
        transaction and no compilation; anything else runs on a fresh connection exactly
        as ``conn.execute`` would, and its result is returned fully buffered. Outside a
        transaction only: inside one, execute on its connection.

        ``parameters`` are execution-time values, as ``conn.execute(statement, parameters)``
        takes them: a statement built once with ``bindparam("id")`` and executed with
        ``{"id": 5}`` skips building the statement per call as well.

        Raises:
            ConfigError: the engine is an ``AsyncEngine`` (use ``aexecute``).
        """
        if self.async_engine is not None or self.engine.dialect.is_async:
            raise ConfigError("this QueryCache is on an AsyncEngine: use await qc.aexecute(...)")
        result: Result[Any] = self._standalone.execute(statement, parameters)
        return result

    async def aexecute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Result[Any]:
        """``execute`` for an ``AsyncEngine``: a repeated cached SELECT costs no greenlet switch.

        Raises:
            ConfigError: the QueryCache was not given an ``AsyncEngine``.
        """
        if self.async_engine is None:
            raise ConfigError("aexecute needs a QueryCache on an AsyncEngine; use execute")
        result: Result[Any] = await self._standalone.aexecute(
            statement, self.async_engine, parameters
        )
        return result

    def stats(self) -> dict[str, Any]:
        """``{"database": id, "tables": {name: hits, misses, rows_served, …}, "uncached": {…}}``."""
        return {"database": self.database_id, **self.counters.as_dict()}

    def detach(self) -> None:
        """Remove the hooks from the engine (cached results stay until they expire).

        A transaction that has written and commits after this invalidates nothing, and
        writes made while detached are not known to a query cache attached later: detach
        between transactions, and invalidate what was written meanwhile after attaching.
        """
        if _ATTACHED.get(self.engine) is not self:
            return
        del _ATTACHED[self.engine]
        for target, name, fn in self._listeners():
            if event.contains(target, name, fn):
                event.remove(target, name, fn)
        self.engine.dialect.__dict__.pop("do_commit", None)
        self._fast.enabled = False
        sa_private.uninstall_connection_class(self.engine, self)
        sessions.unregister(self.engine, self._session_hook)

    # -- attaching -------------------------------------------------------------------------------
    def _listeners(self) -> list[tuple[Any, str, Callable[..., Any]]]:
        engine, reads, writes = self.engine, self._reads, self._writes
        return [
            (engine, "do_execute", reads.on_do_execute),
            (engine, "do_execute_no_params", reads.on_do_execute_no_params),
            (engine, "before_cursor_execute", writes.before_cursor_execute),
            (engine, "after_cursor_execute", writes.after_cursor_execute),
            (engine, "commit", writes.on_commit),
            (engine, "rollback", writes.on_rollback),
            (engine, "handle_error", writes.on_error),
            (engine.pool, "checkin", writes.on_checkin),
        ]

    def _attach(self) -> None:
        sa_private.check()
        previous = _ATTACHED.get(self.engine)
        if previous is not None:
            if previous.cache is not self.cache:
                raise ConfigError("this engine already has a QueryCache on another cache")
            previous.detach()
        for target, name, fn in self._listeners():
            event.listen(target, name, fn)
        dialect, writes = self.engine.dialect, self._writes
        original = type(dialect).do_commit

        def do_commit(dbapi_connection: Any) -> None:  # invalidate once the database committed
            try:
                original(dialect, dbapi_connection)
            finally:
                writes.committed(dbapi_connection)

        dialect.do_commit = do_commit  # type: ignore[method-assign]
        sa_private.install_connection_class(self.engine, self, self._fast.serve)
        if self.engine.dialect.is_async:
            sa_private.install_async_connection(_aserve)
        sessions.register(self.engine, self._session_hook)
        _ATTACHED[self.engine] = self

    # -- decisions shared by the read paths ------------------------------------------------------
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

    def analyze(self, context: Any, statement: str) -> Analysis:
        """What a statement does (read, write, session change), memoised by its SQL."""
        compiled = context.compiled
        memo_key = (compiled is not None, statement)
        analysis = self._memo.get(memo_key)
        if analysis is None:
            if compiled is None:
                analysis = analyze_text(statement)
            else:
                analysis = analyze_compiled(compiled, statement)
            if analysis.kind == "read" and changes_session(statement):
                analysis = SESSION  # set_config(): as SET, for the life of the connection
            elif analysis.kind == "read":
                refusal = volatility(statement, self.deterministic)
                if refusal is not None:
                    analysis = Analysis("read", analysis.tables, refusal)
            if compiled is not None:
                self._remember_metadata(compiled)
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            self._memo[memo_key] = analysis
        if analysis.kind == "write" and self._metadata and ALL not in analysis.tables:
            return self._with_cascades(analysis)
        return analysis

    def _remember_metadata(self, compiled: Any) -> None:
        known = {id(ref()) for ref in self._metadata}
        new = [m for m in metadata_of(compiled) if id(m) not in known]
        if not new:
            return
        with self._metadata_lock:
            live = [ref for ref in self._metadata if ref() is not None]
            live += [weakref.ref(m) for m in new]
            self._metadata = tuple(live[-_METADATA_MAX:])
            self._metadata_added += 1

    def _with_cascades(self, analysis: Analysis) -> Analysis:
        """``analysis`` (a write) with the tables the declared foreign keys cascade into.

        A text ``DELETE FROM parent`` changes what ``child`` holds when the MetaData of
        the statements seen declares ``ON DELETE CASCADE`` (or ``SET NULL`` …) from it, as a
        Core ``delete()`` does. Memoised until a MetaData is added or gains tables.
        """
        added = self._metadata_added
        metadatas = [m for m in (ref() for ref in self._metadata) if m is not None]
        state = (added, *(len(m.tables) for m in metadatas))
        known = self._cascading.get(analysis)
        if known is not None and known[0] == state:
            return known[1]
        extra = declared_cascades(analysis.tables, metadatas)
        result = analysis
        if extra:  # more than one table: no longer a point write
            tables = frozenset({ALL}) if ALL in extra else analysis.tables | extra
            result = dataclasses.replace(analysis, tables=tables, point=None, key_type=None)
        if len(self._cascading) >= _MEMO_MAX:
            self._cascading.clear()
        self._cascading[analysis] = (state, result)
        return result

    session_changed = staticmethod(session_changed)
    written = staticmethod(written)


async def _aserve(conn: Any, statement: Any, parameters: Any, execution_options: Any) -> Any:
    """The fast path of ``conn``'s query cache, before an ``AsyncConnection``'s greenlet."""
    owner = getattr(conn, "stratacache_owner", None)
    if not isinstance(owner, QueryCache):
        return None
    return await owner._fast.aserve(conn, statement, parameters, execution_options)


__all__ = ["QueryCache", "from_cache"]
