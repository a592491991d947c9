"""Transaction control sent as SQL text (``COMMIT``, ``END``, ``ROLLBACK``, ``BEGIN`` …), classified.

SQLAlchemy commits and rolls back through the DBAPI, which the query cache
sees; a ``COMMIT`` sent as text (``exec_driver_sql("COMMIT")``, ``text("END")``)
is a statement like any other, and only its words tell what it did. Each form
is mapped to what it means for the writes awaiting invalidation:

* ``COMMIT``/``END`` [``AND CHAIN``]: committed, invalidate them;
* ``ROLLBACK``/``ABORT`` [``AND CHAIN``]: undone, drop them;
* ``ROLLBACK TO [SAVEPOINT] x``: some undone, unknown which, keep them all;
* ``SAVEPOINT x``: may begin a transaction (SQLite), a textual one;
* ``RELEASE [SAVEPOINT] x``: may commit (SQLite's outermost), invalidate and keep;
* ``BEGIN``/``START TRANSACTION``: may commit the open one (MySQL), invalidate and keep;
* anything else (``COMMIT PREPARED``, ``XA …``): not understood, the connection
  stops caching and the whole database is invalidated.

``BEGIN``, ``START TRANSACTION``, ``SAVEPOINT``, a chained commit or rollback
and anything not understood open a *textual transaction* on the connection; its
reads are not cached until a plain ``COMMIT`` or ``ROLLBACK`` (or SQLAlchemy's
own commit or rollback) ends it (see ``writes.py``).
"""

from __future__ import annotations

import re
from typing import Literal

Action = Literal[
    "begin", "begin-session", "commit", "commit-chain", "rollback", "rollback-chain",
    "savepoint", "release", "keep", "unknown",
]  # fmt: skip

WORDS = frozenset(
    ["begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release", "xa"]
)
"""First words of transaction control (and ``PREPARE TRANSACTION``)."""

_END = r"\s*;?\s*"
_NAME = r'(?:"[^"]+"|`[^`]+`|[\w$]+)'
_CHAIN = r"(?:\s+(?:work|transaction))?(\s+and\s+(no\s+)?chain)?(?:\s+(?:no\s+)?release)?"
_COMMIT = re.compile(r"\s*(?:commit|end)" + _CHAIN + _END, re.I)
_ROLLBACK = re.compile(r"\s*(?:rollback|abort)" + _CHAIN + _END, re.I)
_ROLLBACK_TO = re.compile(
    r"\s*rollback(?:\s+(?:work|transaction))?\s+to\s+(?:savepoint\s+)?" + _NAME + _END, re.I
)
_SAVEPOINT = re.compile(r"\s*savepoint\s+" + _NAME + _END, re.I)
_RELEASE = re.compile(r"\s*release\s+(?:savepoint\s+)?" + _NAME + _END, re.I)
_BEGIN = re.compile(r"\s*(?:begin|start\s+transaction)\b(.*?)" + _END, re.I | re.S)
_BEGIN_MODES = re.compile(
    r"(?:\s+|,|work|transaction|deferred|immediate|exclusive|read|only|write|not|deferrable"
    r"|with|consistent|snapshot)*",
    re.I,
)


def is_transaction_control(first_word: str, body: str) -> bool:
    """Whether SQL starting with ``first_word`` (lower case) is transaction control."""
    if first_word == "prepare":
        return re.match(r"\s*prepare\s+transaction\b", body, re.I) is not None
    return first_word in WORDS


def classify(body: str) -> Action:
    """What transaction control SQL (strings and comments blanked) does; ``unknown`` if unsure."""
    ending: tuple[tuple[re.Pattern[str], Action, Action], ...] = (
        (_COMMIT, "commit", "commit-chain"),
        (_ROLLBACK, "rollback", "rollback-chain"),
    )
    for pattern, plain, chained in ending:
        match = pattern.fullmatch(body)
        if match:
            return chained if match.group(1) and not match.group(2) else plain
    if _ROLLBACK_TO.fullmatch(body):
        return "keep"
    if _SAVEPOINT.fullmatch(body):
        return "savepoint"
    if _RELEASE.fullmatch(body):
        return "release"
    begin = _BEGIN.fullmatch(body)
    if begin:
        modes = begin.group(1)
        if re.search(r"\bisolation\b", modes, re.I):
            return "begin-session"  # its level holds for the transaction: as a SET would
        if _BEGIN_MODES.fullmatch(modes):
            return "begin"
    return "unknown"


__all__ = ["WORDS", "Action", "classify", "is_transaction_control"]
