"""Session reads answered before the Session checks out a connection (``do_orm_execute``).

``Session.execute(stmt)`` runs its ``do_orm_execute`` listeners before it picks
a connection; a listener returning a ``Result`` ends the execution there. So a
repeated cached Core SELECT (table columns, no ORM entities) executed through a
``Session`` or ``AsyncSession`` whose bind is the query cache's engine is
served with no pool checkout, no compilation and no cursor, from what the fast
path learned on an earlier ordinary execution (``fastpath.py``).

It declines, leaving the ordinary path to decide, whenever it cannot be sure:
an ORM statement (its objects are loaded into the session by SQLAlchemy from
the stored rows, on the ordinary path), parameters given at execution, pending
changes in the session (autoflush would write first), a connection of the
session's transaction that has written or changed its session state, an
isolation level that refuses, another ``do_orm_execute`` listener registered
after it (it may rewrite the statement), or anything ``FastPath`` refuses.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, Result
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.util import await_only

from .fastpath import FastPath, fits, shape
from .policy import parse_option

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


class SessionHook:
    """The ``do_orm_execute`` listener of one ``QueryCache`` (registered on ``Session``)."""

    def __init__(self, fast: FastPath) -> None:
        self.fast = fast

    def __call__(self, state: ORMExecuteState) -> Result[Any] | None:
        """A cached ``Result`` for a Core SELECT without execution-time parameters, or None."""
        fast = self.fast
        if not fast.enabled:
            return None
        session = state.session
        engine = fast.owner.engine
        options: Mapping[str, Any] = engine.get_execution_options().union(state.execution_options)
        wanted = fast.wanted(engine.dispatch, options)
        if wanted is None or session.new or session.deleted or session.dirty:
            return None
        try:
            identity = shape(state.statement, ())
        except TypeError:  # an unhashable value in SQLAlchemy's cache key
            return None
        if identity is None:
            return None
        shortcut = fast.lookup(identity)
        if shortcut is None:  # learn it from the ordinary execution, served now
            result: Result[Any] = state.invoke_statement()
            fast.learn(identity, result)
            return result
        if session.in_transaction():
            conn: Connection = session.connection(bind_arguments=state.bind_arguments)
            conn_options = conn.get_execution_options().union(options)
            if fast.eligible(conn, conn_options) is None:  # e.g. a schema_translate_map
                return None
            if not fast.may_read(conn, shortcut, conn_options):
                return None
        elif fast.owner.refusal(shortcut.tables, options, engine.dialect) is not None:
            return None
        _, extra = parse_option(wanted)
        tags = [*shortcut.tags, *extra]
        if engine.dialect.is_async:
            value = await_only(fast.owner.cache.get(shortcut.key, tags=tags))
        else:
            value = fast.owner.cache.sync.get(shortcut.key, tags=tags)
        if not fits(value, shortcut):
            return None  # a miss: the ordinary path loads and stores
        return fast.result_of(shortcut, value)


# One listener on the Session class for the whole process, finding the hook by the
# session's engine; hooks are held weakly (a QueryCache dropped without detach() leaves
# nothing behind but an empty slot).
_HOOKS: weakref.WeakKeyDictionary[Engine, weakref.ref[SessionHook]] = weakref.WeakKeyDictionary()


def register(engine: Engine, hook: SessionHook) -> None:
    """Serve ``engine``'s Session reads through ``hook`` (replacing any earlier hook)."""
    if not event.contains(Session, "do_orm_execute", _dispatch):
        event.listen(Session, "do_orm_execute", _dispatch)
    _HOOKS[engine] = weakref.ref(hook)


def unregister(engine: Engine, hook: SessionHook) -> None:
    """Stop serving ``engine``'s Session reads through ``hook`` (no-op if another is registered)."""
    ref = _HOOKS.get(engine)
    if ref is not None and ref() is hook:
        del _HOOKS[engine]


def _dispatch(state: ORMExecuteState) -> Result[Any] | None:
    if not _HOOKS or state.is_orm_statement or not state.is_select or state.parameters:
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


__all__ = ["SessionHook", "register", "unregister"]
