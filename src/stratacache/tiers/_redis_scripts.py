"""What ``RedisTier`` stores and runs server-side: the value layout, key names and Lua scripts.

Stored value layout (so Lua can check tags without decoding the codec's bytes,
which may be compressed, signed or encrypted)::

    b"\\x00" + codec_bytes                                  untagged entry
    b"\\x01" + len(header) (4 bytes, big endian) + header + codec_bytes
                                                            header = msgpack [tag, version, ...]

Bookkeeping keys (none starts with ``namespace + ":"``, so ``clear`` never removes them):

- ``{sc:NS}:__tagv__:TAG``  tag version. A write that carries the tag creates it at 1
  when missing and stretches its TTL to at least the entry's (so it outlives every
  entry that recorded it; an entry with no TTL makes it persistent); an invalidation
  increments it (a missing one becomes 2) and keeps it at least ``MARKER_TTL_MS``, so a
  load still running sees the change. A *missing* version never matches a recorded
  one: an entry whose tag version expired or vanished is a miss, never fresh again.
  Creation uses 1 and invalidation never yields 1, so a lease that saw the version
  missing still accepts one another writer created (1) but not an invalidation (>= 2).
  Tags therefore cost keys only while entries carrying them live (plus the marker).
- ``{sc:NS}:__epoch__``     namespace epoch, INCR by ``delete_prefix``/``clear``; voids
  every lease taken before (refusing a set is always safe). Expires ``MARKER_TTL_MS``
  after the last INCR (a lease that saw it then finds it gone and is refused).
- ``{…}:__keyv__:KEY``      key version, INCR by ``delete_many``; expires a day after the
  last delete, far longer than any loader runs.

On one Redis, ``{sc:NS}`` keeps tag counters and the epoch together (the scripts read
them by prefix). On a cluster they are spread so that no slot is hot: each tag counter
is ``{sc:NS:t:TAG}:__tagv__`` (its own slot), and the epoch is split into
``EPOCH_SHARDS`` shards ``{sc:NS:eI}:__epoch__``, an entry key using the shard of its
slot (``delete_prefix`` bumps them all). Reads stay one round trip per node: MGETs
are split per slot and pipelined per node. The key-version key carries a hash tag
that lands in the entry key's own slot, so the set script can check it atomically.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from ..core.errors import DeserializationError

UNTAGGED = b"\x00"
TAGGED = 1
KEY_VERSION_TTL_MS = 86_400_000
#: how long an invalidated tag version / the epoch is kept at least: longer than any load
MARKER_TTL_MS = 3_600_000
#: shards of a namespace's epoch on a cluster (each in its own slot)
EPOCH_SHARDS = 16

#: KEYS[1] entry; ARGV[1] tag-key prefix. Returns the stored bytes, or false when a
#: recorded tag version differs from the current one. A header Lua cannot parse is
#: returned as is, so the client counts a decode error instead of failing the call.
_FRESH = """
local function fresh(v, prefix)
  if string.byte(v, 1) ~= 1 then return true end
  local ok, res = pcall(function()
    local n = struct.unpack('>I4', string.sub(v, 2, 5))
    local h = {cmsgpack.unpack(string.sub(v, 6, 5 + n))}
    h = h[1]
    for i = 1, #h, 2 do
      local cur = redis.call('GET', prefix .. h[i])
      if (not cur) or tonumber(cur) ~= h[i + 1] then return false end
    end
    return true
  end)
  return (not ok) or res
end
"""

GET_SCRIPT = (
    _FRESH
    + """
local v = redis.call('GET', KEYS[1])
if v and fresh(v, ARGV[1]) then return v end
return false
"""
)

GET_MANY_SCRIPT = (
    _FRESH
    + """
local vals = redis.call('MGET', unpack(KEYS))
local out = {}
for i = 1, #KEYS do
  local v = vals[i]
  if v and fresh(v, ARGV[1]) then out[i] = v else out[i] = false end
end
return out
"""
)

#: KEYS[1] entry, KEYS[2] key version, KEYS[3] epoch (absent in cluster mode).
#: ARGV: data, px (0 = none), leased kv ('' = no lease), leased epoch, tag prefix
#: ('' = ARGV carries current versions: cluster mode), n, n tags, n versions
#: (leased versions, or current ones in cluster mode; '' = unknown).
#: Returns 1 when stored, 0 when the lease was voided.
SET_SCRIPT = """
local data, px, kv, epoch = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local prefix, n = ARGV[5], tonumber(ARGV[6])
if kv ~= '' then
  if (redis.call('GET', KEYS[2]) or '0') ~= kv then return 0 end
  if KEYS[3] and (redis.call('GET', KEYS[3]) or '0') ~= epoch then return 0 end
end
local payload = '\\0' .. data
if n > 0 then
  local header, current = {}, {}
  for i = 1, n do  -- check every tag before touching any
    local tag, given = ARGV[6 + i], ARGV[6 + n + i]
    if prefix == '' then
      current[i] = tonumber(given)
    else
      local cur = redis.call('GET', prefix .. tag)
      if kv ~= '' and given ~= '' then
        if cur then
          if tonumber(cur) ~= tonumber(given) and not (given == '0' and cur == '1') then
            return 0
          end
        elseif given ~= '0' then
          return 0  -- the version the load saw is gone
        end
      end
      current[i] = cur and tonumber(cur) or false
    end
  end
  for i = 1, n do
    local tag, cur = ARGV[6 + i], current[i]
    if prefix ~= '' then
      local tk = prefix .. tag
      if not cur then
        cur = 1
        if px > 0 then redis.call('SET', tk, 1, 'PX', px) else redis.call('SET', tk, 1) end
      elseif px == 0 then
        redis.call('PERSIST', tk)
      else
        local t = redis.call('PTTL', tk)
        if t >= 0 and t < px then redis.call('PEXPIRE', tk, px) end
      end
    end
    header[2 * i - 1] = tag
    header[2 * i] = cur
  end
  local h = cmsgpack.pack(header)
  payload = '\\1' .. struct.pack('>I4', #h) .. h .. data
end
if px > 0 then
  redis.call('SET', KEYS[1], payload, 'PX', px)
else
  redis.call('SET', KEYS[1], payload)
end
return 1
"""


#: KEYS: tag versions; ARGV[1] marker ms. Invalidates each tag (see the module docstring).
INVALIDATE_TAGS_SCRIPT = """
local marker = tonumber(ARGV[1])
for i = 1, #KEYS do
  if redis.call('INCR', KEYS[i]) == 1 then
    redis.call('SET', KEYS[i], 2, 'PX', marker)
  else
    local t = redis.call('PTTL', KEYS[i])
    if t >= 0 and t < marker then redis.call('PEXPIRE', KEYS[i], marker) end
  end
end
return #KEYS
"""

#: Cluster mode (all tag versions share one slot with the epoch): KEYS[1] epoch, KEYS[2..]
#: tag versions; ARGV[1] px (0: none). Creates missing versions at 1 and stretches their
#: TTL as the set script does; returns {epoch or '0', versions as found ('0': missing)}.
ENSURE_TAGS_SCRIPT = """
local px = tonumber(ARGV[1])
local out = {redis.call('GET', KEYS[1]) or '0'}
for i = 2, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  out[i] = cur or '0'
  if not cur then
    if px > 0 then redis.call('SET', KEYS[i], 1, 'PX', px) else redis.call('SET', KEYS[i], 1) end
  elseif px == 0 then
    redis.call('PERSIST', KEYS[i])
  else
    local t = redis.call('PTTL', KEYS[i])
    if t >= 0 and t < px then redis.call('PEXPIRE', KEYS[i], px) end
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class RedisLease:
    """Versions read when a load began: key version, namespace epoch, tag versions."""

    key: str
    key_version: bytes
    epoch: bytes
    tags: tuple[str, ...]
    tag_versions: tuple[bytes, ...]


class KeyNames:
    """Names of the bookkeeping keys of one namespace (see the module docstring)."""

    def __init__(self, namespace: str, cluster: bool) -> None:
        self.base = "{sc:" + namespace + "}"
        self.tag_prefix = self.base + ":__tagv__:"
        self.epoch = self.base + ":__epoch__"
        self.cluster = cluster
        self._spread = "{sc:" + namespace + ":t:"
        #: every epoch key (one on one Redis; ``EPOCH_SHARDS`` on a cluster)
        self.epochs = (
            [f"{{sc:{namespace}:e{i}}}:__epoch__" for i in range(EPOCH_SHARDS)]
            if cluster
            else [self.epoch]
        )

    def tag(self, tag: str) -> str:
        if self.cluster:
            return self._spread + tag + "}:__tagv__"
        return self.tag_prefix + tag

    def epoch_of(self, key: str) -> str:
        """The epoch key that guards ``key`` (its slot's shard on a cluster)."""
        if not self.cluster:
            return self.epoch
        return self.epochs[key_slot(key.encode()) % EPOCH_SHARDS]

    def key_version(self, key: str) -> str:
        if not self.cluster:
            return self.base + ":__keyv__:" + key
        slot = key_slot(key.encode())
        return "{" + _slot_tags()[slot] + "}:__keyv__:" + key


def slot_groups(names: Sequence[str]) -> list[list[int]]:
    """Indexes of ``names`` grouped by cluster slot (each group fits one multi-key command)."""
    groups: dict[int, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(key_slot(name.encode()), []).append(i)
    return list(groups.values())


_SLOT_TAGS: list[str] = []


def _slot_tags() -> list[str]:
    """For each cluster slot, a short string hashing to it (built once, ~0.1 s)."""
    if not _SLOT_TAGS:
        table: list[str | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        missing = REDIS_CLUSTER_HASH_SLOTS
        for i in itertools.count():
            s = format(i, "x")
            slot = key_slot(s.encode())
            if table[slot] is None:
                table[slot] = s
                missing -= 1
                if not missing:
                    break
        _SLOT_TAGS.extend(t for t in table if t is not None)
    return _SLOT_TAGS


def split_stored(raw: bytes) -> tuple[bytes, bytes | None]:
    """``(codec_bytes, msgpack_header_or_None)`` of a stored value; raises on a foreign layout."""
    if raw[:1] == UNTAGGED:
        return raw[1:], None
    if raw[:1] == b"\x01" and len(raw) >= 5:
        n = int.from_bytes(raw[1:5], "big")
        if len(raw) >= 5 + n:
            return raw[5 + n :], raw[5 : 5 + n]
    raise DeserializationError("not a stratacache redis value")


def glob_escape(text: str) -> str:
    """``text`` with SCAN MATCH wildcards escaped, so a prefix matches literally."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
