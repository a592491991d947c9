"""Hits served before SQLAlchemy's per-statement work: the Core fast path.

Most of a cached read's cost is SQLAlchemy's, not the cache's: looking up the
compiled form, building the execution context, creating a DBAPI cursor and the
result around it. So an engine with a ``QueryCache`` makes its connections
remember, per statement shape and bound values (SQLAlchemy's own cache key of
the statement), the cache key, tags and result metadata of its last execution
the cache served. The next execution of an equal statement asks the cache at
once and, on a hit, builds its ``Result`` from the stored rows with that
metadata, so type processing, ``.scalars()``, ``.mappings()``, ``.one()``
and column-object keys behave as on the ordinary path.

Everything the fast path does not know for sure goes the ordinary way, which
decides as before: a miss, a statement never served yet, an ``executemany``
(a list of parameter sets) or a parameter value whose equality is not exact, a
Session's ORM executions, ``before_execute``/``after_execute``
listeners, a transaction that has written, a connection whose session state
changed, an isolation level that refuses, streaming, ``schema_translate_map``.
A hit served here fires no cursor events: nothing reaches the database.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection
from sqlalchemy.engine.result import IteratorResult
from sqlalchemy.exc import ObjectNotExecutableError
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.selectable import CompoundSelect, Select
from sqlalchemy.util import await_only

from ..core.errors import ConfigError
from . import sa_private
from .keys import REPR_EXACT, option_mark
from .policy import parse_option
from .rows import Stored, well_formed

if TYPE_CHECKING:
    from .querycache import QueryCache

_SELECTS = (Select, CompoundSelect)
_MAX_SHAPES = 4096  # statement shapes remembered
_MAX_VALUES = 16384  # (shape, values) shortcuts remembered, all shapes together (about 10 MB)


@dataclasses.dataclass(frozen=True, slots=True)
class Shortcut:
    """What the ordinary path decided for one statement and its values: enough to serve a hit."""

    key: str
    tags: tuple[str, ...]
    tables: frozenset[str]
    width: int
    metadata: Any  # the statement's CursorResultMetaData (SQLAlchemy shares it between results)
    source: Any = None  # a weak reference to the statement the metadata was made for


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """The fast path's decision for one execution: serve ``shortcut``, or learn, or neither."""

    identity: tuple[Hashable, Hashable]
    shortcut: Shortcut | None  # None: the ordinary path executes
    tags: list[str]  # the tags to read the shortcut's key with
    learn: bool  # remember the ordinary result as a shortcut (none is known yet)


class CachedResult(IteratorResult[Any]):
    """A ``Result`` over rows the cache served (``rowcount``: the number of rows).

    Not a ``CursorResult`` (no cursor, no execution context); it answers the parts of
    that API a SELECT's result has: ``rowcount``, ``returns_rows``, ``is_insert``,
    ``supports_sane_rowcount()``, and ``fetchmany()`` without a size fetches one row,
    as a DBAPI cursor's default ``arraysize`` of 1 does.
    """

    rowcount: int
    returns_rows = True
    is_insert = False

    def fetchmany(self, size: int | None = None) -> Any:
        """The next ``size`` rows (one when not given, as ``cursor.arraysize`` defaults to)."""
        return super().fetchmany(1 if size is None else size)

    @staticmethod
    def supports_sane_rowcount() -> bool:
        """True: ``rowcount`` is the number of rows served."""
        return True

    @staticmethod
    def supports_sane_multi_rowcount() -> bool:
        """True, as ``supports_sane_rowcount``."""
        return True


def distill(parameters: Any) -> tuple[Mapping[str, Any], ...] | None:
    """Execution-time parameters as SQLAlchemy takes them: a tuple of parameter sets.

    ``None`` gives ``()``; one mapping gives a 1-tuple; a list or tuple of mappings
    (``executemany``) gives them all. None for anything else (not served here).
    """
    if parameters is None:
        return ()
    if isinstance(parameters, Mapping):
        return (parameters,)
    if type(parameters) in (list, tuple) and all(isinstance(p, Mapping) for p in parameters):
        return tuple(parameters)
    return None


def identify(
    elem: Any, distilled: Any, wanted: Any
) -> tuple[tuple[Hashable, Hashable], list[str]] | None:
    """``elem``'s identity (``shape``) and the extra tags of its ``stratacache`` option.

    The option is parsed once here for both; a malformed one is left to the ordinary
    path, which reports it.
    """
    try:
        ttl, extra = parse_option(wanted)
        identity = shape(elem, distilled, option_mark(ttl, extra))
    except (ConfigError, TypeError):  # TypeError: an unhashable value in the cache key
        return None
    return None if identity is None else (identity, extra)


def shape(elem: Any, distilled: Any, options: Hashable = None) -> tuple[Hashable, Hashable] | None:
    """The statement's identity for the fast path: SQLAlchemy's cache key and its exact values.

    ``distilled`` is the execution's parameter sets (``()``: none; one mapping:
    ``conn.execute(stmt, {"id": 5})`` on a statement built once with
    ``bindparam("id")``). The identity holds every bound value of the statement
    and every given parameter, by type and ``repr``, so two executions share it
    only when they send the database the same SQL and the same values.

    ``options`` is the option's ``keys.option_mark``: a ttl or tags of its own make
    another entry, so they make another identity too.

    None when the statement is not one the fast path serves (not a SELECT, an
    ``executemany``, a key that is not a string, a value whose equality is not exact).
    """
    if type(elem) not in _SELECTS:
        return None
    given: tuple[tuple[str, type, str], ...] = ()
    if distilled:
        if len(distilled) != 1:
            return None  # executemany: the ordinary path
        given_or_none = _exact_parameters(distilled[0])
        if given_or_none is None:
            return None
        given = given_or_none
    cache_key = sa_private.cache_key(elem)
    if cache_key is None:
        return None
    values: list[tuple[type, str]] = []
    for bind in cache_key[1]:
        value = bind.effective_value
        if type(value) not in REPR_EXACT:  # 1 == 1.0 == True, -0.0 == 0.0: compare by repr
            return None
        values.append((type(value), repr(value)))
    return (cache_key[0], (tuple(values), given, options))


def _exact_parameters(parameters: Mapping[str, Any]) -> tuple[tuple[str, type, str], ...] | None:
    """One parameter set as sorted ``(name, type, repr)`` triples (None: not exact, not served)."""
    items: list[tuple[str, type, str]] = []
    for name, value in parameters.items():
        if type(name) is not str or type(value) not in REPR_EXACT:
            return None
        items.append((name, type(value), repr(value)))
    items.sort()
    return tuple(items)


class FastPath:
    """The shortcuts of one ``QueryCache``: remembered on served executions, used on later ones."""

    def __init__(self, owner: QueryCache) -> None:
        self.owner = owner
        #: statement shape (SQLAlchemy's cache key) -> its values -> shortcut
        self.shortcuts: dict[Hashable, dict[Hashable, Shortcut]] = {}
        self.count = 0
        self.enabled = True

    def remember(self, identity: tuple[Hashable, Hashable], shortcut: Shortcut) -> None:
        """Keep ``shortcut`` for statements of ``identity`` (bounded: forgotten when full)."""
        if self.count >= _MAX_VALUES or len(self.shortcuts) >= _MAX_SHAPES:
            self.shortcuts.clear()
            self.count = 0
        by_values = self.shortcuts.setdefault(identity[0], {})
        if identity[1] not in by_values:
            self.count += 1
        by_values[identity[1]] = shortcut

    def lookup(self, identity: tuple[Hashable, Hashable]) -> Shortcut | None:
        """The shortcut remembered for ``identity``, if any."""
        by_values = self.shortcuts.get(identity[0])
        return None if by_values is None else by_values.get(identity[1])

    def options(self, conn: Connection, elem: Any, execution_options: Any) -> Mapping[str, Any]:
        """The execution options in force, merged as SQLAlchemy merges them."""
        merged: Mapping[str, Any] = elem.get_execution_options().merge_with(
            conn.get_execution_options(), execution_options
        )
        return merged

    def eligible(self, conn: Connection, options: Mapping[str, Any]) -> Any:
        """The ``stratacache`` option if this execution may use the fast path, else None."""
        if conn.closed or conn.invalidated:
            return None
        return self.wanted(conn.dispatch, options)

    def wanted(self, dispatch: Any, options: Mapping[str, Any]) -> Any:
        """The ``stratacache`` option if these options allow a shortcut (None: they do not)."""
        if not self.enabled:
            return None
        if dispatch.before_execute or dispatch.after_execute:
            return None  # their listeners may rewrite the statement: the ordinary path runs them
        owner = self.owner
        if sa_private.foreign_cursor_hooks(dispatch, owner.engine.dialect, owner.own_listeners):
            return None  # a listener may rewrite the SQL (a tenant's schema) or answer it
        wanted = options.get("stratacache")
        if wanted is None:
            wanted = self.owner.cache_all
        if (
            not wanted
            or options.get("stream_results")
            or options.get("yield_per")
            or options.get("schema_translate_map")
            or sa_private.orm_load(options)  # a Session's ORM execution loads objects
        ):
            return None
        return wanted

    def plan(
        self, conn: Connection, elem: Any, distilled: Any, execution_options: Any
    ) -> Plan | None:
        """What serving ``elem`` on ``conn`` takes (None: the ordinary path, nothing to learn)."""
        options = self.options(conn, elem, execution_options)
        wanted = self.eligible(conn, options)
        if wanted is None:
            return None
        found = identify(elem, distilled, wanted)
        if found is None:
            return None
        identity, extra = found
        shortcut = self.lookup(identity)
        if shortcut is not None and not self.may_read(conn, shortcut, options):
            return Plan(identity, None, [], learn=False)
        if shortcut is None:
            return Plan(identity, None, [], learn=True)
        return Plan(identity, shortcut, [*shortcut.tags, *extra], learn=False)

    def serve(
        self,
        conn: Connection,
        elem: Any,
        distilled: Any,
        execution_options: Any,
        ordinary: Callable[[], Any],
    ) -> Any:
        """The result of executing ``elem`` on ``conn``: from the cache if possible, else ``ordinary()``."""
        if type(elem) not in _SELECTS:
            return ordinary()  # a write, DDL, text(): nothing the fast path serves or learns
        if _take_missed(conn, elem):
            return ordinary()  # found missing just now: the ordinary path loads (and asks once)
        plan = self.plan(conn, elem, distilled, execution_options)
        if plan is None or plan.shortcut is None:
            result = ordinary()
            if plan is not None and plan.learn:
                self.learn(plan.identity, result)
            return result
        shortcut, owner = plan.shortcut, self.owner
        if conn.dialect.is_async:
            value = await_only(owner.cache.get(shortcut.key, tags=plan.tags))
        else:
            value = owner.cache.sync.get(shortcut.key, tags=plan.tags)
        if not fits(value, shortcut):
            return ordinary()  # a miss (or not one of ours): the ordinary path loads and stores
        sa_private.autobegin(conn)  # as executing would: later begin()/commit() behave alike
        return self.result_of(shortcut, value, elem)

    async def aserve(
        self, conn: Connection, elem: Any, parameters: Any, execution_options: Any
    ) -> Any:
        """``serve`` before an ``AsyncConnection`` enters its greenlet: the result, or None.

        None leaves everything to the ordinary path (which decides, learns and serves
        as ``serve`` does); a hit here costs no greenlet switch.
        """
        if type(elem) not in _SELECTS or getattr(conn, "stratacache_missed", None) is elem:
            return None  # not a SELECT; or found missing just now (``serve`` takes the mark)
        distilled = distill(parameters)
        if distilled is None:
            return None
        if conn.dispatch.begin and not conn.in_transaction():
            return None  # beginning runs "begin" listeners, which may run SQL: in the greenlet
        plan = self.plan(conn, elem, distilled, execution_options)
        if plan is None or plan.shortcut is None:
            return None
        value = await self.owner.cache.get(plan.shortcut.key, tags=plan.tags)
        if not fits(value, plan.shortcut):
            _mark_missed(conn, elem)
            return None
        sa_private.autobegin(conn)
        return self.result_of(plan.shortcut, value, elem)

    def may_read(self, conn: Connection, shortcut: Shortcut, options: Mapping[str, Any]) -> bool:
        """Whether ``conn``'s transaction and options let ``shortcut`` serve (else: ordinary path)."""
        owner = self.owner
        info = conn.info
        if owner.session_changed(info) or owner.written(info):
            return False  # the ordinary path decides: bypass, peek, or refuse
        return owner.refusal(shortcut.tables, options, conn.dialect) is None

    def learn(self, identity: tuple[Hashable, Hashable], result: Any) -> None:
        """Remember a result the ordinary path served from the cache as a shortcut."""
        context = getattr(result, "context", None)
        served = getattr(getattr(context, "cursor", None), "served", None)
        metadata = sa_private.result_metadata(result)
        if served is None or metadata is None:
            return
        key, tags, tables = served
        width = len(metadata.keys)
        invoked = getattr(context, "invoked_statement", None)
        source = None if invoked is None else weakref.ref(invoked)
        self.remember(identity, Shortcut(key, tuple(tags), tables, width, metadata, source))

    def result_of(self, shortcut: Shortcut, stored: Stored, elem: Any) -> CachedResult:
        """A ``Result`` over stored rows with the shortcut's metadata (counted as a hit).

        ``elem`` is the statement executed: one built anew (an equal statement with new
        column objects, say of a subquery) gets the metadata keyed by its own columns too,
        as SQLAlchemy keys a result served from its compiled cache.
        """
        metadata = shortcut.metadata
        if shortcut.source is None or shortcut.source() is not elem:
            metadata = sa_private.adapt_metadata(metadata, elem)  # a no-op for table columns
        rows = [tuple(row) for row in stored[1]]
        self.owner.counters.served(shortcut.tables, len(rows), True)
        result = CachedResult(metadata, iter(rows))
        result.rowcount = len(rows)
        return result


class Standalone:
    """SELECTs executed without a caller's connection: a hit needs none at all."""

    def __init__(self, fast: FastPath) -> None:
        self.fast = fast

    def _shortcut(self, elem: Any, parameters: Any) -> tuple[Shortcut, list[str]] | None:
        if not isinstance(elem, Executable):
            raise ObjectNotExecutableError(elem)  # as conn.execute("SELECT 1") raises
        owner = self.fast.owner
        distilled = distill(parameters)
        if distilled is None:
            return None
        engine = owner.engine
        options: Mapping[str, Any] = elem.get_execution_options().merge_with(
            engine.get_execution_options()
        )
        wanted = self.fast.wanted(engine.dispatch, options)
        if wanted is None:
            return None
        found = identify(elem, distilled, wanted)
        shortcut = None if found is None else self.fast.lookup(found[0])
        if found is None or shortcut is None:
            return None
        if owner.refusal(shortcut.tables, options, engine.dialect):
            return None
        return shortcut, [*shortcut.tags, *found[1]]

    def execute(self, elem: Any, parameters: Any = None) -> Any:
        """``elem``'s result: from the cache if the fast path knows it, else on a fresh connection."""
        found = self._shortcut(elem, parameters)
        if found is not None:
            shortcut, tags = found
            value = self.fast.owner.cache.sync.get(shortcut.key, tags=tags)
            if fits(value, shortcut):
                return self.fast.result_of(shortcut, value, elem)
        with self.fast.owner.engine.connect() as conn:
            if found is not None:
                _mark_missed(conn, elem)
            return conn.execute(elem, parameters).freeze()()

    async def aexecute(self, elem: Any, engine: Any, parameters: Any = None) -> Any:
        """``execute`` for an ``AsyncEngine`` (``engine``): a hit costs no greenlet switch."""
        found = self._shortcut(elem, parameters)
        if found is not None:
            shortcut, tags = found
            value = await self.fast.owner.cache.get(shortcut.key, tags=tags)
            if fits(value, shortcut):
                return self.fast.result_of(shortcut, value, elem)
        async with engine.connect() as conn:
            if found is not None:
                _mark_missed(conn.sync_connection, elem)
            return (await conn.execute(elem, parameters)).freeze()()


def _mark_missed(conn: Any, elem: Any) -> None:
    """Note on a query-cached connection that ``elem``'s cached result was just found missing.

    Its next execution there goes straight to the ordinary path, which asks the cache
    itself (inside read-through, single-flight): one miss is asked about, and counted by
    the memory tier's admission sketch, once more rather than three times more. A mark
    left unused costs at most one skipped fast-path ask, never a stale result.
    """
    if getattr(conn, "stratacache_owner", None) is not None:
        conn.stratacache_missed = elem


def _take_missed(conn: Any, elem: Any) -> bool:
    """Whether ``conn`` carries the mark for ``elem`` (the mark is removed either way)."""
    missed = getattr(conn, "stratacache_missed", None)
    if missed is None:
        return False
    conn.stratacache_missed = None
    return missed is elem


def fits(value: Any, shortcut: Shortcut) -> bool:
    """Whether a cached ``value`` is a stored result of the shortcut's width."""
    return well_formed(value) and all(len(row) == shortcut.width for row in value[1])


__all__ = [
    "CachedResult",
    "FastPath",
    "Plan",
    "Shortcut",
    "Standalone",
    "distill",
    "fits",
    "identify",
    "shape",
]
