"""Cache keys and tags of SQL results: the database's identity, the SQL and its parameters.

Tags: a result depends on ``sqltable:<db>:<table>`` for each table it reads,
or, for a point read (one row by primary key), on ``sqlrows:<db>:<table>`` and
``sqlrow:<db>:<table>:<key>``. A write of known rows invalidates the table tag
and those rows' tags; any other write invalidates the table and rows tags, so a
write to row 7 leaves the cached read of row 8 in place. Every result also
carries ``sqldb:<db>``.

A key is ``sql:<result id>:<digest>`` (the identities: ``identity.py``), the digest covering the dialect and driver, the
SQL text sent to the database and its bound parameters encoded canonically
(the same bytes in every process, whatever the hash seed). A parameter of a type
with no canonical form makes the statement uncacheable rather than risk two
different queries sharing one key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from .analysis import ALL, Analysis


class Unkeyable(Exception):
    """A bound parameter has no canonical encoding (the statement is not cached)."""


def database_id(identity: str) -> str:
    """A short stable id (12 hex digits) for a database identity, used in keys and tags."""
    return hashlib.sha256(identity.encode()).hexdigest()[:12]


def table_tag(dbid: str, table: str) -> str:
    """The tag carried by every cached result that read ``table`` of database ``dbid``."""
    return f"sqltable:{dbid}:{table}"


def rows_tag(dbid: str, table: str) -> str:
    """The tag of every cached point read (one row by primary key) of ``table``."""
    return f"sqlrows:{dbid}:{table}"


def row_tag(dbid: str, table: str, key: object) -> str:
    """The tag of cached point reads of the row of ``table`` whose primary key is ``key``."""
    return f"sqlrow:{dbid}:{table}:{key!r}"


def database_tag(dbid: str) -> str:
    """The tag carried by every cached result of database ``dbid``."""
    return f"sqldb:{dbid}"


def tags_for(dbid: str, tables: frozenset[str]) -> list[str]:
    """Invalidation tags of a write to any rows of ``tables`` (``ALL``: the whole database)."""
    if ALL in tables:
        return [database_tag(dbid)]
    return sorted([table_tag(dbid, t) for t in tables] + [rows_tag(dbid, t) for t in tables])


def read_tags(dbid: str, analysis: Analysis, params: Mapping[str, Any]) -> list[str]:
    """The tags of a cached read: its row's tags if it is a point read, else its tables'."""
    if analysis.point is not None:
        key = params.get(analysis.point)
        if type(key) is analysis.key_type:
            (table,) = analysis.tables
            return [database_tag(dbid), rows_tag(dbid, table), row_tag(dbid, table, key)]
    return [database_tag(dbid), *sorted(table_tag(dbid, t) for t in analysis.tables)]


def write_tags(
    dbid: str, analysis: Analysis, param_sets: Sequence[Mapping[str, Any]] | None
) -> set[str]:
    """The tags a write invalidates: its rows' when every parameter set names one, else its tables'."""
    if ALL in analysis.tables:
        return {database_tag(dbid)}
    tags = {table_tag(dbid, t) for t in analysis.tables}
    if analysis.point is not None and param_sets:
        keys = [params.get(analysis.point) for params in param_sets]
        if all(type(key) is analysis.key_type for key in keys):
            (table,) = analysis.tables
            return tags | {row_tag(dbid, table, key) for key in keys}
    return tags | {rows_tag(dbid, t) for t in analysis.tables}


def option_mark(ttl: float | None, tags: Sequence[str]) -> tuple[Any, ...] | None:
    """What of a read's ``stratacache`` option makes it an entry of its own (None: nothing).

    Two call sites running one query with different options keep apart entries, each
    with its own lifetime and tags (else the first one stored would answer both, and the
    second's tag invalidation would not reach it).
    """
    if ttl is None and not tags:
        return None
    return (ttl, tuple(sorted(set(tags))))


def option_key(key: str, ttl: float | None, tags: Sequence[str]) -> str:
    """``key`` for a read whose option names a ttl or tags of its own (``option_mark``)."""
    options = repr(option_mark(ttl, tags)).encode("utf-8", "surrogatepass")
    return f"{key}:{hashlib.sha256(options).hexdigest()[:16]}"


def query_key(dbid: str, dialect: str, sql: str, params: Any) -> str:
    """The cache key of one execution; raises ``Unkeyable`` for parameters with no canonical form."""
    digest = hashlib.sha256(f"{dialect}\0{sql}\0".encode())
    flat = _flat(params)
    if flat is not None:
        digest.update(b"R" + flat.encode("utf-8", "surrogatepass"))
    else:
        _encode(params, digest.update)
    return f"sql:{dbid}:{digest.hexdigest()[:40]}"


#: types whose repr() is exact and names the type (1, "1", 1.0, True, Decimal("1") differ)
REPR_EXACT = frozenset(
    {int, str, float, bool, type(None), bytes, Decimal, uuid.UUID, dt.date, dt.timedelta}
)


def _flat(params: Any) -> str | None:
    """The common case fast: a dict or tuple of plain scalars as an exact repr (else None)."""
    if type(params) is dict:
        if all(type(v) in REPR_EXACT for v in params.values()):
            return "d" + repr(sorted(params.items()))
    elif type(params) in (tuple, list) and all(type(v) in REPR_EXACT for v in params):
        return type(params).__name__[0] + repr(params)
    return None


#: the letters of the temporal types (a datetime is a date: it is tested first)
_TEMPORAL = ((b"Dt", dt.datetime), (b"Da", dt.date), (b"Tm", dt.time), (b"Td", dt.timedelta))


def _encode(value: Any, out: Any) -> None:
    # Every value is written as a type letter then its text, so 1, "1", 1.0 and True differ.
    if value is None:
        out(b"N;")
    elif isinstance(value, bool):
        out(b"B1;" if value else b"B0;")
    elif isinstance(value, int):
        out(b"I%d;" % value)
    elif isinstance(value, float):
        out(b"F" + value.hex().encode() + b";")
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        out(b"S%d:" % len(data) + data)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        out(b"Y%d:" % len(data) + data)
    elif isinstance(value, Decimal):
        out(b"D" + str(value).encode() + b";")
    elif isinstance(value, (dt.datetime, dt.date, dt.time, dt.timedelta)):
        kind = next(k for k, cls in _TEMPORAL if isinstance(value, cls))  # time(10) is not 10 h
        out(kind + str(value).encode() + b";")
        offset = value.utcoffset() if isinstance(value, (dt.datetime, dt.time)) else None
        out(b"@" + str(offset).encode() + b";")
    elif isinstance(value, uuid.UUID):
        out(b"U" + value.hex.encode() + b";")
    elif isinstance(value, (list, tuple)):
        out((b"L%d[" if isinstance(value, list) else b"T%d[") % len(value))
        for item in value:
            _encode(item, out)
        out(b"]")
    elif isinstance(value, dict):
        out(b"M%d{" % len(value))
        for name in sorted(value, key=lambda k: (type(k).__name__, str(k))):
            _encode(name, out)
            _encode(value[name], out)
        out(b"}")
    elif type(value).__module__.startswith("psycopg") and hasattr(value, "obj"):
        out(b"J" + type(value).__name__.encode() + b":")  # psycopg's Json/Jsonb wrappers
        _encode(value.obj, out)
    else:
        raise Unkeyable(f"parameter of type {type(value).__qualname__} has no canonical form")


__all__ = [
    "Unkeyable",
    "database_id",
    "database_tag",
    "option_key",
    "option_mark",
    "query_key",
    "read_tags",
    "row_tag",
    "rows_tag",
    "table_tag",
    "tags_for",
    "write_tags",
]
