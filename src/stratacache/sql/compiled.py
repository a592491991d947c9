"""What a compiled Core/ORM statement reads or writes, from its expression tree (no I/O).

Why: a compiled statement names its tables, keys and cascades exactly; only
where it embeds SQL text (``text()``, ``literal_column()``, prefixes) is its SQL
read as text (``analysis.analyze_text``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.dml import Insert, UpdateBase
from sqlalchemy.sql.elements import (
    BinaryExpression,
    BindParameter,
    BooleanClauseList,
    ColumnClause,
    TextClause,
)
from sqlalchemy.sql.selectable import FromClause, Select, SelectBase, TableClause
from sqlalchemy.sql.sqltypes import Integer

from .analysis import ALL, WRITES_ALL, Analysis, analyze_text


def tables_of(element: Any) -> set[str]:
    """Bare lower-cased names of every table an expression mentions (subqueries included)."""
    return {
        el.name.lower()
        for el in visitors.iterate(element)
        if isinstance(el, TableClause) and getattr(el, "name", None)
    }


def analyze_compiled(compiled: Any, sql: str) -> Analysis:
    """Classify a compiled Core/ORM statement; falls back to text rules where SQL is textual."""
    statement = compiled.statement
    if getattr(compiled, "is_ddl", False):  # CREATE/ALTER/DROP through a DDL compiler
        return WRITES_ALL
    if statement is None:
        return analyze_text(sql)
    if isinstance(statement, TextClause):
        return analyze_text(sql)
    elements = [statement]
    state = getattr(compiled, "compile_state", None)
    final = getattr(state, "statement", None)
    if final is not None and final is not statement:
        elements.append(final)  # the ORM's own statement carries eager joins
    writes: set[str] = set()
    reads: set[str] = set()
    textual = False
    for element in elements:
        for el in visitors.iterate(element):
            if isinstance(el, UpdateBase):
                target = getattr(el, "table", None)
                writes |= tables_of(target) | _cascades(target) if target is not None else {ALL}
            elif isinstance(el, TableClause) and getattr(el, "name", None):
                reads.add(el.name.lower())
            elif isinstance(el, TextClause) or (isinstance(el, ColumnClause) and el.is_literal):
                textual = True  # text(), literal_column(): SQL the expression tree cannot see
            elif getattr(el, "_prefixes", None) or getattr(el, "_suffixes", None):
                textual = True  # prefix_with()/suffix_with() text
    if writes or compiled.isinsert or compiled.isupdate or compiled.isdelete:
        point = _write_point(statement, compiled, writes, sql)
        return Analysis("write", frozenset(writes or {ALL}), None, *point)
    if textual:
        text = analyze_text(sql)
        if text.kind != "read":
            return text
        return Analysis("read", frozenset(reads | text.tables))
    final = elements[-1]
    point = (None, None)
    if len(reads) == 1 and isinstance(final, Select):
        froms = final.get_final_froms()
        if len(froms) == 1 and isinstance(froms[0], TableClause) and _only(final, froms[0]):
            point = _key_equality(froms[0], final.whereclause, compiled)
    return Analysis("read", frozenset(reads), None, *point)


def _only(select: Select[Any], table: TableClause) -> bool:
    """Whether ``select`` reads ``table`` and nothing else: no subquery, alias, join, CTE or
    function (a correlated count or a function may read other rows than the WHERE's)."""
    for el in visitors.iterate(select):
        if el is not select and el is not table and isinstance(el, (SelectBase, FromClause)):
            return False
    return True


def _primary_key(table: Any) -> tuple[Any, type] | None:
    """The single primary-key column of ``table`` if the database compares it as Python does.

    Only plain integer columns: ``5 == 5`` in SQL exactly when in Python (for ``int``
    values). Strings are not (a case-insensitive or nondeterministic collation,
    ``citext``, ``CHAR(n)`` padding, MySQL's default collations), nor are types a
    ``TypeDecorator`` converts on the way in.
    """
    columns = list(getattr(table, "primary_key", None) or ())
    if len(columns) != 1 or not isinstance(columns[0].type, Integer):
        return None
    return columns[0], int


def _key_equality(table: Any, where: Any, compiled: Any) -> tuple[str | None, type | None]:
    """The bound parameter of a ``pk = :p`` conjunct of ``where`` (narrows to one row), or Nones."""
    key = _primary_key(table)
    if key is None or where is None:
        return None, None
    column, python_type = key
    terms = where.clauses if isinstance(where, BooleanClauseList) else [where]
    if isinstance(where, BooleanClauseList) and where.operator is not operators.and_:
        return None, None
    for term in terms:
        if not isinstance(term, BinaryExpression) or term.operator is not operators.eq:
            continue
        for side, other in ((term.left, term.right), (term.right, term.left)):
            same = getattr(getattr(side, "table", None), "name", None) == table.name
            if (
                same
                and getattr(side, "name", None) == column.name
                and isinstance(other, BindParameter)
                and not other.expanding
            ):
                name = compiled.bind_names.get(other)
                if name is not None:
                    return name, python_type
    return None, None


def _cascades(target: Any) -> set[str]:
    """Tables the database itself changes when ``target`` is written (ON DELETE/UPDATE actions).

    Found from the foreign keys declared in ``target``'s SQLAlchemy ``MetaData``; actions
    only the database knows of (undeclared keys, triggers) are the application's to state.
    """
    metadata = getattr(target, "metadata", None)
    if metadata is None:
        return set()
    found: set[str] = set()
    pending = [target]
    try:
        while pending:
            current = pending.pop()
            for table in list(metadata.tables.values()):
                if table.name.lower() in found:
                    continue
                for fk in table.foreign_keys:
                    if (fk.ondelete or fk.onupdate) and fk.references(current):
                        found.add(table.name.lower())
                        pending.append(table)
                        break
    except Exception:  # a declared key naming a table not in the MetaData: cascades unknown
        return {ALL}
    return found


def metadata_of(compiled: Any) -> set[Any]:
    """The SQLAlchemy ``MetaData`` collections holding the tables a compiled statement names."""
    found = set()
    for element in (
        compiled.statement,
        getattr(getattr(compiled, "compile_state", None), "statement", None),
    ):
        if element is None:
            continue
        for el in visitors.iterate(element):
            metadata = getattr(el, "metadata", None) if isinstance(el, TableClause) else None
            if metadata is not None:
                found.add(metadata)
    return found


def declared_cascades(tables: frozenset[str], metadatas: Iterable[Any]) -> frozenset[str]:
    """Tables the database changes when ``tables`` (bare names) are written, by the ON
    DELETE/UPDATE actions of foreign keys declared in ``metadatas``: what a text write
    changes besides its target, as ``_cascades`` finds for a Core write. ``ALL`` when a
    declared key cannot be resolved."""
    found: set[str] = set()
    for metadata in metadatas:
        for table in list(metadata.tables.values()):
            if table.name.lower() in tables:
                found |= _cascades(table)
    return frozenset(found - tables)


def _write_point(
    statement: Any, compiled: Any, writes: set[str], sql: str
) -> tuple[str | None, type | None]:
    """For a DML touching one row per parameter set: the parameter naming that row's key."""
    table = getattr(statement, "table", None)
    if len(writes) != 1 or not isinstance(statement, UpdateBase) or table is None:
        return None, None
    if isinstance(statement, Insert):
        key = _primary_key(table)
        upsert = getattr(statement, "_post_values_clause", None) is not None
        if key is None or upsert or statement._prefixes or statement.select is not None:
            return None, None  # ON CONFLICT, OR REPLACE, INSERT … SELECT: rows not known
        return key[0].key, key[1]
    key = _primary_key(table)
    if key is None or _sets_column(sql, key[0].name):
        return None, None  # a key that changes moves the row: its new key is not known here
    return _key_equality(table, getattr(statement, "whereclause", None), compiled)


def _sets_column(sql: str, column: str) -> bool:
    """Whether an UPDATE's SET clause may assign ``column`` (conservative: unsure means yes)."""
    match = re.search(r"\bset\b(.*?)(?:\bwhere\b|$)", sql, re.I | re.S)
    if match is None:
        return True
    pattern = r'(?:^|,)\s*(?:[\w$"]+\.)?"?' + re.escape(column) + r'"?\s*='
    return re.search(pattern, match.group(1), re.I) is not None


__all__ = ["analyze_compiled", "declared_cascades", "metadata_of", "tables_of"]
