"""Every use of SQLAlchemy internals by the query cache, in one place, checked at attach time.

SQLAlchemy has no public hook that answers a Core ``Connection.execute`` before
it compiles the statement, builds an execution context and opens a DBAPI
cursor; most of a cached read's cost is there. Sessions have one
(``do_orm_execute``, used by ``sessions.py``); plain connections do not. So the
Core fast path relies on these internals, each used only here:

* ``Engine._connection_cls``: the class ``Engine.connect()`` instantiates (the
  same attribute SQLAlchemy's own ``engine.execution_options()`` copies); the
  query cache installs a subclass overriding ``_execute_clauseelement``, the
  method ``Connection.execute`` calls for a ``ClauseElement``.
* ``AsyncConnection.execute`` and ``AsyncSession.execute``: wrapped once per
  process (when a query cache is attached to an ``AsyncEngine``) so a repeated
  cached Core SELECT is answered before the greenlet and, for a session, the
  ORM's per-statement work; any other execution runs the original unchanged.
  ``AsyncSession.close``/``__aexit__`` likewise close a session that only read
  from the cache (no transaction, no objects) without a task and a greenlet.
* ``Executable._propagate_attrs``: non-empty when a statement involves ORM
  entities (what ``Session.execute`` checks to hand it to the ORM).
* ``Connection._autobegin()``: a hit begins the connection's transaction as the
  execution it replaces would have.
* ``ClauseElement._generate_cache_key()``: SQLAlchemy's own cache key of a
  statement's shape and bound values (what keys its compiled cache).
* ``CursorResult._metadata``: a result's column metadata, shared by results of
  one compiled statement, reused to build a ``Result`` over cached rows.

``check()`` fails with a clear ``ConfigError`` when one of them is missing or
changed shape (a SQLAlchemy version this code was not written for); the test
suite runs it, and the query cache calls it before installing anything. The
``Dialect.do_commit`` wrapper (invalidation after the database committed) uses
the public dialect interface and lives in ``querycache.py``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.selectable import Select
from sqlalchemy.util import EMPTY_DICT

from ..core.errors import ConfigError

TESTED = ((2, 0), (2, 1))
"""SQLAlchemy major.minor versions whose internals this module was checked against."""


def check() -> None:
    """Raise ``ConfigError`` unless the internals used here exist with the expected shape."""
    problems = []
    if getattr(Engine, "_connection_cls", None) is not Connection:
        problems.append("Engine._connection_cls")
    method = getattr(Connection, "_execute_clauseelement", None)
    if method is None or list(inspect.signature(method).parameters) != [
        "self",
        "elem",
        "distilled_parameters",
        "execution_options",
    ]:
        problems.append("Connection._execute_clauseelement(elem, distilled_parameters, options)")
    for cls, params in (
        (AsyncConnection, ["self", "statement", "parameters", "execution_options"]),
        (
            AsyncSession,
            ["self", "statement", "params", "execution_options", "bind_arguments", "kw"],
        ),
    ):
        if list(inspect.signature(cls.execute).parameters) != params:
            problems.append(f"{cls.__name__}.execute({', '.join(params[1:])})")
    if list(inspect.signature(AsyncSession.close).parameters) != ["self"] or list(
        inspect.signature(AsyncSession.__aexit__).parameters
    ) != ["self", "type_", "value", "traceback"]:
        problems.append("AsyncSession.close(), AsyncSession.__aexit__(type_, value, traceback)")
    if not hasattr(Select(), "_propagate_attrs"):
        problems.append("Executable._propagate_attrs")
    if not callable(getattr(Connection, "_autobegin", None)):
        problems.append("Connection._autobegin()")
    if not callable(getattr(ClauseElement, "_generate_cache_key", None)):
        problems.append("ClauseElement._generate_cache_key()")
    if "_metadata" not in getattr(CursorResult, "__slots__", ()) and not hasattr(
        CursorResult, "_metadata"
    ):
        problems.append("CursorResult._metadata")
    from sqlalchemy.engine.cursor import CursorResultMetaData

    if not callable(getattr(CursorResultMetaData, "_adapt_to_context", None)):
        problems.append("CursorResultMetaData._adapt_to_context(context)")
    if problems:
        import sqlalchemy

        raise ConfigError(
            f"stratacache.sql does not support SQLAlchemy {sqlalchemy.__version__}: "
            f"missing or changed internals {', '.join(problems)}"
        )


def install_connection_class(engine: Engine, owner: object, serve: Callable[..., Any]) -> None:
    """Make ``engine.connect()`` return connections whose Core executions try ``serve`` first.

    ``serve(conn, elem, distilled_parameters, execution_options, ordinary)`` returns the
    result, calling ``ordinary()`` for SQLAlchemy's own execution. An engine whose class
    was already replaced by someone else is left alone (its connections take the
    ordinary path, which is as correct and only slower).
    """
    if engine._connection_cls is not Connection and not _ours(engine):
        return

    class CachingConnection(Connection):
        """A ``Connection`` answering repeated cached SELECTs before compiling them."""

        stratacache_owner = owner
        #: the statement whose cached result the fast path has just found missing (its next
        #: execution on this connection skips asking the cache again: the ordinary path asks)
        stratacache_missed: Any = None

        def _execute_clauseelement(
            self, elem: Any, distilled_parameters: Any, execution_options: Any
        ) -> Any:
            def ordinary() -> Any:
                return super(CachingConnection, self)._execute_clauseelement(
                    elem, distilled_parameters, execution_options
                )

            return serve(self, elem, distilled_parameters, execution_options, ordinary)

    engine._connection_cls = CachingConnection


def install_async_connection(aserve: Callable[..., Awaitable[Any]]) -> None:
    """Make ``AsyncConnection.execute`` try ``aserve`` first on query-cached connections (once).

    Only an ``AsyncConnection`` whose sync connection was made by a query cache's
    engine (``install_connection_class``) asks ``aserve(sync_connection, statement,
    parameters, execution_options)``; a None answer, or any other connection, runs the
    ordinary ``execute``.
    """
    original = AsyncConnection.execute
    if getattr(original, "stratacache_original", None) is not None:
        return

    async def execute(
        self: AsyncConnection,
        statement: Any,
        parameters: Any = None,
        *,
        execution_options: Any = None,
    ) -> Any:
        sync = self.sync_connection
        if getattr(sync, "stratacache_owner", None) is not None:
            result = await aserve(sync, statement, parameters, execution_options)
            if result is not None:
                return result
        return await original(self, statement, parameters, execution_options=execution_options)

    execute.stratacache_original = original  # type: ignore[attr-defined]
    functools.update_wrapper(execute, original)
    AsyncConnection.execute = execute  # type: ignore[method-assign]


def uninstall_connection_class(engine: Engine, owner: object) -> None:
    """Undo ``install_connection_class`` for ``owner`` (a no-op if another owner's is installed)."""
    if getattr(engine.__dict__.get("_connection_cls"), "stratacache_owner", None) is owner:
        del engine.__dict__["_connection_cls"]


def _ours(engine: Engine) -> bool:
    return hasattr(engine.__dict__.get("_connection_cls"), "stratacache_owner")


AsyncSessionServe = Callable[[AsyncSession, Any, Any, Any, Any, Any], Awaitable[Any]]


def install_async_session(
    aserve: AsyncSessionServe, closes_alone: Callable[[AsyncSession], bool]
) -> None:
    """Make every ``AsyncSession.execute`` try ``aserve`` first (once per process).

    ``aserve(session, statement, params, execution_options, bind_arguments, kw)``
    returns a result or None (None: ``AsyncSession.execute`` runs as it would).
    ``AsyncSession.close`` (and ``async with``'s exit) call ``Session.close`` directly,
    with no task or greenlet, when ``closes_alone(session)`` says it has nothing to
    release (no transaction, no objects): then it awaits nothing and cannot be cut short.
    """
    original = AsyncSession.execute
    if getattr(original, "stratacache_original", None) is not None:
        return
    original_close, original_exit = AsyncSession.close, AsyncSession.__aexit__

    async def close(self: AsyncSession) -> None:
        if closes_alone(self):
            self.sync_session.close()
        else:
            await original_close(self)

    async def __aexit__(self: AsyncSession, type_: Any, value: Any, traceback: Any) -> None:
        if closes_alone(self):
            self.sync_session.close()
        else:
            await original_exit(self, type_, value, traceback)

    functools.update_wrapper(close, original_close)
    functools.update_wrapper(__aexit__, original_exit)
    AsyncSession.close = close  # type: ignore[method-assign]
    AsyncSession.__aexit__ = __aexit__  # type: ignore[method-assign]

    async def execute(
        self: AsyncSession,
        statement: Any,
        params: Any = None,
        *,
        execution_options: Any = EMPTY_DICT,
        bind_arguments: Any = None,
        **kw: Any,
    ) -> Any:
        result = await aserve(self, statement, params, execution_options, bind_arguments, kw)
        if result is not None:
            return result
        return await original(
            self,
            statement,
            params,
            execution_options=execution_options,
            bind_arguments=bind_arguments,
            **kw,
        )

    execute.stratacache_original = original  # type: ignore[attr-defined]
    functools.update_wrapper(execute, original)
    AsyncSession.execute = execute  # type: ignore[method-assign]


def orm_statement(statement: Any) -> bool:
    """Whether ``statement`` involves ORM entities (``Session.execute`` hands it to the ORM)."""
    return bool(getattr(statement, "_propagate_attrs", True))


def foreign_cursor_hooks(dispatch: Any, dialect: Any, own: Sequence[Any]) -> bool:
    """Whether listeners other than ``own`` may change what an execution sends or returns.

    A ``before_cursor_execute`` listener registered with ``retval=True`` may rewrite the
    SQL (a tenant's schema, a comment): SQLAlchemy wraps every other one in a function
    named ``wrap_before_cursor_execute`` that discards its return value. A ``do_execute``
    listener of the ``dialect`` that is not ``own`` may answer the execution itself.
    """
    for fn in dispatch.before_cursor_execute:
        if getattr(fn, "__name__", None) != "wrap_before_cursor_execute":
            return True
    return any(
        fn not in own
        for name in ("do_execute", "do_execute_no_params")
        for fn in getattr(dialect.dispatch, name)
    )


class _Invoked:
    """What ``CursorResultMetaData._adapt_to_context`` reads of an execution context."""

    __slots__ = ("compiled", "invoked_statement")

    class _Compiled:
        _result_columns = True
        statement = None  # never the invoked statement: always adapt

    def __init__(self, statement: Any) -> None:
        self.compiled = self._Compiled()
        self.invoked_statement = statement


def adapt_metadata(metadata: Any, statement: Any) -> Any:
    """``metadata`` (learned from an equal statement) keyed by ``statement``'s own columns too.

    SQLAlchemy does this when a cached compiled form serves a new statement object, so
    that ``row._mapping[subquery.c.x]`` finds a column of a subquery built anew per call.
    """
    keymap = metadata._keymap
    if all(column in keymap for column in statement._all_selected_columns):
        return metadata  # the same column objects (a table's): nothing to add
    return metadata._adapt_to_context(_Invoked(statement))


def orm_load(options: Mapping[str, Any]) -> bool:
    """Whether these execution options are those of a Session's ORM load (it needs a cursor result).

    The ORM marks the Core execution of an ORM statement with
    ``_result_disable_adapt_to_context`` (and legacy ``Query`` with ``_sa_orm_load_options``).
    """
    return "_result_disable_adapt_to_context" in options or "_sa_orm_load_options" in options


def autobegin(conn: Connection) -> None:
    """Begin ``conn``'s transaction if none is open, as executing a statement would."""
    if not conn.in_transaction():
        conn._autobegin()


def cache_key(elem: Any) -> tuple[Hashable, list[Any]] | None:
    """SQLAlchemy's cache key of ``elem``: (its shape, its bind parameters); None if uncacheable."""
    key = elem._generate_cache_key()
    if key is None:
        return None
    return key.key, key.bindparams


def result_metadata(result: Any) -> Any:
    """The column metadata of a ``CursorResult`` (None for any other result)."""
    return getattr(result, "_metadata", None) if isinstance(result, CursorResult) else None


__all__ = [
    "TESTED",
    "adapt_metadata",
    "autobegin",
    "cache_key",
    "check",
    "foreign_cursor_hooks",
    "install_async_connection",
    "install_async_session",
    "install_connection_class",
    "orm_load",
    "orm_statement",
    "result_metadata",
    "uninstall_connection_class",
]
