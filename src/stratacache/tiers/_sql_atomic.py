"""Atomic read-modify-write on an ``SQLTier``: a versioned read and a compare-and-set UPSERT.

The token of a versioned read is the stored bytes (None when there is no row or only
a tombstone). The compare-and-set is one ``INSERT … ON CONFLICT DO UPDATE … WHERE``
statement whose condition is that the row still holds the token, so SQLite and
PostgreSQL (which re-checks the condition on the newest row version) both apply it
atomically. The row gets a freshly bumped sequence number: tags invalidated before
are older than it, and a load leased before it can no longer overwrite it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from ..core.entry import Entry

if TYPE_CHECKING:
    from .sql import SQLTier


def read_versioned(tier: SQLTier, key: str) -> tuple[Entry | None, object]:
    """The live entry under ``key`` (expiry and tags checked) and the stored bytes."""
    e = tier.entries
    now = tier._now()
    params = {"keys": [key], "now": now, "ns": tier._context.namespace}
    with tier._connect("read_versioned") as conn:
        raw = conn.execute(sa.select(e.c.value).where(e.c.key == key)).scalar()
        if raw is None:
            return None, None
        rows = conn.execute(tier._get_query, params).all()
    entry = None
    for _, data in rows:
        if bytes(data) == bytes(raw):  # the row did not change between the two reads
            entry = tier._decode(data, now)
    return entry, bytes(raw)


def compare_and_set(tier: SQLTier, key: str, token: object, entry: Entry) -> bool:
    """Store ``entry`` iff the row still holds ``token`` (None: no row, or a tombstone)."""
    row = tier._row(key, entry)
    e = tier.entries
    with tier._begin("compare_and_set") as conn:
        if row is None:  # already past its end: replacing the old value means removing it
            row = {"key": key, "value": None, "expires_at": tier._now(), "tags": ""}
        row["seq"] = tier._bump(conn)
        stmt = tier._insert(e).values(**row)
        same = (
            e.c.value.is_(None) if token is None else e.c.value == sa.literal(token, e.c.value.type)
        )
        cols = ("value", "expires_at", "tags", "seq")
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"], set_={c: stmt.excluded[c] for c in cols}, where=same
        ).returning(e.c.key)
        return conn.execute(stmt).first() is not None
