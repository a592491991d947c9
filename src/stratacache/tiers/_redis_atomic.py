"""Atomic read-modify-write on a ``RedisTier``: a versioned read and a compare-and-set.

The token of a versioned read is the stored bytes themselves (or None when the key
is absent); the compare-and-set script stores the new entry only when the key still
holds exactly those bytes, and bumps the key version so a load that began before it
cannot store its older result afterwards. The comparison is on whole stored values,
so it works whatever the codec's envelopes (compression, signing, encryption) do.

A tagged entry's header records the tag versions read just before the script runs:
a tag invalidated in between makes the new entry read as outdated (a miss), never
as fresh. In cluster mode the key and its version share a slot, so the script runs.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import msgpack

from ..core.entry import Entry
from ..core.errors import DeserializationError
from . import _redis_reads as rr
from . import _redis_scripts as rs
from . import _redis_writes as rw
from ._redis_client import Op
from ._versioned import open_versioned

if TYPE_CHECKING:
    from .redis import RedisTier

#: KEYS[1] entry, KEYS[2] key version. ARGV: absent flag ('1': the key must not exist),
#: expected bytes, new bytes, px (0: none), key-version TTL in ms. Returns 1 when stored.
CAS_SCRIPT = """
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur then return 0 end
elseif cur ~= ARGV[2] then
  return 0
end
local px = tonumber(ARGV[4])
if px > 0 then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', px)
else
  redis.call('SET', KEYS[1], ARGV[3])
end
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 1
"""


def read_versioned_op(tier: RedisTier, key: str) -> Op[tuple[Entry | None, object]]:
    """The live entry under ``key`` (tags checked) and the stored bytes as the token.

    Raises ``DeserializationError`` for a value this process cannot open (``_versioned``).
    """
    raw = yield lambda s: s.c.get(key)
    if raw is None:
        return None, None
    try:
        data, _ = rs.split_stored(raw)
    except DeserializationError:
        data = raw  # not even our framing: reported as unreadable just below
    entry = open_versioned(tier.context.codec, data, key)
    if entry is None:  # sealed for another key: never this key's value
        tier.decode_errors += 1
        return None, raw
    if raw[:1] == rs.UNTAGGED:
        return (None if entry.is_gone(tier.context.clock.time()) else entry), raw
    entry = yield from rr.get_op(tier, key)  # the tag check (the bytes are the token either way)
    return entry, raw


def compare_and_set_op(tier: RedisTier, key: str, token: object, entry: Entry) -> Op[bool]:
    """Store ``entry`` iff ``key`` still holds ``token`` (None: iff ``key`` is absent)."""
    px = rw.physical_ttl_ms(tier, entry)
    codec = tier.context.codec
    data = codec.encode(entry, key=key)  # bound to its key, as every write is
    if entry.tags:
        tokens = [codec.tag_token(t) for t in entry.tags]  # keyed digests under encryption
        # create missing tag versions (at 1) and stretch their TTL past this entry's, as the
        # set script does: an entry naming a version that is missing is never fresh
        ttl_ms = 1 if px is None else px  # None: already past its end
        found = yield from rw.ensure_tags_op(tier, tokens, ttl_ms)
        pairs: list[object] = []
        for tag, version in zip(tokens, found[1:], strict=True):
            pairs += [tag, int(version) or 1]  # '0': created just now, at 1
        header = msgpack.packb(pairs)
        stored = b"\x01" + struct.pack(">I", len(header)) + header + data
    else:
        stored = rs.UNTAGGED + data
    absent = token is None
    expected = b"" if absent else token
    if px is None:  # already past its end: replacing the old value means removing it
        px = 1
    args = [2, key, tier.names.key_version(key), "1" if absent else "0", expected, stored]
    result = yield lambda s: s.c.eval(CAS_SCRIPT, *args, px, rs.KEY_VERSION_TTL_MS)
    return bool(result)
