"""Batches of any size for ``RedisTier``: bounded chunks, each pipelined, each with its own budget.

Why: one pipeline of 10,000 writes had to finish within one operation timeout, and
when it could not, nothing was stored and the failure was only logged. Here a batch
is cut into chunks of at most ``CHUNK_ENTRIES`` commands' worth and ``CHUNK_BYTES``
bytes; each chunk is one pipelined round trip (per node on a cluster) with a time
budget of the operation timeout plus its transfer time at ``BUDGET_BYTES_PER_S``, so
the batch's total budget grows with the batch. The first chunk that fails stops the
batch: the entries not stored are added to the tier's ``dropped_writes`` and the call
raises ``TierError`` (counted and logged by the engine), never a silent drop.

A tagged ``set_many`` on a cluster first reads (or creates) every tag version the batch
names, one script call per slot pipelined per node (not two trips per entry), then
writes the entries, headers built here, as plain SETs pipelined per chunk.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgpack

from ..core.entry import Entry
from ..core.errors import TierError
from . import _redis_drivers as rd
from . import _redis_scripts as rs
from . import _redis_writes as rw
from ._redis_client import SHA, Call, Op, Side, Step, pipeline

if TYPE_CHECKING:
    from .redis import RedisTier

#: commands (entries) and stored bytes per chunk of a batch
CHUNK_ENTRIES = 256
CHUNK_BYTES = 1 << 20
#: keys per MGET step of ``get_many``
CHUNK_KEYS = 1000
#: the transfer rate a chunk's budget assumes on top of the operation timeout (conservative)
BUDGET_BYTES_PER_S = 8 << 20


class Progress:
    """How many of a batch's entries were written so far; as a context manager, a batch
    that fails with ``TierError`` adds the entries it did not write to ``dropped_writes``."""

    __slots__ = ("done", "tier", "total")

    def __init__(self, tier: RedisTier, total: int) -> None:
        self.tier = tier
        self.total = total
        self.done = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, trace: object) -> None:
        if isinstance(exc, TierError):
            self.tier.dropped_writes += self.total - self.done


def budgeted(step: Step, timeout: float, nbytes: int) -> Step:
    """``step`` carrying its own time budget (the drivers read ``step.budget``)."""
    step.budget = timeout + nbytes / BUDGET_BYTES_PER_S  # type: ignore[attr-defined]
    return step


def chunks(sizes: Sequence[int]) -> Iterator[range]:
    """Index ranges of consecutive items, each within ``CHUNK_ENTRIES`` and ``CHUNK_BYTES``."""
    start, nbytes = 0, 0
    for i, size in enumerate(sizes):
        if i > start and (i - start >= CHUNK_ENTRIES or nbytes + size > CHUNK_BYTES):
            yield range(start, i)
            start, nbytes = i, 0
        nbytes += size
    if start < len(sizes):
        yield range(start, len(sizes))


def set_many_op(tier: RedisTier, entries: Mapping[str, Entry], progress: Progress) -> Op[None]:
    """Store ``entries`` chunk by chunk (see the module docstring)."""
    items: list[tuple[str, Entry, bytes, int]] = []
    codec = tier.context.codec
    for key, entry in entries.items():
        px = rw.physical_ttl_ms(tier, entry)
        if px is None:
            progress.done += 1  # already past its end: nothing worth storing
            continue
        items.append((key, entry, codec.encode(entry, key=key), px))
    versions: dict[str, bytes] = {}
    if tier.cluster:  # every tag version of the batch, read (or created) up front
        tokens = sorted({codec.tag_token(t) for _, e, _, _ in items for t in e.tags})
        pxs = [px for _, e, _, px in items if e.tags]
        px_max = 0 if 0 in pxs else max(pxs, default=0)
        for i in range(0, len(tokens), CHUNK_ENTRIES):
            some = tokens[i : i + CHUNK_ENTRIES]
            found = yield from rw.ensure_tags_op(tier, some, px_max)
            for token, current in zip(some, found[1:], strict=True):
                versions[token] = b"1" if current == b"0" else current  # created at 1
    for part in chunks([len(data) + len(key) for key, _, data, _ in items]):
        chunk = [items[i] for i in part]
        calls: list[Call] = []
        nbytes = 0
        for key, entry, data, px in chunk:
            nbytes += len(data)
            calls += rw.void_calls(tier, key)
            expiry = ("PX", px) if px else ()
            if not entry.tags:
                calls.append(("SET", key, rs.UNTAGGED + data, *expiry))
            elif tier.cluster:
                calls.append(("SET", key, _tagged(codec, entry, data, versions), *expiry))
            else:
                args = yield from rw.set_args(tier, key, entry, None, data, px)
                if args is not None:
                    calls.append(("EVALSHA", SHA["set"], *args))
        yield budgeted(functools.partial(pipeline, calls=calls), tier.op_timeout, nbytes)
        progress.done += len(chunk)


def _tagged(codec: Any, entry: Entry, data: bytes, versions: Mapping[str, bytes]) -> bytes:
    """The stored form of a tagged entry (as the set script builds it: see ``_redis_scripts``)."""
    header: list[Any] = []
    for tag in entry.tags:
        token = codec.tag_token(tag)
        header += (token, int(versions[token]))
    packed: bytes = msgpack.packb(header, use_bin_type=True)
    return bytes((rs.TAGGED,)) + len(packed).to_bytes(4, "big") + packed + data


def delete_many_op(tier: RedisTier, keys: Sequence[str], progress: Progress) -> Op[int]:
    """Void the leases of ``keys``, then UNLINK them, chunk by chunk; the number removed.

    Void first: the pipeline is not a transaction, so another client's leased write can
    run between two of its commands. After the INCR that write is refused; one that ran
    before it is removed by the UNLINK. (UNLINK first would let a write under a lease
    taken before this call land between the two and outlive the delete.) A key and its
    version share a slot, so on a cluster both go to one node, in this order.
    """
    removed = 0
    keys = list(keys)
    for i in range(0, len(keys), CHUNK_ENTRIES):
        calls: list[Call] = []
        part = keys[i : i + CHUNK_ENTRIES]
        for key in part:
            calls += rw.void_calls(tier, key)
            calls.append(("UNLINK", key))
        results = yield budgeted(functools.partial(pipeline, calls=calls), tier.op_timeout, 0)
        removed += sum(int(r) for r in results[2::3])
        progress.done += len(part)
    return removed


def invalidate_tags_op(tier: RedisTier, tags: Sequence[str]) -> Op[None]:
    """One INCR per tag token, in script calls of at most ``CHUNK_KEYS`` counters."""
    codec = tier.context.codec
    tokens = dict.fromkeys(x for t in tags for x in codec.tag_tokens(t))
    names = [tier.names.tag(t) for t in tokens]
    for i in range(0, len(names), CHUNK_KEYS):
        part = names[i : i + CHUNK_KEYS]
        yield functools.partial(_script, name="invalidate_tags", keys=part, args=[rs.MARKER_TTL_MS])


def _script(side: Side, name: str, keys: list[str], args: list[Any]) -> Any:
    """Run the script ``name`` on ``keys`` with ``args``."""
    return side.c.evalsha(SHA[name], len(keys), *keys, *args)


# -- the batch calls of both drivers, dropped writes counted --------------------------------------
async def set_many(tier: RedisTier, entries: Mapping[str, Entry], keys: Sequence[str] = ()) -> None:
    """Store ``entries`` (only those of ``keys`` when given)."""
    part = {k: entries[k] for k in keys} if keys else entries
    with Progress(tier, len(part)) as progress:
        await rd.run(tier, "set_many", lambda: set_many_op(tier, part, progress))


def set_many_sync(tier: RedisTier, entries: Mapping[str, Entry], keys: Sequence[str] = ()) -> None:
    """The blocking twin of ``set_many``."""
    part = {k: entries[k] for k in keys} if keys else entries
    with Progress(tier, len(part)) as progress:
        rd.run_sync(tier, "set_many", lambda: set_many_op(tier, part, progress))


async def delete_many(tier: RedisTier, keys: Sequence[str]) -> int:
    """Delete ``keys``; returns how many existed."""
    with Progress(tier, len(keys)) as progress:
        return await rd.run(tier, "delete_many", lambda: delete_many_op(tier, keys, progress))


def delete_many_sync(tier: RedisTier, keys: Sequence[str]) -> int:
    """The blocking twin of ``delete_many``."""
    with Progress(tier, len(keys)) as progress:
        return rd.run_sync(tier, "delete_many", lambda: delete_many_op(tier, keys, progress))
