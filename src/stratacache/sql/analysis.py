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
from typing import Literal

from .lexer import lex
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


def _bare(name: str) -> str:
    return name.rsplit(".", 1)[-1].strip('"`[]').lower()


_SESSION_CALL = re.compile(r'\b(?:pg_catalog\s*\.\s*)?"?set_config"?\s*\(', re.I)


def changes_session(sql: str) -> bool:
    """Whether a read calls a function that changes the connection's settings.

    PostgreSQL's ``SELECT set_config('search_path', …)`` (or a setting row-level security
    policies read) changes what the same SQL returns on that connection, as ``SET`` does.
    """
    lexed = lex(sql)
    return lexed is None or bool(_SESSION_CALL.search(lexed.body))


_PRIVATE_OBJECTS = re.compile(
    r"\bcreate\s+(?:or\s+replace\s+)?(?:global\s+|local\s+)?temp(?:orary)?\b"
    r"|\binto\s+(?:temp|temporary|unlogged\s+temp)\b|^\s*attach\b",
    re.I,
)


def creates_private_objects(sql: str) -> bool:
    """Whether ``sql`` creates a temporary table, view or sequence, or attaches a database.

    The same SQL may then read other rows on this connection than on any other (a
    temporary table shadows a table of the same name for that connection only).
    """
    lexed = lex(sql)
    return lexed is None or bool(_PRIVATE_OBJECTS.search(lexed.body))


def volatility(sql: str, deterministic: Iterable[str] = ()) -> str | None:
    """Why the read ``sql`` must not be cached (a volatile or unknown function, a lock), or None.

    Args:
        sql: the SQL text sent to the database (bound parameters are placeholders).
        deterministic: extra function names the application declares deterministic.
    """
    lexed = lex(sql)
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
    lexed = lex(sql)
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


__all__ = [
    "ALL",
    "DETERMINISTIC_FUNCTIONS",
    "OTHER",
    "SESSION",
    "VOLATILE_FUNCTIONS",
    "WRITES_ALL",
    "Analysis",
    "analyze_text",
    "changes_session",
    "creates_private_objects",
    "volatility",
]
