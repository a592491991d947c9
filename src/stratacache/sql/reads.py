"""Cacheable reads answered at the driver boundary (SQLAlchemy's ``do_execute`` event).

By the time ``do_execute`` fires SQLAlchemy has compiled the statement and
built its execution context; the query cache keys the SQL and its parameters,
and either replays stored rows through ``StoredCursor`` or runs the caller's
cursor inside ``get_or_set``'s loader, so the engine's single-flight and its
no-stale-set leases apply. The ``Result`` is built by SQLAlchemy from the rows
in both cases: Core results and ORM objects (attached to the caller's session)
behave as without a cache.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy.util import await_only, greenlet_spawn

from ..core.errors import StratacacheError
from .analysis import ALL
from .keys import Unkeyable, option_key, query_key, read_tags
from .lexer import CLOCK_WORDS
from .policy import parse_option
from .rows import Stored, StoredCursor, capture, well_formed
from .writes import SESSION_CHANGED, TEXTUAL, WRITTEN

if TYPE_CHECKING:
    from .querycache import QueryCache


class _NoRows(Exception):
    """The statement returned no result set: nothing to cache."""


class Reads:
    """The ``do_execute`` listeners of one ``QueryCache``."""

    def __init__(self, owner: QueryCache) -> None:
        self.owner = owner

    def on_do_execute(self, cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        """``do_execute``: True when the cache (or its loader) answered."""
        return self.serve(cursor, statement, parameters, context)

    def on_do_execute_no_params(self, cursor: Any, statement: str, context: Any) -> bool:
        """``do_execute_no_params``: as ``on_do_execute``."""
        return self.serve(cursor, statement, None, context)

    def serve(self, cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        """Answer a cacheable read from the cache; False lets SQLAlchemy execute as usual."""
        options = context.execution_options
        wanted = options.get("stratacache")
        if wanted is None:
            wanted = self.owner.cache_all
        if not wanted or options.get("stream_results") or options.get("yield_per"):
            return False
        analysis = self.owner.analyze(context, statement)
        if analysis.kind != "read":
            return False
        reason = analysis.refusal or self.owner.refusal(analysis.tables, options, context.dialect)
        if reason is not None:
            self.owner.counters.skipped(reason)
            return False
        ttl, extra_tags = parse_option(wanted)
        if reads_the_clock(parameters):
            self.owner.counters.skipped("reads the clock ('now')")
            return False  # '::timestamp' of a bound 'now' or 'today' is the time of the query
        try:
            dialect = (
                f"{context.dialect.name}+{context.dialect.driver}"  # drivers return unlike rows
            )
            key = query_key(self.owner.result_id, dialect, statement, parameters)
        except Unkeyable:
            self.owner.counters.skipped("unkeyable parameter")
            return False
        if ttl is not None or extra_tags:  # other options, another entry (its own ttl and tags)
            key = option_key(key, ttl, extra_tags)
        params = context.compiled_parameters[0] if analysis.point is not None else {}
        own_tags = read_tags(self.owner.database_id, analysis, params)
        tags = own_tags + extra_tags
        info = context.root_connection.info
        if SESSION_CHANGED in info:
            self.owner.counters.skipped("session state")
            return False  # SET search_path, SET ROLE, …: the same SQL may mean other rows here
        if TEXTUAL in info:
            self.owner.counters.skipped("textual transaction")
            return False  # BEGIN sent as SQL: a snapshot may be held, its end is SQL text too
        written = info.get(WRITTEN)
        if not written and context.dialect.name == "sqlite" and _in_transaction(context):
            self.owner.counters.skipped("snapshot transaction")
            return False  # an open SQLite transaction reads an old snapshot (WAL)
        if written and (ALL in written or written & analysis.tables):
            for name in analysis.tables:
                self.owner.counters.table(name).bypassed += 1
            return False  # read-your-writes: this transaction changed what the query reads
        is_async = context.dialect.is_async
        if written:  # nothing read in a writing transaction is stored: look only
            stored = self.peek(key, tags, is_async)
            if stored is None:
                return False
            hit = True
        else:
            stored, hit = self.fetch(key, tags, ttl, cursor, statement, parameters, context)
            if stored is None:
                return True  # executed, and it returned no rows to keep: the cursor stands
        self.owner.counters.served(analysis.tables, len(stored[1]), hit)
        context.cursor = StoredCursor(stored, hit, (key, own_tags, analysis.tables))
        return True

    def peek(self, key: str, tags: list[str], is_async: bool) -> Stored | None:
        """The stored result under ``key``, without loading or storing (None: none)."""
        if is_async:
            value = await_only(self.owner.cache.get(key, tags=tags))
        else:
            value = self.owner.cache.sync.get(key, tags=tags)
        return value if well_formed(value) else None

    def fetch(
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
        started: list[bool] = []  # this caller's own query began (its failure is the caller's)
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
                started.append(True)
                rows = run_here()
                ran.append(rows)
            else:  # a background refresh after the caller has gone: its own connection
                rows = self.load_alone(statement, parameters)
            if rows is None:
                raise _NoRows
            return rows

        loader: Callable[[], Any] = load
        if context.dialect.is_async:
            loader = lambda: greenlet_spawn(load)  # noqa: E731 - the loader runs in another task
        kwargs: dict[str, Any] = {"tags": tags, "refresh_after": None, "stale_ttl": 0}
        if ttl is not None or self.owner.ttl is not None:
            kwargs["ttl"] = ttl if ttl is not None else self.owner.ttl
        try:
            if context.dialect.is_async:
                value = await_only(self.owner.cache.get_or_set(key, loader, **kwargs))
            else:
                value = self.owner.cache.sync.get_or_set(key, loader, **kwargs)
        except Exception as exc:
            if not started:  # another caller's load failed: this one runs its own query
                return run_here(), False
            if isinstance(exc, _NoRows):
                return None, False
            if not ran or not isinstance(exc, StratacacheError):
                raise  # the query itself failed: SQLAlchemy reports it as usual
            self.owner.counters.skipped("unstorable result")
            return ran[0], False  # the rows could not be stored (e.g. an unserializable type)
        finally:
            active = False
        if not well_formed(value):  # not a stored result (a foreign value): ask the database
            return (ran[0] if ran else run_here()), False
        return value, not ran

    def load_alone(self, statement: str, parameters: Any) -> Stored | None:
        """Run the statement on a connection of its own (a refresh after the caller left)."""
        raw = self.owner.engine.raw_connection()
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


def reads_the_clock(parameters: Any) -> bool:
    """Whether a bound value is a word a database casts to the current time (``'now'``)."""
    if isinstance(parameters, dict):
        values: Any = parameters.values()
    elif isinstance(parameters, (list, tuple)):
        values = parameters
    else:
        return False
    return any(type(v) is str and v.strip().lower() in CLOCK_WORDS for v in values)


def _in_transaction(context: Any) -> bool:
    """Whether the SQLite connection has a transaction open (its reads see one snapshot)."""
    driver = getattr(context.root_connection.connection, "driver_connection", None)
    return bool(getattr(driver, "in_transaction", False))


__all__ = ["Reads"]
