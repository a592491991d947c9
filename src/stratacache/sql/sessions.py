"""Session reads answered before the Session checks out a connection (``do_orm_execute``).

``Session.execute(stmt)`` runs its ``do_orm_execute`` listeners before it picks
a connection; a listener returning a ``Result`` ends the execution there. So a
repeated cached Core SELECT (table columns, no ORM entities) executed through a
``Session`` or ``AsyncSession`` whose bind is the query cache's engine is
served with no pool checkout, no compilation and no cursor, from what the fast
path learned on an earlier ordinary execution (``fastpath.py``).

It declines, leaving the ordinary path to decide, whenever it cannot be sure:
an ORM statement (its objects are loaded into the session by SQLAlchemy from
the stored rows, on the ordinary path), an ``executemany``, pending
changes in the session (autoflush would write first), a connection of the
session's transaction that has written or changed its session state, an
isolation level that refuses, another ``do_orm_execute`` listener registered
after it (it may rewrite the statement), or anything ``FastPath`` refuses.

An ``AsyncSession`` runs ``Session.execute`` in a greenlet, whose switches cost
more than a hit. So ``AsyncSession.execute`` first asks ``_adispatch``, which
makes the same decision before the greenlet, for the plain case only (a Core
SELECT the fast path knows, a session outside a transaction, no other listener,
no bind arguments); it returns None for anything else, and the greenlet path runs.
Closing a session it served that holds nothing (no transaction, no objects)
needs no greenlet either (``_closes_alone``).
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, Result
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.sql.selectable import CompoundSelect, Select
from sqlalchemy.util import await_only

from . import sa_private
from .fastpath import FastPath, Shortcut, distill, fits, identify

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


class SessionHook:
    """The ``do_orm_execute`` listener of one ``QueryCache`` (registered on ``Session``)."""

    def __init__(self, fast: FastPath) -> None:
        self.fast = fast

    def find(
        self, session: Session, statement: Any, parameters: Any, local_options: Mapping[str, Any]
    ) -> tuple[tuple[Hashable, Hashable], Shortcut | None, Mapping[str, Any], Any] | None:
        """(identity, shortcut or None, options, extra tags) of a statement the hook may serve.

        ``local_options`` are the options given to ``execute``; the options in force merge
        as SQLAlchemy merges them: the statement's, then the connection's (the engine's),
        then the execution's.
        """
        fast = self.fast
        distilled = distill(parameters)
        if not fast.enabled or distilled is None:
            return None
        engine = fast.owner.engine
        options: Mapping[str, Any] = statement.get_execution_options().merge_with(
            engine.get_execution_options(), local_options
        )
        wanted = fast.wanted(engine.dispatch, options)
        if wanted is None or session.new or session.deleted or session.dirty:
            return None
        found = identify(statement, distilled, wanted)
        if found is None:
            return None
        identity, extra = found
        return identity, fast.lookup(identity), options, extra

    def __call__(self, state: ORMExecuteState) -> Result[Any] | None:
        """A cached ``Result`` for a Core SELECT the fast path knows, or None."""
        session = state.session
        found = self.find(session, state.statement, state.parameters, state.local_execution_options)
        if found is None:
            return None
        identity, shortcut, options, extra = found
        fast, engine = self.fast, self.fast.owner.engine
        if shortcut is None:  # learn it from the ordinary execution, served now
            result: Result[Any] = state.invoke_statement()
            fast.learn(identity, result)
            return result
        if session.in_transaction():
            conn: Connection = session.connection(bind_arguments=state.bind_arguments)
            conn_options = state.statement.get_execution_options().merge_with(
                conn.get_execution_options(), state.local_execution_options
            )
            if fast.eligible(conn, conn_options) is None:  # e.g. a schema_translate_map
                return None
            if not fast.may_read(conn, shortcut, conn_options):
                return None
        elif fast.owner.refusal(shortcut.tables, options, engine.dialect) is not None:
            return None
        tags = [*shortcut.tags, *extra]
        if engine.dialect.is_async:
            value = await_only(fast.owner.cache.get(shortcut.key, tags=tags))
        else:
            value = fast.owner.cache.sync.get(shortcut.key, tags=tags)
        if not fits(value, shortcut):
            return None  # a miss: the ordinary path loads and stores
        return fast.result_of(shortcut, value, state.statement)

    async def aserve(
        self, session: Session, statement: Any, parameters: Any, local_options: Mapping[str, Any]
    ) -> Result[Any] | None:
        """``__call__`` before an ``AsyncSession`` enters its greenlet, outside a transaction only."""
        found = self.find(session, statement, parameters, local_options)
        if found is None or session.in_transaction():
            return None  # the greenlet path decides (and checks the transaction's connection)
        _, shortcut, options, extra = found
        if shortcut is None:
            return None  # the greenlet path learns it
        fast = self.fast
        if fast.owner.refusal(shortcut.tables, options, fast.owner.engine.dialect) is not None:
            return None
        value = await fast.owner.cache.get(shortcut.key, tags=[*shortcut.tags, *extra])
        if not fits(value, shortcut):
            return None
        return fast.result_of(shortcut, value, statement)


# One listener on the Session class for the whole process, finding the hook by the
# session's engine; hooks are held weakly (a QueryCache dropped without detach() leaves
# nothing behind but an empty slot).
_HOOKS: weakref.WeakKeyDictionary[Engine, weakref.ref[SessionHook]] = weakref.WeakKeyDictionary()
_SELECTS = (Select, CompoundSelect)
_SERVED: weakref.WeakSet[AsyncSession] = weakref.WeakSet()  # sessions _adispatch answered


def register(engine: Engine, hook: SessionHook) -> None:
    """Serve ``engine``'s Session reads through ``hook`` (replacing any earlier hook)."""
    if not event.contains(Session, "do_orm_execute", _dispatch):
        event.listen(Session, "do_orm_execute", _dispatch)
    if engine.dialect.is_async:
        sa_private.install_async_session(_adispatch, _closes_alone)
    _HOOKS[engine] = weakref.ref(hook)


def unregister(engine: Engine, hook: SessionHook) -> None:
    """Stop serving ``engine``'s Session reads through ``hook`` (no-op if another is registered)."""
    ref = _HOOKS.get(engine)
    if ref is not None and ref() is hook:
        del _HOOKS[engine]


def _dispatch(state: ORMExecuteState) -> Result[Any] | None:
    if not _HOOKS or state.is_orm_statement or not state.is_select:
        return None  # the cheap refusals first: this runs for every Session execution
    *_, last = state.session.dispatch.do_orm_execute
    if last is not _dispatch:  # a later listener may rewrite the statement or return its own
        return None  # result: let it run; the ordinary path still serves from the cache
    try:  # the engine this statement would run on (a session may bind tables apart)
        bind = state.session.get_bind(**state.bind_arguments)
    except Exception:  # no bind at all: the ordinary path reports it
        return None
    ref = _HOOKS.get(bind) if isinstance(bind, Engine) else None
    hook = None if ref is None else ref()
    return None if hook is None else hook(state)


async def _adispatch(
    session: AsyncSession,
    statement: Any,
    params: Any,
    execution_options: Any,
    bind_arguments: Any,
    kw: Any,
) -> Result[Any] | None:
    """``AsyncSession.execute``'s first step: a known cached Core SELECT served, else None.

    Only what ``_dispatch`` would hand the hook, minus anything that needs the greenlet:
    no bind arguments, no ORM entities, no other ``do_orm_execute``
    listener, no session-wide execution options, the stock ``get_bind``.
    """
    if not _HOOKS or bind_arguments or kw or type(statement) not in _SELECTS:
        return None
    sync = session.sync_session
    if (
        sa_private.orm_statement(statement)
        or list(sync.dispatch.do_orm_execute) != [_dispatch]
        or getattr(sync, "execution_options", None)
        or type(sync).get_bind is not Session.get_bind
    ):
        return None
    try:
        bind = sync.get_bind(clause=statement)
    except Exception:  # no bind: the ordinary path reports it
        return None
    ref = _HOOKS.get(bind) if isinstance(bind, Engine) else None
    hook = None if ref is None else ref()
    if hook is None:
        return None
    result = await hook.aserve(sync, statement, params, execution_options or {})
    if result is not None:
        _SERVED.add(session)
    return result


def _closes_alone(session: AsyncSession) -> bool:
    """Whether ``session`` was served here and holds nothing to release (no I/O to close it)."""
    if session not in _SERVED:
        return False
    sync = session.sync_session
    return (
        type(sync).close is Session.close
        and not sync.in_transaction()
        and not sync.identity_map
        and not sync.new
        and not sync.deleted
    )


__all__ = ["SessionHook", "register", "unregister"]
