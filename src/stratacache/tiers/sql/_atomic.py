"""The SQL tier's atomic read-modify-write, used by ``add``/``incr``/``touch``.

A versioned read returns the live entry and the stored bytes as the token; the
compare-and-set is one conditional UPSERT (``… ON CONFLICT DO UPDATE … WHERE value
IS [NOT DISTINCT FROM] token``), which SQLite and PostgreSQL both apply atomically,
with a freshly bumped sequence number so that older leases and tags cannot outlive it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...core.entry import Entry
from ...core.errors import TierError
from .._versioned import open_versioned
from ._common import make_row

if TYPE_CHECKING:
    from . import SQLTier

#: versioned reads retried while writers keep moving the row
_VERSIONED_READ_TRIES = 16


def compare_and_set(tier: SQLTier, key: str, token: object, entry: Entry) -> bool:
    """Store ``entry`` iff ``key`` still holds the bytes ``token`` names; one statement."""
    now = float(tier.context.clock.time())
    row = make_row(tier.context.codec, key, entry, now, tier.ttl)
    raw = token if isinstance(token, bytes) else None
    stored = bool(tier.store.compare_and_set(key, raw, row, now))
    if tier.bounds.wrote(1):  # bounded like any other write
        tier.bounds.enforce()
    return stored


def read_versioned(tier: SQLTier, key: str) -> tuple[Entry | None, bytes | None]:
    """Two reads (raw row, then live row) that agree; retried while a writer moves the row.

    Raises:
        DeserializationError: a live value this process cannot open (see ``_versioned``).
    """
    store: Any = tier.store
    for _ in range(_VERSIONED_READ_TRIES):
        raw = store.raw_value(key)
        if raw is None:
            return None, None
        now = float(tier.context.clock.time())
        live = store.read_one(key, now)
        if live is None:
            if store.raw_value(key) == raw:
                return None, raw  # expired or outdated by a tag: absent, but versioned
            continue
        if bytes(live) == raw:
            entry = open_versioned(tier.context.codec, raw, key)  # unreadable: raises
            if entry is None:
                tier.decode_errors += 1
            return (None if entry is None or entry.is_gone(now) else entry), raw
    changing = RuntimeError(f"the row of {key!r} kept changing during a versioned read")
    raise TierError(tier.name, "read_versioned", changing)
