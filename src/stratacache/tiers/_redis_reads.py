"""The read operations of ``RedisTier``: GET/MGET, the client-side tag check, leases.

Why: the reads are one job (turn stored bytes into live entries, tag versions
checked) and are written once, as generators of Redis calls that both drivers run
(see ``_redis_client``). The hottest single-key paths stay inlined in ``redis.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgpack

from ..core.entry import Entry
from ..core.errors import DeserializationError
from . import _redis_batch as rb
from . import _redis_scripts as rs
from ._redis_client import SHA, Op, Step, scan

if TYPE_CHECKING:
    from .redis import RedisTier


def get_op(tier: RedisTier, key: str) -> Op[Entry | None]:
    if tier.cluster:
        found = yield from get_many_op(tier, [key])
        return found.get(key)
    prefix = tier.names.tag_prefix
    raw = yield lambda s: s.c.evalsha(SHA["get"], 1, key, prefix)
    return None if raw is None else load_entry(tier, raw, key)


def get_many_op(tier: RedisTier, keys: Sequence[str]) -> Op[dict[str, Entry]]:
    """MGET in chunks of ``CHUNK_KEYS`` keys, then the tag check of the tagged hits.

    On one Redis, once a batch met tagged entries, the next ones run the get_many script
    instead (the tag check server-side: one round trip, at a higher cost per key) until
    a batch meets none: each batch costs one round trip whichever kind it mostly holds.
    """
    if not keys:
        return {}
    keys = list(keys)
    if len(keys) <= rb.CHUNK_KEYS and tier.expect_tags and not tier.cluster:
        prefix = tier.names.tag_prefix
        raws = yield lambda s: s.c.evalsha(SHA["get_many"], len(keys), *keys, prefix)
        found, tagged_keys, tagged_raws = live_untagged(tier, keys, raws)
        now = tier.context.clock.time()
        for key, raw in zip(tagged_keys, tagged_raws, strict=True):  # checked by the script
            entry = load_entry(tier, raw, key, now)
            if entry is not None:
                found[key] = entry
        tier.expect_tags = bool(tagged_keys)
        return found
    if len(keys) <= rb.CHUNK_KEYS:
        raws = yield mget_step(tier, keys)
        return (yield from fresh_op(tier, keys, raws))
    raws = []
    for i in range(0, len(keys), rb.CHUNK_KEYS):
        part = keys[i : i + rb.CHUNK_KEYS]
        raws += yield rb.budgeted(mget_step(tier, part), tier.op_timeout, 0)
    return (yield from fresh_op(tier, keys, raws))


def mget_step(tier: RedisTier, keys: list[str]) -> Step:
    """One MGET (per slot, pipelined per node, in cluster mode)."""
    if tier.cluster:
        return lambda s: s.c.mget_nonatomic(keys)
    return lambda s: s.c.mget(keys)


def fresh_op(tier: RedisTier, keys: Sequence[str], raws: Sequence[Any]) -> Op[dict[str, Entry]]:
    """Entries of the stored values ``raws``; a tagged one only if its tag versions are current.

    Untagged values decode at once; the tag counters that tagged ones name are read
    in one more MGET and compared with the recorded versions (a missing counter, -1,
    matches none: see ``_redis_scripts``).
    """
    found, tagged_keys, tagged_raws = live_untagged(tier, keys, raws)
    tagged: dict[str, tuple[bytes, list[Any]]] = {}
    tags: set[str] = set()
    now = tier.context.clock.time()
    for key, raw in zip(tagged_keys, tagged_raws, strict=True):
        try:
            data, header = rs.split_stored(raw)
            pairs = msgpack.unpackb(header, raw=False) if header is not None else []
            if type(pairs) is not list or len(pairs) % 2:
                raise ValueError("bad header")
            recorded = pairs[0::2]
            tags.update(recorded)
        except (DeserializationError, ValueError, TypeError):
            tier.decode_errors += 1
            continue
        tagged[key] = (data, pairs)
    if not tagged:
        return found
    tier.expect_tags = True  # see ``_redis_batch.get_many_op``
    ordered = sorted(tags)
    values = yield mget_step(tier, [tier.names.tag(t) for t in ordered])
    current = {t: tag_version(v) for t, v in zip(ordered, values, strict=True)}
    for key, (data, pairs) in tagged.items():
        if all(current[t] == v for t, v in zip(pairs[0::2], pairs[1::2], strict=True)):
            live = decode_entry(tier, data, key, now)
            if live is not None:
                found[key] = live
    return found


def live_untagged(
    tier: RedisTier, keys: Sequence[str], raws: Sequence[Any]
) -> tuple[dict[str, Entry], list[str], list[Any]]:
    """``(live untagged entries, keys of the other values, those values)``.

    The untagged values (the common case) decode in one pass (``EntryCodec.decode_many``);
    the others (tagged, or foreign) are left to the caller's tag check.
    """
    plain_keys: list[str] = []
    plain: list[bytes] = []
    other_keys: list[str] = []
    other: list[Any] = []
    untagged = rs.UNTAGGED
    for key, raw in zip(keys, raws, strict=True):
        if raw is None:
            continue
        if raw[:1] == untagged:
            plain_keys.append(key)
            plain.append(raw)
        else:
            other_keys.append(key)
            other.append(raw)
    found: dict[str, Entry] = {}
    if plain:
        now = tier.context.clock.time()
        errors = 0
        entries = tier.context.codec.decode_many(plain_keys, plain, 1)
        for key, entry in zip(plain_keys, entries, strict=True):
            if entry is None:
                errors += 1
                continue
            end = entry.stale_until if entry.stale_until is not None else entry.expires
            if end is None or now < end:
                found[key] = entry
        tier.decode_errors += errors
    return found, other_keys, other


def lease_keys(tier: RedisTier, key: str, tags: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(tag tokens, keys a lease reads)``: key version, epoch, then one per tag."""
    names = tier.names
    tokens = [tier.context.codec.tag_token(t) for t in tags]  # keyed digests if encrypted
    return tokens, [names.key_version(key), names.epoch_of(key), *map(names.tag, tokens)]


def lease_op(tier: RedisTier, key: str, tags: Sequence[str]) -> Op[object | None]:
    tokens, wanted = lease_keys(tier, key, tags)
    values = yield mget_step(tier, wanted)  # per slot, pipelined per node, on a cluster
    return make_lease(key, tokens, values)


def load_entry(tier: RedisTier, raw: bytes, key: str, now: float | None = None) -> Entry | None:
    try:
        data, _ = rs.split_stored(raw)
    except DeserializationError:
        tier.decode_errors += 1
        return None
    return decode_entry(tier, data, key, now)


def decode_entry(tier: RedisTier, data: bytes, key: str, now: float | None = None) -> Entry | None:
    """The live entry stored as ``data`` (None: gone, or not ours: counted)."""
    try:
        entry = tier.context.codec.decode(data, key=key)
    except DeserializationError:
        tier.decode_errors += 1
        return None
    end = entry.stale_until if entry.stale_until is not None else entry.expires
    if end is None:
        return entry
    return entry if (tier.context.clock.time() if now is None else now) < end else None


def make_lease(key: str, tokens: list[str], values: Sequence[bytes | None]) -> rs.RedisLease:
    """The lease of ``key`` from the values ``_lease_keys`` names (missing: ``b"0"``)."""
    kv, epoch, *versions = values
    return rs.RedisLease(
        key, kv or b"0", epoch or b"0", tuple(tokens), tuple(v or b"0" for v in versions)
    )


def tag_version(value: bytes | None) -> int:
    """A tag counter as an int: -1 when missing or unreadable (it then matches no entry)."""
    try:
        return -1 if value is None else int(value)
    except ValueError:
        return -1


def text(key: bytes | str) -> str:
    return key.decode() if isinstance(key, bytes) else key


def scan_keys_op(
    tier: RedisTier, prefix: str, cursor: str, count: int
) -> Op[tuple[list[str], str]]:
    """One SCAN step over ``prefix``; a cluster has no single cursor: one listing, paged by offset."""
    pattern = rs.glob_escape(prefix) + "*"
    if tier.cluster:
        keys = sorted(text(k) for k in (yield lambda s: scan(s, pattern)))
        start = int(cursor or 0)
        more = start + count < len(keys)
        return keys[start : start + count], str(start + count) if more else ""
    nxt, keys = yield lambda s: s.c.scan(int(cursor or 0), match=pattern, count=count)
    return [text(k) for k in keys], str(nxt) if int(nxt) else ""
