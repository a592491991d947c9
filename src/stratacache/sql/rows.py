"""Results as plain rows, and a DBAPI cursor that replays them.

A cached result is ``[description, rows]``: the column names and driver type
codes, then the raw rows the driver returned, before SQLAlchemy's result
processing. Replaying them through ``StoredCursor`` lets SQLAlchemy build the
``Result`` exactly as for a live cursor, so ``.all()``, ``.scalars()``,
``.mappings()``, ``.one()`` and ORM loading (objects attached to the caller's
session) behave the same on a hit and a miss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Stored = list[Any]  # [[[name, type_code], ...], [row, ...]]


def capture(cursor: Any) -> Stored | None:
    """The rows of an executed DBAPI cursor as a storable value (None: it returned no rows)."""
    description = cursor.description
    if description is None:
        return None
    columns = [[column[0], _type_code(column[1])] for column in description]
    rows = [tuple(row) for row in cursor.fetchall()]
    cursor.close()
    return [columns, rows]


def _type_code(code: Any) -> Any:
    return code if code is None or isinstance(code, (int, str)) else None


class StoredCursor:
    """A read-only DBAPI cursor over stored rows (what SQLAlchemy reads a result from)."""

    arraysize = 1
    lastrowid = None

    def __init__(self, stored: Stored, from_cache: bool = False, served: Any = None) -> None:
        columns, rows = stored
        #: True when the rows came from the cache (False: from the database, just now)
        self.from_cache = from_cache
        #: (cache key, tags, tables) of the result, for the fast path to serve it next time
        self.served = served
        self.description: Sequence[tuple[Any, ...]] = [
            (name, code, None, None, None, None, None) for name, code in columns
        ]
        self._rows: list[tuple[Any, ...]] = [tuple(row) for row in rows]
        self._at = 0
        self.rowcount = len(self._rows)

    def fetchone(self) -> tuple[Any, ...] | None:
        """The next row, or None."""
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        """Up to ``size`` (default ``arraysize``) next rows."""
        end = self._at + (self.arraysize if size is None else size)
        batch = self._rows[self._at : end]
        self._at += len(batch)
        return batch

    def fetchall(self) -> list[tuple[Any, ...]]:
        """Every remaining row."""
        batch = self._rows[self._at :]
        self._at = len(self._rows)
        return batch

    def close(self) -> None:
        """Nothing to release."""

    async def _async_soft_close(self) -> None:
        """What SQLAlchemy's asyncio layer calls on a buffered cursor: nothing to do."""

    def nextset(self) -> None:
        """A stored result has one result set."""
        return None


def well_formed(value: Any) -> bool:
    """Whether ``value`` has the shape of a stored result (else it is not one of ours)."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], list)
        and isinstance(value[1], list)
    )


def from_cache(context: Any) -> bool:
    """Whether the statement of an execution context was answered by the cache, not the database.

    SQLAlchemy still fires ``before_cursor_execute``/``after_cursor_execute`` for a cached
    statement; a listener counting database round trips skips those for which this is True.
    """
    return bool(getattr(getattr(context, "cursor", None), "from_cache", False))


__all__ = ["Stored", "StoredCursor", "capture", "from_cache", "well_formed"]
