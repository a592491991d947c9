"""The write operations of ``RedisTier``: SET under a lease, tag versions, prefix deletes.

Why: every write path (single ``set``, batches, compare-and-set) must store the same
header and honour the same leases; it is written once here, as generators of Redis
calls that both drivers run (see ``_redis_client``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..core.entry import Entry
from . import _redis_scripts as rs
from ._redis_client import SCAN_BATCH, SHA, Call, Op, pipeline, scan

if TYPE_CHECKING:
    from .redis import RedisTier


def set_op(tier: RedisTier, key: str, entry: Entry, lease: object | None) -> Op[bool]:
    px = physical_ttl_ms(tier, entry)
    if px is None:
        return True  # already past its end: nothing worth storing
    data = tier.context.codec.encode(entry, key=key)
    if not isinstance(lease, rs.RedisLease):
        lease = None
    if lease is None and not entry.tags:
        # An unleased write is an overwrite: bump the key version so a load that began
        # before it cannot store its older result over it (one pipelined round trip).
        # The bump goes first: a leased write run between the two commands is refused
        # after it, and overwritten when it ran before.
        calls = void_calls(tier, key)
        calls.append(("SET", key, rs.UNTAGGED + data, *(("PX", px) if px else ())))
        yield lambda s: pipeline(s, calls)
        return True
    args = yield from set_args(tier, key, entry, lease, data, px)
    if args is None:
        return False
    if lease is None:  # an overwrite: void older leases first, as above
        void = void_calls(tier, key)
        yield lambda s: pipeline(s, void)
    stored = yield lambda s: s.c.evalsha(SHA["set"], *args)
    return bool(stored)


def void_calls(tier: RedisTier, key: str) -> list[Call]:
    """Commands that void every lease taken on ``key`` so far."""
    kv = tier.names.key_version(key)
    return [("INCR", kv), ("PEXPIRE", kv, rs.KEY_VERSION_TTL_MS)]


def set_args(
    tier: RedisTier, key: str, entry: Entry, lease: rs.RedisLease | None, data: bytes, px: int
) -> Op[list[Any] | None]:
    """EVALSHA arguments of the set script, or None when a cluster pre-check refuses."""
    names = tier.names
    tags = [tier.context.codec.tag_token(t) for t in entry.tags]
    leased = dict(zip(lease.tags, lease.tag_versions, strict=True)) if lease else {}
    versions: list[Any] = [leased.get(t, b"") for t in tags]
    keys = [key, names.key_version(key)]
    prefix = names.tag_prefix
    if tier.cluster:
        current = yield from ensure_tags_op(tier, tags, px, key)
        if lease is not None and (
            current[0] != lease.epoch
            or any(
                v not in (b"", c) and not (v == b"0" and c == b"1")
                for v, c in zip(versions, current[1:], strict=True)
            )
        ):
            return None
        versions = [b"1" if c == b"0" else c for c in current[1:]]  # created at 1
        prefix = ""
    else:
        keys.append(names.epoch)
    kv, epoch = (lease.key_version, lease.epoch) if lease else (b"", b"")
    return [len(keys), *keys, data, px, kv, epoch, prefix, len(tags), *tags, *versions]


def ensure_tags_op(
    tier: RedisTier, tokens: Sequence[str], px: int, key: str | None = None
) -> Op[list[bytes]]:
    """``[epoch of key, *versions]`` as found (``b"0"``: missing, now created at 1).

    Missing tag versions are created and every version's TTL is stretched to ``px``
    (see ``_redis_scripts``); without ``key`` the epoch is not read (``b"0"``). On a
    cluster the counters live in many slots: one script call per slot, pipelined.
    """
    names = tier.names
    tag_keys = [names.tag(t) for t in tokens]
    if not tier.cluster:
        wanted = [names.epoch, *tag_keys]
        found = yield lambda s: s.c.evalsha(SHA["ensure_tags"], len(wanted), *wanted, px)
        return [as_bytes(v) for v in found]
    groups = rs.slot_groups(tag_keys)
    calls: list[Call] = [("GET", names.epoch_of(key))] if key is not None else []
    for group in groups:
        part = [tag_keys[i] for i in group]
        # the script reads KEYS[1] as the epoch: the group's first counter stands in
        calls.append(("EVALSHA", SHA["ensure_tags"], len(part) + 1, part[0], *part, px))
    results = yield lambda s: pipeline(s, calls)
    out = [as_bytes(results[0] or b"0") if key is not None else b"0"] + [b"0"] * len(tokens)
    for group, found in zip(groups, results[len(calls) - len(groups) :], strict=True):
        for i, value in zip(group, found[1:], strict=True):
            out[1 + i] = as_bytes(value)
    return out


def delete_prefix_op(tier: RedisTier, prefix: str) -> Op[int]:
    # Epoch first: a load that began before this call may not write afterwards.
    bump: list[Call] = []
    for epoch in tier.names.epochs:
        bump += [("INCR", epoch), ("PEXPIRE", epoch, rs.MARKER_TTL_MS)]
    yield lambda s: pipeline(s, bump)
    pattern = rs.glob_escape(prefix) + "*"
    keys = yield lambda s: scan(s, pattern)
    removed = 0
    for i in range(0, len(keys), SCAN_BATCH):
        batch = keys[i : i + SCAN_BATCH]
        calls: list[Call] = [("UNLINK", k) for k in batch]
        results = yield functools.partial(pipeline, calls=calls)
        removed += sum(int(r) for r in results)
    return removed


def physical_ttl_ms(tier: RedisTier, entry: Entry) -> int | None:
    """Physical TTL in ms (0: none), or None when the entry is already past its end."""
    remaining = entry.keep_for(tier.context.clock.time(), tier.ttl)
    if remaining is None:
        return 0
    if remaining <= 0:
        return None
    return max(1, math.ceil(remaining * 1000))


def as_bytes(value: Any) -> bytes:
    """A script's reply item as bytes (integers come back as ints)."""
    return value if isinstance(value, bytes) else str(value).encode()
