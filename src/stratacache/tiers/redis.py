"""``RedisTier``: a shared tier on Redis (standalone, Sentinel or Cluster) via redis-py.

Every operation is written once as a generator that yields Redis calls and
receives their results; a blocking driver runs it on a ``redis.Redis`` client
(no event-loop hop for sync callers) and an async driver on a
``redis.asyncio`` client. Driver errors become ``TierError``.

Costs: a hit is one GET; ``get_many`` is one MGET; a ``get`` of an entry that
carries tags (unless the caller names them, then one EVALSHA does both) costs one
more MGET of its tag counters, compared client-side; ``get_many`` switches to the
get_many script (one EVALSHA) while the batches it meets hold tagged entries.
Concurrent async ``get``s and leases of one event loop are coalesced into one MGET
per loop turn (``_redis_coalesce``; ``coalesce = False`` turns it off). ``set_many``/``delete_many``/``invalidate_tags`` go out in bounded,
pipelined chunks (``_redis_batch``); ``invalidate_tags`` is one INCR per tag, whatever
the number of entries. On a cluster, tag counters and the epoch are spread over slots,
multi-key reads are split per slot and pipelined per node, and each node has its own
breaker (``_redis_nodes``): a dead primary costs only the keys it holds.
Layout and bookkeeping keys are described in ``_redis_scripts``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import msgpack
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from ..core.codec import MAX_REDIS_VALUE, check_value_size
from ..core.durations import check_duration, check_optional
from ..core.entry import Entry
from ..core.errors import ConfigError, DeserializationError, TierError
from ..core.loops import PerLoop, abandon, on_fork
from ..core.tier import TierContext
from ..fleet.bus import RedisBus
from ..fleet.connection import RedisConnection
from ..fleet.hotkeys import HotKeys
from ..fleet.lock import RedisLock
from . import _redis_atomic as ra
from . import _redis_batch as rb
from . import _redis_nodes as rn
from . import _redis_scripts as rs
from ._redis_client import (
    _SCAN_BATCH,
    _SCRIPTS,
    _SHA,
    Call,
    Op,
    Step,
    T,
    _pipeline,
    _scan,
    _Side,
    _timeout,
    build_client,
)
from ._redis_coalesce import ReadCoalescer


class RedisTier:
    """A tier on Redis; entries expire physically (PX) at their end, capped by ``ttl``.

    Args:
        url: ``redis://`` / ``rediss://`` URL (also the first startup node in cluster mode).
        client: an existing ``redis.asyncio`` client to use instead of building one; it is
            used as is from every event loop, so it must suit the loop it is used on. Without
            it the tier builds one client per event loop (redis-py's asyncio clients are bound
            to one) and releases those of closed loops; after ``fork`` the child builds its own.
        sync_client: an existing ``redis.Redis`` client for the sync API.
        ttl: upper bound in seconds on how long an entry is kept.
        max_connections: pool size per client. Past it a call fails fast and the engine answers
            from another tier or the loader, unless ``pool_timeout`` makes callers wait.
        socket_timeout: seconds an operation may take before the tier counts as failed.
        socket_connect_timeout: seconds a connection attempt may take.
        retry: redis-py ``Retry`` policy (default: one quick retry on connection errors).
        pool_timeout: if set, a ``BlockingConnectionPool`` where callers wait this many seconds
            for a free connection (safer for tiny pools; costs ~10% per call in asyncio).
        name: name in stats and logs.
        cluster: connect with ``RedisCluster``.
        startup_nodes: ``["host:port", ...]``: more Cluster startup nodes besides ``url``'s.
        sentinels: ``[(host, port), ...]`` of Redis Sentinels; needs ``service_name``.
        service_name: the Sentinel master name.
        connection: a ``RedisConnection`` naming the Redis (instead of ``url``, ``cluster``,
            ``startup_nodes``, ``sentinels`` and ``service_name``); the default bus and
            fleet lock (``fleet_bus()``, ``fleet_lock()``) are built on the same one.
        max_value_size: bytes one stored entry may take (default: Redis's 512 MiB); a larger
            value is refused at ``set`` with ``SerializationError``.

    Attributes:
        coalesce: concurrent async ``get``s of one event loop ride one MGET (default True;
            set to False on the instance to send each alone).
        dropped_writes: entries of ``set_many``/``delete_many`` not written because a chunk
            failed (the call also raised ``TierError``); shown in ``cache.stats()``.
        node_errors: cluster reads of which one node's part failed while others answered
            (those keys were misses); shown in ``cache.stats()``.
    """

    shared = True
    #: concurrent async ``get``s of one event loop go out as one MGET (see ``_redis_coalesce``)
    coalesce = True
    #: entries of ``set_many``/``delete_many`` batches not written because a chunk failed
    dropped_writes = 0
    #: cluster calls of which one node's part failed while other nodes answered
    node_errors = 0
    _nodes: rn.NodeHealth | None = None
    _expect_tags = False
    _coalescers: PerLoop[ReadCoalescer] | None = None

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        client: Any = None,
        sync_client: Any = None,
        ttl: float | None = None,
        max_connections: int = 1024,
        socket_timeout: float = 0.5,
        socket_connect_timeout: float = 0.25,
        retry: Retry | None = None,
        pool_timeout: float | None = None,
        name: str = "redis",
        cluster: bool = False,
        sentinels: Sequence[tuple[str, int]] | None = None,
        service_name: str | None = None,
        max_value_size: int = MAX_REDIS_VALUE,
        startup_nodes: Sequence[str | tuple[str, int]] | None = None,
        connection: RedisConnection | None = None,
    ) -> None:
        ttl = check_optional("RedisTier ttl", ttl)
        self.max_value_size = check_value_size("RedisTier max_value_size", max_value_size)
        socket_timeout = check_duration("RedisTier socket_timeout", socket_timeout)
        socket_connect_timeout = check_duration(
            "RedisTier socket_connect_timeout", socket_connect_timeout
        )
        pool_timeout = check_optional("RedisTier pool_timeout", pool_timeout)
        if sentinels and not service_name:
            raise ConfigError("RedisTier with sentinels needs service_name")
        if connection is None:
            _check_url(url)
            connection = RedisConnection(
                url,
                cluster=cluster,
                startup_nodes=startup_nodes,
                sentinels=sentinels,
                service_name=service_name,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_connect_timeout,
            )
        #: where Redis is: shared with the default bus, fleet lock and hot keys
        self.connection = connection
        if max_connections < 1:
            raise ConfigError(f"RedisTier max_connections must be >= 1, not {max_connections!r}")
        self.name = name
        self.ttl = ttl
        self.url = connection.url
        self.cluster = connection.cluster
        self.decode_errors = 0
        self._options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_connect_timeout,
            "max_connections": max_connections,
        }
        self._pool_timeout = pool_timeout
        self._op_timeout = socket_timeout
        self._retry = retry
        self._given = (client, sync_client)
        #: the async client of each event loop (redis-py asyncio clients are bound to one)
        self._sides: PerLoop[_Side] | None = None
        self._sync: _Side | None = _Side(sync_client) if sync_client is not None else None
        self._context = TierContext(namespace="")
        self._names = rs.KeyNames("", self.cluster)
        on_fork(self)

    def fleet_bus(self) -> RedisBus:
        """A new invalidation bus on this tier's Redis (the cache's default bus)."""
        return RedisBus(connection=self.connection, client=self._given[0])

    def fleet_lock(self) -> RedisLock:
        """A new fleet lock on this tier's Redis (the lock behind ``lock=True``)."""
        return RedisLock(connection=self.connection, client=self._given[0])

    def hot_keys(self, **options: Any) -> HotKeys:
        """A new ``HotKeys`` publishing the fleet's hot set on this tier's Redis."""
        return HotKeys(connection=self.connection, **options)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, context: TierContext) -> None:
        self._context = context
        self._names = rs.KeyNames(context.namespace, self.cluster)
        if self._sides is None:
            given = self._given[0]
            if given is not None:
                side = _Side(given)  # the caller's client, whatever loop it was made for
                self._sides = PerLoop(lambda: side, _keep)
            else:
                self._sides = PerLoop(lambda: _Side(self._build(asynchronous=True)), _abandon)
        if self._sync is None:
            self._sync = _Side(self._build(asynchronous=False))

    async def close(self) -> None:
        """Close this loop's async client; release those of other loops without their loops."""
        sides, self._sides = self._sides, None
        self._coalescers = None
        if sides is not None:
            current = sides.pop_current()
            sides.clear()
            if current is not None and self._given[0] is None:
                await current.c.aclose()
        if self._sync is not None and self._given[1] is None:
            self._sync.c.close()
            self._sync = None

    def after_fork(self) -> None:
        """In a forked child: never touch the parent's sockets; build new clients on first use."""
        self._coalescers = None  # batches of the parent's loops are the parent's
        if self._sides is not None:
            self._sides.after_fork()
        if self._given[0] is not None:
            abandon(self._given[0])
        # redis-py's blocking pools notice the new pid themselves and reconnect

    def _build(self, asynchronous: bool) -> Any:
        """A client for ``url`` (or the cluster/sentinel it names) with our timeouts."""
        return build_client(
            self.connection,
            asynchronous=asynchronous,
            options=self._options,
            retry=self._retry,
            pool_timeout=self._pool_timeout,
        )

    # -- drivers -----------------------------------------------------------------------------
    async def _run(self, op: str, factory: Callable[[], Op[T]]) -> T:
        sides = self._sides
        if sides is None:
            raise TierError(self.name, op, RuntimeError("tier not started"))
        side = sides.get()
        for attempt in (0, 1):
            gen = factory()
            try:
                step = next(gen)
                while True:
                    # a batch's chunk carries a budget that grows with its size
                    async with _timeout(getattr(step, "budget", self._op_timeout)):
                        result = await step(side)
                    step = gen.send(result)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            except NoScriptError as exc:
                if attempt:
                    raise TierError(self.name, op, exc) from exc
                for src in _SCRIPTS.values():
                    await side.c.script_load(src)
            except (RedisError, OSError, TimeoutError) as exc:
                raise TierError(self.name, op, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _run_sync(self, op: str, factory: Callable[[], Op[T]]) -> T:
        side = self._sync
        if side is None:
            raise TierError(self.name, op, RuntimeError("tier not started"))
        for attempt in (0, 1):
            gen = factory()
            try:
                step = next(gen)
                while True:
                    step = gen.send(step(side))
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            except NoScriptError as exc:
                if attempt:
                    raise TierError(self.name, op, exc) from exc
                for src in _SCRIPTS.values():
                    side.c.script_load(src)
            except (RedisError, OSError) as exc:
                raise TierError(self.name, op, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # -- operations (shared by both drivers) -------------------------------------------------
    def _get_op(self, key: str) -> Op[Entry | None]:
        if self.cluster:
            found = yield from self._get_many_op([key])
            return found.get(key)
        prefix = self._names.tag_prefix
        raw = yield lambda s: s.c.evalsha(_SHA["get"], 1, key, prefix)
        return None if raw is None else self._load(raw, key)

    def _get_many_op(self, keys: Sequence[str]) -> Op[dict[str, Entry]]:
        if not keys:
            return {}
        return (yield from rb.get_many_op(self, keys))

    def _mget_step(self, keys: list[str]) -> Step:
        """One MGET (per slot, pipelined per node, in cluster mode)."""
        if self.cluster:
            return lambda s: s.c.mget_nonatomic(keys)
        return lambda s: s.c.mget(keys)

    def _fresh_op(self, keys: Sequence[str], raws: Sequence[Any]) -> Op[dict[str, Entry]]:
        """Entries of the stored values ``raws``; a tagged one only if its tag versions are current.

        Untagged values decode at once; the tag counters that tagged ones name are read
        in one more MGET and compared with the recorded versions (a missing counter, -1,
        matches none: see ``_redis_scripts``).
        """
        found: dict[str, Entry] = {}
        tagged: dict[str, tuple[bytes, list[Any]]] = {}
        tags: set[str] = set()
        untagged = rs.UNTAGGED
        now = self._context.clock.time()
        decode = self._context.codec.decode
        for key, raw in zip(keys, raws, strict=True):
            if raw is None:
                continue
            if raw[:1] == untagged:  # the common case, inlined (``_decode``)
                try:
                    entry = decode(raw[1:], key=key)
                except DeserializationError:
                    self.decode_errors += 1
                    continue
                end = entry.stale_until if entry.stale_until is not None else entry.expires
                if end is None or now < end:
                    found[key] = entry
                continue
            try:
                data, header = rs.split_stored(raw)
                pairs = msgpack.unpackb(header, raw=False) if header is not None else []
                if type(pairs) is not list or len(pairs) % 2:
                    raise ValueError("bad header")
                recorded = pairs[0::2]
                tags.update(recorded)
            except (DeserializationError, ValueError, TypeError):
                self.decode_errors += 1
                continue
            tagged[key] = (data, pairs)
        if not tagged:
            return found
        self._expect_tags = True  # see ``_redis_batch.get_many_op``
        ordered = sorted(tags)
        values = yield self._mget_step([self._names.tag(t) for t in ordered])
        current = {t: _version(v) for t, v in zip(ordered, values, strict=True)}
        for key, (data, pairs) in tagged.items():
            if all(current[t] == v for t, v in zip(pairs[0::2], pairs[1::2], strict=True)):
                live = self._decode(data, key, now)
                if live is not None:
                    found[key] = live
        return found

    def _lease_keys(self, key: str, tags: Sequence[str]) -> tuple[list[str], list[str]]:
        """``(tag tokens, keys a lease reads)``: key version, epoch, then one per tag."""
        names = self._names
        tokens = [self._context.codec.tag_token(t) for t in tags]  # keyed digests if encrypted
        return tokens, [names.key_version(key), names.epoch_of(key), *map(names.tag, tokens)]

    def _lease_op(self, key: str, tags: Sequence[str]) -> Op[object | None]:
        tokens, wanted = self._lease_keys(key, tags)
        values = yield self._mget_step(wanted)  # per slot, pipelined per node, on a cluster
        return _lease(key, tokens, values)

    def _set_op(self, key: str, entry: Entry, lease: object | None) -> Op[bool]:
        px = self._px(entry)
        if px is None:
            return True  # already past its end: nothing worth storing
        data = self._context.codec.encode(entry, key=key)
        if not isinstance(lease, rs.RedisLease):
            lease = None
        if lease is None and not entry.tags:
            # An unleased write is an overwrite: bump the key version so a load that began
            # before it cannot store its older result over it (one pipelined round trip).
            calls: list[Call] = [("SET", key, rs.UNTAGGED + data, *(("PX", px) if px else ()))]
            calls += self._void_calls(key)
            yield lambda s: _pipeline(s, calls)
            return True
        args = yield from self._set_args(key, entry, lease, data, px)
        if args is None:
            return False
        stored = yield lambda s: s.c.evalsha(_SHA["set"], *args)
        if lease is None and stored:
            void = self._void_calls(key)
            yield lambda s: _pipeline(s, void)
        return bool(stored)

    def _void_calls(self, key: str) -> list[Call]:
        """Commands that void every lease taken on ``key`` so far."""
        kv = self._names.key_version(key)
        return [("INCR", kv), ("PEXPIRE", kv, rs.KEY_VERSION_TTL_MS)]

    def _set_args(
        self, key: str, entry: Entry, lease: rs.RedisLease | None, data: bytes, px: int
    ) -> Op[list[Any] | None]:
        """EVALSHA arguments of the set script, or None when a cluster pre-check refuses."""
        names = self._names
        tags = [self._context.codec.tag_token(t) for t in entry.tags]
        leased = dict(zip(lease.tags, lease.tag_versions, strict=True)) if lease else {}
        versions: list[Any] = [leased.get(t, b"") for t in tags]
        keys = [key, names.key_version(key)]
        prefix = names.tag_prefix
        if self.cluster:
            current = yield from self._ensure_tags_op(tags, px, key)
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

    def _ensure_tags_op(
        self, tokens: Sequence[str], px: int, key: str | None = None
    ) -> Op[list[bytes]]:
        """``[epoch of key, *versions]`` as found (``b"0"``: missing, now created at 1).

        Missing tag versions are created and every version's TTL is stretched to ``px``
        (see ``_redis_scripts``); without ``key`` the epoch is not read (``b"0"``). On a
        cluster the counters live in many slots: one script call per slot, pipelined.
        """
        names = self._names
        tag_keys = [names.tag(t) for t in tokens]
        if not self.cluster:
            wanted = [names.epoch, *tag_keys]
            found = yield lambda s: s.c.evalsha(_SHA["ensure_tags"], len(wanted), *wanted, px)
            return [_bytes(v) for v in found]
        groups = rs.slot_groups(tag_keys)
        calls: list[Call] = [("GET", names.epoch_of(key))] if key is not None else []
        for group in groups:
            part = [tag_keys[i] for i in group]
            # the script reads KEYS[1] as the epoch: the group's first counter stands in
            calls.append(("EVALSHA", _SHA["ensure_tags"], len(part) + 1, part[0], *part, px))
        results = yield lambda s: _pipeline(s, calls)
        out = [_bytes(results[0] or b"0") if key is not None else b"0"] + [b"0"] * len(tokens)
        for group, found in zip(groups, results[len(calls) - len(groups) :], strict=True):
            for i, value in zip(group, found[1:], strict=True):
                out[1 + i] = _bytes(value)
        return out

    def _delete_prefix_op(self, prefix: str) -> Op[int]:
        # Epoch first: a load that began before this call may not write afterwards.
        bump: list[Call] = []
        for epoch in self._names.epochs:
            bump += [("INCR", epoch), ("PEXPIRE", epoch, rs.MARKER_TTL_MS)]
        yield lambda s: _pipeline(s, bump)
        pattern = rs.glob_escape(prefix) + "*"
        keys = yield lambda s: _scan(s, pattern)
        removed = 0
        for i in range(0, len(keys), _SCAN_BATCH):
            batch = keys[i : i + _SCAN_BATCH]
            calls: list[Call] = [("UNLINK", k) for k in batch]
            results = yield functools.partial(_pipeline, calls=calls)
            removed += sum(int(r) for r in results)
        return removed

    # -- helpers -----------------------------------------------------------------------------
    def _health(self) -> rn.NodeHealth:
        """The per-node breakers of a cluster tier (see ``_redis_nodes``)."""
        nodes = self._nodes
        if nodes is None:
            nodes = self._nodes = rn.NodeHealth()
        return nodes

    def _px(self, entry: Entry) -> int | None:
        """Physical TTL in ms (0: none), or None when the entry is already past its end."""
        remaining = entry.keep_for(self._context.clock.time(), self.ttl)
        if remaining is None:
            return 0
        if remaining <= 0:
            return None
        return max(1, math.ceil(remaining * 1000))

    def _load(self, raw: bytes, key: str, now: float | None = None) -> Entry | None:
        try:
            data, _ = rs.split_stored(raw)
        except DeserializationError:
            self.decode_errors += 1
            return None
        return self._decode(data, key, now)

    def _decode(self, data: bytes, key: str, now: float | None = None) -> Entry | None:
        """The live entry stored as ``data`` (None: gone, or not ours: counted)."""
        try:
            entry = self._context.codec.decode(data, key=key)
        except DeserializationError:
            self.decode_errors += 1
            return None
        end = entry.stale_until if entry.stale_until is not None else entry.expires
        if end is None:
            return entry
        return entry if (self._context.clock.time() if now is None else now) < end else None

    # -- public async API --------------------------------------------------------------------
    async def get(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
        if self.cluster:
            return await rn.guarded(self, key, "get", self._get(key, tags))
        return await self._get(key, tags)

    async def _get(self, key: str, tags: Sequence[str] | None) -> Entry | None:
        sides = self._sides
        if sides is None or tags or (self.cluster and not self.coalesce):
            return await self._run("get", lambda: self._get_op(key))
        # The hottest remote path, inlined: a plain GET, or a place in the loop turn's MGET
        # when other reads are in flight. Only when the stored header says the entry is
        # tagged (and the caller did not say so) is the tag check a second trip.
        try:
            if self.coalesce:
                raw = await self._coalescer().read(key, self._send_batch, self._get_alone)
            else:
                raw = await self._get_alone(key)
        except (RedisError, OSError, TimeoutError) as exc:
            raise TierError(self.name, "get", exc) from exc
        if raw is None:
            return None
        if isinstance(raw, Exception):  # its node's part of a cluster batch failed
            raise TierError(self.name, "get", raw) from raw
        if raw[:1] == rs.UNTAGGED:
            return self._decode(raw[1:], key)
        found = await self._run("get", lambda: self._fresh_op([key], [raw]))
        return found.get(key)

    def _coalescer(self) -> ReadCoalescer:
        """This event loop's read batches."""
        coalescers = self._coalescers
        if coalescers is None:
            coalescers = self._coalescers = PerLoop(ReadCoalescer, _drop)
        return coalescers.get()

    async def _get_alone(self, key: str) -> Any:
        """One GET (the uncoalesced read; driver errors are the caller's to translate)."""
        side = self._sides.get()  # type: ignore[union-attr]
        async with _timeout(self._op_timeout):
            return await side.c.get(key)

    async def _send_batch(self, keys: Sequence[str]) -> Any:
        """One MGET of a coalesced batch (per slot, pipelined per node, on a cluster)."""
        side = self._sides.get()  # type: ignore[union-attr]
        if self.cluster:  # per node: a failing node fails only its own keys' reads
            return await rn.send_batch(self, side.c, keys)
        async with _timeout(self._op_timeout):
            return await side.c.mget(keys)

    async def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        if self.cluster and self._sides is not None:
            return await rn.get_many(self, keys)
        return await self._run("get_many", lambda: self._get_many_op(keys))

    async def lease(self, key: str, tags: Sequence[str]) -> object | None:
        if self.cluster or not self.coalesce or self._sides is None:
            return await self._run("lease", lambda: self._lease_op(key, tags))
        tokens, wanted = self._lease_keys(key, tags)  # one MGET, coalesced like reads
        try:
            values = await self._coalescer().read_keys(wanted, self._send_batch)
        except (RedisError, OSError, TimeoutError) as exc:
            raise TierError(self.name, "lease", exc) from exc
        return _lease(key, tokens, values)

    async def set(self, key: str, entry: Entry, lease: object | None = None) -> bool:
        call = self._run("set", lambda: self._set_op(key, entry, lease))
        return await (rn.guarded(self, key, "set", call) if self.cluster else call)

    async def set_many(self, entries: Mapping[str, Entry]) -> None:
        progress = rb.Progress(len(entries))
        try:
            await self._run("set_many", lambda: rb.set_many_op(self, entries, progress))
        except TierError:
            self.dropped_writes += progress.total - progress.done
            raise

    async def delete_many(self, keys: Sequence[str]) -> int:
        progress = rb.Progress(len(keys))
        try:
            return await self._run("delete_many", lambda: rb.delete_many_op(self, keys, progress))
        except TierError:
            self.dropped_writes += progress.total - progress.done
            raise

    async def delete_prefix(self, prefix: str) -> int:
        return await self._run("delete_prefix", lambda: self._delete_prefix_op(prefix))

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        await self._run("invalidate_tags", lambda: rb.invalidate_tags_op(self, tags))

    async def clear(self) -> None:
        await self.delete_prefix(self._context.namespace + ":")

    async def scan_keys(self, prefix: str, cursor: str, count: int) -> tuple[list[str], str]:
        """One Redis SCAN step (see ``core.tier.KeyScanner``); cluster mode lists every match."""
        pattern = rs.glob_escape(prefix) + "*"

        def op() -> Op[tuple[list[str], str]]:
            if self.cluster:  # no single cursor across nodes: one listing, paged by offset
                keys = sorted(_text(k) for k in (yield lambda s: _scan(s, pattern)))
                start = int(cursor or 0)
                more = start + count < len(keys)
                return keys[start : start + count], str(start + count) if more else ""
            nxt, keys = yield lambda s: s.c.scan(int(cursor or 0), match=pattern, count=count)
            return [_text(k) for k in keys], str(nxt) if int(nxt) else ""

        return await self._run("scan", op)

    # -- public sync API ---------------------------------------------------------------------
    def get_sync(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
        side = self._sync
        if self.cluster:
            op = functools.partial(self._run_sync, "get", lambda: self._get_op(key))
            return rn.guarded_sync(self, key, "get", op)
        if side is None or tags:
            return self._run_sync("get", lambda: self._get_op(key))
        try:
            raw = side.c.get(key)
        except (RedisError, OSError) as exc:
            raise TierError(self.name, "get", exc) from exc
        if raw is None:
            return None
        if raw[:1] != rs.UNTAGGED:
            return self._run_sync("get", lambda: self._get_op(key))
        return self._decode(raw[1:], key)

    def get_many_sync(self, keys: Sequence[str]) -> dict[str, Entry]:
        if self.cluster and self._sync is not None:
            return rn.get_many_sync(self, keys)
        return self._run_sync("get_many", lambda: self._get_many_op(keys))

    def lease_sync(self, key: str, tags: Sequence[str]) -> object | None:
        return self._run_sync("lease", lambda: self._lease_op(key, tags))

    def set_sync(self, key: str, entry: Entry, lease: object | None = None) -> bool:
        op = functools.partial(self._run_sync, "set", lambda: self._set_op(key, entry, lease))
        return rn.guarded_sync(self, key, "set", op) if self.cluster else op()

    def set_many_sync(self, entries: Mapping[str, Entry]) -> None:
        progress = rb.Progress(len(entries))
        try:
            self._run_sync("set_many", lambda: rb.set_many_op(self, entries, progress))
        except TierError:
            self.dropped_writes += progress.total - progress.done
            raise

    def delete_many_sync(self, keys: Sequence[str]) -> int:
        progress = rb.Progress(len(keys))
        try:
            return self._run_sync("delete_many", lambda: rb.delete_many_op(self, keys, progress))
        except TierError:
            self.dropped_writes += progress.total - progress.done
            raise

    def delete_prefix_sync(self, prefix: str) -> int:
        return self._run_sync("delete_prefix", lambda: self._delete_prefix_op(prefix))

    def invalidate_tags_sync(self, tags: Sequence[str]) -> None:
        self._run_sync("invalidate_tags", lambda: rb.invalidate_tags_op(self, tags))

    def clear_sync(self) -> None:
        self.delete_prefix_sync(self._context.namespace + ":")

    # -- atomic read-modify-write (``_redis_atomic``; used by add/incr/touch) -------------------
    async def read_versioned(self, key: str) -> tuple[Entry | None, object]:
        return await self._run("read_versioned", lambda: ra.read_versioned_op(self, key))

    async def compare_and_set(self, key: str, token: object, entry: Entry) -> bool:
        return await self._run("cas", lambda: ra.compare_and_set_op(self, key, token, entry))

    def read_versioned_sync(self, key: str) -> tuple[Entry | None, object]:
        return self._run_sync("read_versioned", lambda: ra.read_versioned_op(self, key))

    def compare_and_set_sync(self, key: str, token: object, entry: Entry) -> bool:
        return self._run_sync("cas", lambda: ra.compare_and_set_op(self, key, token, entry))


def _check_url(url: object) -> None:
    """A URL redis-py would refuse only when connecting (into a caller): refuse it here."""
    if not isinstance(url, str):
        raise ConfigError(f"RedisTier url must be a string, not {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"RedisTier url must start with redis://, rediss:// or unix://: {url!r}")
    try:
        parts.port  # noqa: B018  (raises ValueError when out of range)
    except ValueError as exc:
        raise ConfigError(f"RedisTier url has a bad port: {url!r} ({exc})") from exc


def _lease(key: str, tokens: list[str], values: Sequence[bytes | None]) -> rs.RedisLease:
    """The lease of ``key`` from the values ``_lease_keys`` names (missing: ``b"0"``)."""
    kv, epoch, *versions = values
    return rs.RedisLease(
        key, kv or b"0", epoch or b"0", tuple(tokens), tuple(v or b"0" for v in versions)
    )


def _bytes(value: Any) -> bytes:
    """A script's reply item as bytes (integers come back as ints)."""
    return value if isinstance(value, bytes) else str(value).encode()


def _version(value: bytes | None) -> int:
    """A tag counter as an int: -1 when missing or unreadable (it then matches no entry)."""
    try:
        return -1 if value is None else int(value)
    except ValueError:
        return -1


def _text(key: bytes | str) -> str:
    return key.decode() if isinstance(key, bytes) else key


def _keep(side: _Side) -> None:
    """A caller's client is the caller's to close."""


def _drop(coalescer: ReadCoalescer) -> None:
    """A loop's batches end with it: nothing to release."""


def _abandon(side: _Side) -> None:
    abandon(side.c)
