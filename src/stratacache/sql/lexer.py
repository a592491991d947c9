"""SQL text with its string constants and comments told apart from the SQL (no I/O).

Why: what a textual statement reads, writes or calls can only be read from its
SQL once its quotes and comments are known; a quote misread would hide a second
statement, a table or a clock read. Where the databases would read the text
differently, or a quote cannot be placed, ``lex`` gives up (None) and the
caller assumes the worst.
"""

from __future__ import annotations

import dataclasses
import re

#: string values a database reads as "the current time" when it casts them to a date or time
CLOCK_WORDS = frozenset({"now", "localtime", "utc", "today", "tomorrow", "yesterday"})

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
class Lexed:
    """SQL text with its string constants made ``''`` and its comments blank."""

    body: str
    #: a string constant a database reads as the current time when cast ('now', $$today$$ …)
    clock: bool


def lex(sql: str) -> Lexed | None:
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
    return Lexed(plain.body, plain.clock or escaping.clock)


def _lex_as(sql: str, backslash_escapes: bool) -> Lexed | None:
    out: list[str] = []
    clock = False
    position = 0
    while True:
        found = _SPECIAL.search(sql, position)
        if found is None:
            out.append(sql[position:])
            return Lexed("".join(out), clock)
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
            clock = clock or is_clock(sql[tag.end() : end])
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
            clock = clock or is_clock(content.replace("\\", "").replace("''", "'"))
            out.append("''")
            position = string.end()


def is_clock(content: str) -> bool:
    return content.strip().lower() in CLOCK_WORDS


__all__ = ["CLOCK_WORDS", "Lexed", "is_clock", "lex"]
