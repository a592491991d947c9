"""Writes tracked per connection; their tables invalidated once the transaction commits.

A write records, in the connection's ``info`` (which lives as long as the
database connection), the tables it touched and the tags to invalidate; reads
of those tables bypass the cache until the transaction ends (read-your-writes).
The tags are invalidated after the database has committed (the dialect's
``do_commit``), or at once in autocommit; a rollback, or a connection returned
to the pool unfinished, drops them.

Transaction control sent as SQL text is understood too (``txcontrol.py``): a
textual ``COMMIT`` invalidates, a textual ``ROLLBACK`` drops, and a statement
that may have committed implicitly (``BEGIN`` on MySQL, ``RELEASE`` on SQLite,
DDL, a session change) invalidates what is pending at once and keeps it for the
real commit. While a transaction begun by SQL text is open, the connection's
reads are not cached and its writes wait for that transaction's end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy.util import await_only

from ..core.errors import ConfigError
from .analysis import ALL, Analysis, creates_private_objects
from .keys import database_tag, tags_for, write_tags
from .policy import autocommit

if TYPE_CHECKING:
    from .querycache import QueryCache

WRITTEN = "stratacache.written"  # connection.info: tables written by the open transaction
TAGS = "stratacache.tags"  # connection.info: tags the open transaction's writes invalidate
SESSION_CHANGED = "stratacache.session"  # connection.info: its session state was changed by SQL
COMMITTING = "stratacache.committing"  # connection.info: (tags, tables) of the commit under way
TEXTUAL = "stratacache.textual"  # connection.info: a transaction begun by SQL text is open
ENDING = "stratacache.ending"  # connection.info: what the statement under way does to the writes
_FLUSHING = frozenset({"flush", "begin", "begin-session", "release", "unknown"})
_OPENING = frozenset(
    {"begin", "begin-session", "commit-chain", "rollback-chain", "savepoint", "unknown"}
)
WRITES = Analysis("write", frozenset({ALL}))


def session_changed(info: Mapping[str, Any]) -> bool:
    """Whether SQL changed a connection's session state or opened a transaction (no caching)."""
    return SESSION_CHANGED in info or TEXTUAL in info


def written(info: Mapping[str, Any]) -> bool:
    """Whether a connection's open transaction has written (its reads take the careful path)."""
    return bool(info.get(WRITTEN))


def _ending(info: dict[str, Any], context: Any) -> str | None:
    """The action recorded for the statement of ``context`` (one left by another: dropped)."""
    recorded = info.pop(ENDING, None)
    if recorded is None or recorded[0] is not context:
        return None
    action: str = recorded[1]
    return action


class Writes:
    """The write-tracking listeners of one ``QueryCache``."""

    def __init__(self, owner: QueryCache) -> None:
        self.owner = owner

    def before_cursor_execute(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        """Record what a write (or a session-state change) does to the open transaction."""
        analysis = self.owner.analyze(context, statement) if context is not None else WRITES
        info = conn.info
        if analysis.kind == "session":
            info[SESSION_CHANGED] = True  # for the life of the database connection
            info[ENDING] = (context, "flush")  # MySQL's SET autocommit = 1 commits
        elif analysis.kind == "write":
            if ALL in analysis.tables and creates_private_objects(statement):
                info[SESSION_CHANGED] = True  # its own temporary table: never shares results
            info.setdefault(WRITTEN, set()).update(analysis.tables)
            params = context.compiled_parameters if analysis.point is not None else None
            info.setdefault(TAGS, set()).update(
                write_tags(self.owner.database_id, analysis, params)
            )
            if ALL in analysis.tables:
                info[ENDING] = (context, "flush")  # DDL commits the open transaction on MySQL
        elif analysis.kind == "transaction":
            if analysis.action in ("unknown", "begin-session"):
                info[SESSION_CHANGED] = True
            if analysis.action == "unknown":  # whatever it did, it did to the whole database
                info.setdefault(WRITTEN, set()).add(ALL)
                info.setdefault(TAGS, set()).add(database_tag(self.owner.database_id))
            info[ENDING] = (context, analysis.action)

    def after_cursor_execute(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        """In autocommit a write is committed as it runs: invalidate at once; then textual control."""
        info = conn.info
        if WRITTEN in info and TEXTUAL not in info and autocommit(conn, context):
            tables = info.pop(WRITTEN)
            self.invalidate(sorted(info.pop(TAGS, ())), tables, conn.dialect.is_async)
        action = _ending(info, context)
        if action is not None:
            self.ended(info, action, conn.dialect.is_async)

    def on_error(self, context: Any) -> None:
        """A statement that may have committed and failed: invalidate what is pending (kept)."""
        conn = context.connection
        if conn is None or conn.closed:
            return
        try:
            info = conn.info
        except Exception:  # the connection is gone: SQLAlchemy reports the error as usual
            return
        action = _ending(info, context.execution_context)
        if action is not None and action not in ("rollback", "keep"):
            self.ended(info, "flush", conn.dialect.is_async)

    def ended(self, info: dict[str, Any], action: str, is_async: bool) -> None:
        """What a statement that ends, begins or may commit a transaction does to pending writes."""
        if action in ("commit", "commit-chain") and WRITTEN in info:
            tables = info.pop(WRITTEN)
            self.invalidate(sorted(info.pop(TAGS, ())), tables, is_async)
        elif action in ("rollback", "rollback-chain"):
            info.pop(WRITTEN, None)
            info.pop(TAGS, None)
        elif action in _FLUSHING and info.get(WRITTEN):  # kept for the real commit too
            self.invalidate(sorted(info.get(TAGS, ())), set(info[WRITTEN]), is_async)
        if action in _OPENING:
            info[TEXTUAL] = True
        elif action in ("commit", "rollback"):
            info.pop(TEXTUAL, None)

    def on_commit(self, conn: Any) -> None:
        """Hand the transaction's writes to the commit under way (invalidated once it succeeds)."""
        conn.info.pop(TEXTUAL, None)
        written = conn.info.pop(WRITTEN, None)
        tags = conn.info.pop(TAGS, None)
        if written:
            conn.info[COMMITTING] = (sorted(tags or ()), written)

    def committed(self, pooled: Any) -> None:
        """After the database committed: invalidate what the transaction wrote."""
        info = getattr(pooled, "info", None)  # the pool's proxy: its info is the connection's
        committing = info.pop(COMMITTING, None) if isinstance(info, dict) else None
        if committing:
            tags, tables = committing
            self.invalidate(tags, tables, self.owner.engine.dialect.is_async)

    def on_rollback(self, conn: Any) -> None:
        """A rollback invalidates nothing."""
        conn.info.pop(TEXTUAL, None)
        conn.info.pop(WRITTEN, None)
        conn.info.pop(TAGS, None)

    def on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        """A connection back in the pool carries no transaction state."""
        for name in (WRITTEN, TAGS, COMMITTING, TEXTUAL, ENDING):
            record.info.pop(name, None)

    def invalidate(self, tags: list[str], tables: set[str], is_async: bool) -> None:
        """Invalidate ``tags`` in every tier and process; count it for ``tables``."""
        if is_async:
            await_only(self.owner.cache.invalidate(tags=tags, reason="sql write"))
        else:
            self.owner.cache.sync.invalidate(tags=tags, reason="sql write")
        self.count_invalidations(tables)

    def tags_of(self, tables: Iterable[str] | None) -> tuple[list[str], set[str]]:
        """The tags and table names of ``invalidate_tables(tables)``; raises ConfigError on a string."""
        if isinstance(tables, str):
            raise ConfigError("invalidate_tables takes a list of table names, not a string")
        names = {ALL} if tables is None else {t.lower() for t in tables}
        return tags_for(self.owner.database_id, frozenset(names)), names

    def count_invalidations(self, tables: Iterable[str]) -> None:
        """Count one invalidation for each of ``tables`` (``ALL``: every table seen)."""
        for name in tables:
            if name == ALL:
                for counters in self.owner.counters.tables.values():
                    counters.invalidations += 1
            else:
                self.owner.counters.table(name).invalidations += 1


__all__ = [
    "SESSION_CHANGED",
    "TEXTUAL",
    "WRITTEN",
    "Writes",
    "session_changed",
    "written",
]
