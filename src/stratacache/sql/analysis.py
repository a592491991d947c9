"""What a SQL statement reads or writes, and whether its result may be cached (no I/O).

A statement is a *read* (tables it reads), a *write* (tables it writes), a
*session* change (``SET``, ``PRAGMA x = …``), *transaction* control sent as
text (``COMMIT``, ``END``, ``BEGIN`` …: ``txcontrol.py``) or *other*. Tables are bare,
lower-cased names (``public.Orders`` → ``orders``): two schemas holding a table
of the same name share its invalidations, which costs a miss and never a
stale row. ``ALL`` stands for "every table of the database": a write whose
tables cannot be known (DDL, ``CALL``, an unrecognised ``text()``) invalidates
every cached result of that database.

Core statements are walked (joins, subqueries, CTEs, unions, ORM eager joins);
textual SQL is read conservatively: every identifier of a textual SELECT counts
as a table it may read. A read is refused (never cached) when its final SQL
calls a volatile function (``now()``, ``random()``, sequences …), a function not
known to be deterministic, or locks rows (``FOR UPDATE``/``FOR SHARE``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any, Literal

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

from .txcontrol import Action, classify, is_transaction_control

ALL = "*"
"""The table name standing for "every table of the database"."""

Kind = Literal["read", "write", "other", "session", "transaction"]


@dataclasses.dataclass(frozen=True, slots=True)
class Analysis:
    """One statement's effect: ``tables`` read (``kind == "read"``) or written.

    ``kind == "session"``: it changes the connection's state (``SET search_path``,
    ``SET ROLE``, an isolation level, a ``PRAGMA``), which may change what the same SQL
    returns on that connection.

    ``kind == "transaction"``: transaction control sent as SQL; ``action`` says what it
    does to the writes awaiting invalidation (see ``txcontrol.py``).

    ``refusal`` says why a read must not be cached (None: it may be).
    """

    kind: Kind
    tables: frozenset[str] = frozenset()
    refusal: str | None = None
    #: a point statement touches at most one row of its only table: the name of the bound
    #: parameter holding that row's primary key (its Python type in ``key_type``)
    point: str | None = None
    key_type: type | None = None
    action: Action | None = None


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


OTHER = Analysis("other")
SESSION = Analysis("session")
WRITES_ALL = Analysis("write", frozenset({ALL}))

VOLATILE_FUNCTIONS = _names(
    """now random setseed nextval currval lastval setval clock_timestamp statement_timestamp
    transaction_timestamp timeofday current_timestamp current_date current_time localtime
    localtimestamp sysdate getdate utc_timestamp unix_timestamp uuid gen_random_uuid uuid_generate_v1
    uuid_generate_v4 randomblob changes last_insert_rowid total_changes rand pg_sleep
    txid_current pg_current_xact_id pg_advisory_lock pg_try_advisory_lock pg_notify set_config
    pg_backend_pid inet_client_addr age"""
)
"""Functions whose result changes from call to call (or that act): never cached."""

DETERMINISTIC_FUNCTIONS = _names(
    """count sum avg min max lower upper coalesce nullif ifnull iif length char_length
    character_length octet_length bit_length abs round floor ceil ceiling trunc mod power pow sqrt
    exp ln log log10 sign trim ltrim rtrim btrim substr substring replace concat concat_ws left
    right lpad rpad position strpos instr reverse split_part cast greatest least date_trunc
    date_part extract to_char to_date to_number julianday date time json_extract json_object
    json_array json_build_object jsonb_build_object json_agg jsonb_agg array_agg string_agg
    group_concat array_length array_position array_to_string cardinality unnest row_number rank
    dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value bool_and
    bool_or every stddev stddev_pop stddev_samp variance var_pop var_samp typeof hex quote printf
    format md5 encode decode to_json to_jsonb jsonb_extract_path jsonb_extract_path_text
    json_extract_path json_extract_path_text ascii chr initcap regexp_replace regexp_matches
    regexp_like translate coalesce total"""
)
"""Functions known to depend on their arguments alone."""

# Words that may stand before "(" without being a function call.
_KEYWORDS = _names(
    """select from where and or not in exists any all some values as on using over filter
    within join inner left right full outer cross natural lateral union intersect except by
    group order having limit offset fetch with recursive case when then else end is null
    between like ilike escape distinct returning into set row array partition window range rows
    groups materialized insert update delete table only asc desc nulls first last true false
    default interval collate any_value tuple"""
)

# Words no table can be named without quotes (PostgreSQL reserves them outright, and so do
# the other databases): only these are left out of a textual read's dependencies. The
# rest of ``_KEYWORDS`` (``groups``, ``rows``, ``range``, ``filter``, ``first``,
# ``values``, ``set`` …) may name a table in some database, so a word is kept when in doubt.
_RESERVED = _names(
    """select from where and or not in is like as on join inner left right full outer cross
    natural union intersect except group order having limit offset fetch with case when then
    else end null distinct returning into table all default collate using lateral asc desc
    true false array cast both leading trailing"""
)

_CALL = re.compile(r'(?:"([^"]+)"|([^\W\d][\w$]*))\s*\(')
_BARE_VOLATILE = re.compile(
    r"\b(current_timestamp|current_date|current_time|localtimestamp|localtime|sysdate)\b"
    r"(?!\s*\()|\bfor\s+(?:no\s+key\s+)?update\b|\bfor\s+(?:key\s+)?share\b"
    r"|\block\s+in\s+share\s+mode\b|\btablesample\b",
    re.I,
)
_NOW_LITERAL = re.compile(r"'\s*(now|localtime|utc|today|tomorrow|yesterday)\s*'", re.I)
#: string values a database reads as "the current time" when it casts them to a date or time
CLOCK_WORDS = frozenset({"now", "localtime", "utc", "today", "tomorrow", "yesterday"})
_WORD = re.compile(r'"([^"]+)"|`([^`]+)`|\[([^\]]+)\]|([^\W\d][\w$]*)(?!\s*\(|[\w$])')
_MORE = re.compile(r";\s*\S")
_FIRST = re.compile(r"\s*\(*\s*([A-Za-z]+)")
# Where a statement starting with SELECT/WITH/VALUES/TABLE may write: a statement in
# parentheses (a data-modifying CTE), after one (WITH … AS (…) DELETE …) or an INTO
# (SELECT … INTO a new table, a file). Any other place a DML word may take is a name
# ("SELECT lock FROM doors") or FOR UPDATE.
_DML_WORD = re.compile(
    r"[()]\s*(?:insert|update|delete|merge|truncate|create|drop|alter|grant|revoke|copy|call|lock)\b"
    r"|\binto\b",
    re.I,
)
_QUOTED_NAMES = re.compile(r'"[^"]*"|`[^`]*`')
_NAME = r'(?:(?:"[^"]+"|[\w$]+)\.)*(?:"([^"]+)"|([\w$]+))'
_WRITE_TARGETS = [
    re.compile(r"^\s*insert\s+(?:or\s+\w+\s+)?into\s+" + _NAME, re.I),
    re.compile(r"^\s*replace\s+into\s+" + _NAME, re.I),
    re.compile(r"^\s*update\s+(?:or\s+\w+\s+)?(?:only\s+)?" + _NAME, re.I),
    re.compile(r"^\s*delete\s+from\s+(?:only\s+)?" + _NAME, re.I),
    re.compile(r"^\s*merge\s+into\s+" + _NAME, re.I),
]
_TRUNCATE = re.compile(r"^\s*truncate\s+(?:table\s+)?(?:only\s+)?(.*)$", re.I | re.S)
_NOT_DATA = _names("show")
_SESSION_WORDS = _names("set reset discard pragma")


# Where a quote, a comment or a "$" may start; everything else is plain SQL.
_SPECIAL = re.compile(r"""--|/\*|(?<![\w$])[eE]'|'|"|`|\$|\\|\[|\#""")
_QUOTING = re.compile(r"""['"`$\\]|--|/\*""")
_DOLLAR = re.compile(r"\$(?:[^\W\d]\w*)?\$")
_PARAM = re.compile(r"\$\d+")
_STANDARD_STRING = re.compile(r"'[^']*(?:''[^']*)*'")
_ESCAPE_STRING = re.compile(r"[eE]'(?:[^'\\]|\\.|'')*'", re.S)
_BACKSLASH_STRING = re.compile(r"'(?:[^'\\]|\\.|'')*'", re.S)
_QUOTED_NAME = {'"': re.compile(r'"[^"]*"'), "`": re.compile(r"`[^`]*`")}
#: a double-quoted string as MySQL reads it (without ANSI_QUOTES): backslash escapes
_BACKSLASH_NAME = re.compile(r'"(?:[^"\\]|\\.|"")*"', re.S)


@dataclasses.dataclass(frozen=True, slots=True)
class _Lexed:
    """SQL text with its string constants made ``''`` and its comments blank."""

    body: str
    #: a string constant a database reads as the current time when cast ('now', $$today$$ …)
    clock: bool


def _lex(sql: str) -> _Lexed | None:
    """Strip string constants and comments from ``sql``; None when unsure where one ends.

    Understands standard strings (``'it''s'``), escape strings (``E'it\\'s'``), dollar
    quotes (``$$…$$``, ``$tag$…$tag$``), quoted identifiers (``"…"``, ```…```: kept as
    they are, since they name tables), ``--`` and ``/* */`` comments. Text the databases
    read differently (a nested or MySQL-executable comment, a ``$`` that is neither a
    quote nor a parameter, an unbalanced quote) is not guessed at: the caller must
    assume the worst. A backslash is a plain character in a standard string for
    PostgreSQL and SQLite and an escape for MySQL: where both readings are valid SQL
    and differ (``'a\\'; UPDATE …; SELECT '``), the text is not read either.
    """
    if "\\" not in sql:
        return _lex_as(sql, backslash_escapes=False)
    plain = _lex_as(sql, backslash_escapes=False)
    escaping = _lex_as(sql, backslash_escapes=True)
    if plain is None or escaping is None:
        return plain  # no valid escaping reading ("ESCAPE '\\'"): MySQL refuses to run it
    if plain.body != escaping.body:
        return None
    return _Lexed(plain.body, plain.clock or escaping.clock)


def _lex_as(sql: str, backslash_escapes: bool) -> _Lexed | None:
    out: list[str] = []
    clock = False
    position = 0
    while True:
        found = _SPECIAL.search(sql, position)
        if found is None:
            out.append(sql[position:])
            return _Lexed("".join(out), clock)
        start = found.start()
        out.append(sql[position:start])
        token = found.group(0)
        if token == "--":
            end = sql.find("\n", start)
            end = len(sql) if end < 0 else end
            comment = sql[start + 2 : end]
            if "\r" in comment.rstrip("\r"):
                return None  # PostgreSQL ends the comment at "\r", others at "\n"
            if comment[:1].strip() and any(c in comment for c in ";'\"`$\\"):
                return None  # "--x" is no comment in MySQL
            out.append(" ")
            position = end
        elif token == "/*":
            end = sql.find("*/", start + 2)
            if end < 0 or "/*" in sql[start + 2 : end] or sql.startswith("!", start + 2):
                return None  # unterminated, nested (PostgreSQL) or executable (MySQL)
            out.append(" ")
            position = end + 2
        elif token == '"' and backslash_escapes:
            name = _BACKSLASH_NAME.match(sql, start)
            if name is None:
                return None
            out.append(name.group(0))  # kept as written: ends where the other reading's does?
            position = name.end()
        elif token in ('"', "`"):
            name = _QUOTED_NAME[token].match(sql, start)
            if name is None or sql.startswith(token, name.end()):
                return None  # unbalanced, or a doubled quote inside a name
            out.append(name.group(0))
            position = name.end()
        elif token in ("#", "["):
            # "#" starts a comment in MySQL and is an operator in PostgreSQL ("#>>");
            # "[…]" names a table in SQLite and subscripts in PostgreSQL (data['key']).
            # Either reading is safe when the quotes inside are balanced on their own.
            closing = "\n" if token == "#" else "]"
            end = sql.find(closing, start + 1)
            end = len(sql) if end < 0 else end
            inside = sql[start + 1 : end]
            if not _QUOTING.search(inside):
                out.append(token)
                position = start + 1
                continue
            if token == "[" and ("--" in inside or "/*" in inside or '"' in inside):
                return None  # the comment or quote would run past "]" in PostgreSQL
            if "#" in inside or "[" in inside:
                return None  # read one level deep only
            part = _lex_as(inside, backslash_escapes)
            if part is None:
                return None
            clock = clock or part.clock
            out.append(token + part.body)
            if token == "[":
                out.append(f'] "{inside}"')  # the name SQLite reads
                end += 1
            position = end
        elif token == "\\":
            out.append("\\")  # no database reads it outside a string: an error, not a guess
            position = start + 1
        elif token == "$":
            if start > 0 and (sql[start - 1].isalnum() or sql[start - 1] in "_$"):
                out.append("$")  # inside a name (PostgreSQL allows "$" after the first letter)
                position = start + 1
                continue
            param = _PARAM.match(sql, start)
            if param is not None:
                out.append(param.group(0))
                position = param.end()
                continue
            tag = _DOLLAR.match(sql, start)
            if tag is None:
                return None
            end = sql.find(tag.group(0), tag.end())
            if end < 0:
                return None
            clock = clock or _is_clock(sql[tag.end() : end])
            out.append("''")
            position = end + len(tag.group(0))
        else:
            escape = token != "'"
            if escape:
                string = _ESCAPE_STRING.match(sql, start)
            else:
                string = (_BACKSLASH_STRING if backslash_escapes else _STANDARD_STRING).match(
                    sql, start
                )
            if string is None:
                return None
            text = string.group(0)
            content = text[2:-1] if escape else text[1:-1]
            clock = clock or _is_clock(content.replace("\\", "").replace("''", "'"))
            out.append("''")
            position = string.end()


def _is_clock(content: str) -> bool:
    return content.strip().lower() in CLOCK_WORDS


def _bare(name: str) -> str:
    return name.rsplit(".", 1)[-1].strip('"`[]').lower()


_SESSION_CALL = re.compile(r'\b(?:pg_catalog\s*\.\s*)?"?set_config"?\s*\(', re.I)


def changes_session(sql: str) -> bool:
    """Whether a read calls a function that changes the connection's settings.

    PostgreSQL's ``SELECT set_config('search_path', …)`` (or a setting row-level security
    policies read) changes what the same SQL returns on that connection, as ``SET`` does.
    """
    lexed = _lex(sql)
    return lexed is None or bool(_SESSION_CALL.search(lexed.body))


def volatility(sql: str, deterministic: Iterable[str] = ()) -> str | None:
    """Why the read ``sql`` must not be cached (a volatile or unknown function, a lock), or None.

    Args:
        sql: the SQL text sent to the database (bound parameters are placeholders).
        deterministic: extra function names the application declares deterministic.
    """
    lexed = _lex(sql)
    if lexed is None:
        return "SQL text whose quotes or comments cannot be told apart"
    if lexed.clock or _NOW_LITERAL.search(sql):
        return "reads the clock ('now')"
    body = lexed.body
    found = _BARE_VOLATILE.search(body)
    if found:
        return f"non-deterministic or locking SQL ({found.group(0).upper()})"
    allowed = DETERMINISTIC_FUNCTIONS.union(deterministic)
    for match in _CALL.finditer(body):
        quoted, plain = match.groups()
        name = (quoted or plain).lower()
        if plain is not None and name in _KEYWORDS:
            continue
        if name in VOLATILE_FUNCTIONS:
            return f"volatile function {name}()"
        if name not in allowed:
            return f"function {name}() is not known to be deterministic"
    return None


def analyze_text(sql: str) -> Analysis:
    """Classify textual SQL conservatively (used for ``text()`` and driver-level SQL)."""
    lexed = _lex(sql)
    if lexed is None or _MORE.search(lexed.body):
        # "UPDATE …; COMMIT", a DO block, quotes this reading cannot place: one statement's
        # words cannot tell what it does, so it is never cached and invalidates everything
        return Analysis("transaction", action="unknown")
    body = lexed.body
    first = _FIRST.match(body)
    word = first.group(1).lower() if first else ""
    if word in ("select", "with", "values", "table"):
        if _DML_WORD.search(_QUOTED_NAMES.sub(" n ", body)):
            return _text_write(body) if word == "with" else WRITES_ALL
        return Analysis("read", _identifiers(body))
    if word == "explain":
        return OTHER if not re.search(r"\banalyze\b", body, re.I) else WRITES_ALL
    if word in _SESSION_WORDS:
        if word == "pragma" and "=" not in body:
            return OTHER  # reading a pragma changes nothing
        return SESSION
    if is_transaction_control(word, body):
        return Analysis("transaction", action=classify(body.replace("''", " ")))
    if word in _NOT_DATA:
        return OTHER
    return _text_write(body)


def _identifiers(body: str) -> frozenset[str]:
    names = set()
    for match in _WORD.finditer(body):
        quoted = match.group(1) or match.group(2) or match.group(3)
        if quoted is not None:
            names.add(quoted.lower())
        elif match.group(4).lower() not in _RESERVED:
            names.add(match.group(4).lower())
    return frozenset(names)


def _text_write(body: str) -> Analysis:
    if re.match(r"\s*with\b", body, re.I):
        return WRITES_ALL  # a data-modifying CTE: its targets are not worth guessing
    for pattern in _WRITE_TARGETS:
        match = pattern.match(body)
        if match:
            return Analysis("write", frozenset({(match.group(1) or match.group(2)).lower()}))
    truncate = _TRUNCATE.match(body)
    if truncate and re.search(r"\bcascade\b", truncate.group(1), re.I):
        return WRITES_ALL  # it also empties every table referring to these: not known here
    if truncate:
        names = re.split(
            r"\s*,\s*",
            re.split(r"\b(?:restart|continue|cascade|restrict)\b", truncate.group(1), flags=re.I)[
                0
            ].strip(),
        )
        if all(names):
            return Analysis("write", frozenset(_bare(n) for n in names))
    return WRITES_ALL


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


__all__ = [
    "ALL",
    "CLOCK_WORDS",
    "DETERMINISTIC_FUNCTIONS",
    "SESSION",
    "VOLATILE_FUNCTIONS",
    "Analysis",
    "analyze_compiled",
    "analyze_text",
    "changes_session",
    "declared_cascades",
    "metadata_of",
    "tables_of",
    "volatility",
]
