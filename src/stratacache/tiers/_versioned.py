"""What a versioned read (``add``/``incr``/``touch``) makes of stored bytes it cannot open.

A plain read treats such bytes as a miss. A read-modify-write must not: "absent" would
let ``add`` or ``incr`` replace a live value that another process can read, as happens
mid-way through a key rotation, when a process that holds only the old signing key meets
a value signed with the new one. So a value sealed for another key (moved in storage) is
absent, as it is never this key's value, and any other undecodable value is an error.
"""

from __future__ import annotations

from ..core.codec import EntryCodec
from ..core.entry import Entry
from ..core.errors import DeserializationError, MovedValueError


def open_versioned(codec: EntryCodec, data: bytes, key: str) -> Entry | None:
    """The entry in ``data``; None when it was sealed for another key.

    Raises:
        DeserializationError: ``data`` does not open here (signed or encrypted with a key
            this process does not hold, or corrupt).
    """
    try:
        return codec.decode(data, key=key)
    except MovedValueError:
        return None
    except DeserializationError as exc:
        raise DeserializationError(
            f"the value under {key!r} cannot be read here: signed or encrypted with a key this"
            " process does not hold, or corrupt (during a key rotation, give every process the"
            " new key as its second key before any process signs with it)"
        ) from exc
