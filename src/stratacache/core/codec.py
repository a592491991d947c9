"""``EntryCodec``: an ``Entry`` to bytes and back, for tiers that store bytes.

Layout: a msgpack array ``[FORMAT, created, expires, refresh_after,
stale_until, cost, tags, tag_versions, value_bytes]`` where ``value_bytes`` is
the serializer's output, then the envelopes (compression, signing,
encryption) applied in order. Decoding anything else raises
``DeserializationError``, which tiers turn into a miss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from .entry import Entry
from .envelope import Envelope
from .errors import DeserializationError
from .serializer import MsgpackSerializer, Serializer

FORMAT = 1


class EntryCodec:
    """Encode/decode entries with one serializer and a chain of envelopes."""

    def __init__(
        self, serializer: Serializer | None = None, envelopes: Sequence[Envelope] = ()
    ) -> None:
        self.serializer: Serializer = serializer or MsgpackSerializer()
        self.envelopes = tuple(envelopes)

    def dumps_value(self, value: Any) -> bytes:
        """Serialize a bare value (raises ``SerializationError`` naming a bad type)."""
        return self.serializer.dumps(value)

    def encode(self, entry: Entry, value_bytes: bytes | None = None) -> bytes:
        """The stored form of ``entry``; pass ``value_bytes`` when already serialized."""
        if value_bytes is None:
            value_bytes = entry.payload
        if value_bytes is None:
            value_bytes = self.serializer.dumps(entry.value)
        data: bytes = msgpack.packb(
            [
                FORMAT,
                entry.created,
                entry.expires,
                entry.refresh_after,
                entry.stale_until,
                entry.cost,
                list(entry.tags),
                dict(entry.tag_versions),
                value_bytes,
            ],
            use_bin_type=True,
        )
        for envelope in self.envelopes:
            data = envelope.seal(data)
        return data

    def decode(self, data: bytes) -> Entry:
        """The entry stored as ``data``; ``DeserializationError`` if it is not one of ours."""
        for envelope in reversed(self.envelopes):
            data = envelope.open(data)
        try:
            fields = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False)
            fmt, created, expires, refresh_after, stale_until, cost, tags, versions, value = fields
        except Exception as exc:
            raise DeserializationError(f"not a stratacache entry: {exc!r}") from exc
        if fmt != FORMAT or not isinstance(value, bytes):
            raise DeserializationError(f"unsupported entry format {fmt!r}")
        if not (
            _is_time(created, False)
            and all(_is_time(t, True) for t in (expires, refresh_after, stale_until))
            and _is_time(cost, False)
            and isinstance(tags, list)
            and all(isinstance(t, str) for t in tags)
            and isinstance(versions, dict)
        ):
            raise DeserializationError("entry metadata has the wrong types")
        return Entry(
            value=self.serializer.loads(value),
            created=created,
            expires=expires,
            refresh_after=refresh_after,
            stale_until=stale_until,
            cost=cost,
            tags=tuple(tags),
            tag_versions=versions,
            size=len(data),
        )


def _is_time(value: Any, optional: bool) -> bool:
    """A number (bools excluded), or None where ``optional``."""
    if value is None:
        return optional
    return isinstance(value, (int, float)) and not isinstance(value, bool)
