"""``AiocacheTier``: any aiocache backend (memory, Redis, memcached) as a stratacache tier.

Values are stored as bytes: ``b"\\x00" + codec_bytes`` untagged, or ``b"\\x01" +
4-byte length + msgpack [tag, version, …] + codec_bytes`` tagged. Tag versions,
key versions and the namespace epoch are plain aiocache keys (``__sc__:…``)
bumped with ``increment``; tag counters get no TTL (a counter restarting at 0
would make outdated entries fresh again).

aiocache offers no server-side scripts, so, unlike ``RedisTier``: a tagged hit
costs a second ``multi_get`` (of its tag versions); a leased ``set`` re-reads the
versions and then writes, which leaves a one-round-trip race window; and
``delete_prefix``/``clear`` work only on backends whose keys can be listed
(memory and Redis). This tier is async-only (no ``SyncTier`` methods); ``cache.sync``
runs it on its own loop.

An aiocache client's connections belong to the event loop that opened them, so
every call runs on the tier's *home* loop, the first one that used it: calls made
on another loop (``cache.sync``'s, a worker thread's) are handed to the home loop
while it runs, and once it has closed (``asyncio.run`` returned) or after a fork,
the next caller's loop becomes home and the client's Redis connections of the old
one are dropped (other drivers' connections are left to their own reconnects).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiocache
import msgpack
from aiocache.serializers import NullSerializer

from ..core.codec import MAX_MEMCACHED_VALUE
from ..core.durations import check_optional
from ..core.entry import Entry
from ..core.errors import ConfigError, DeserializationError, StratacacheError, TierError
from ..core.loops import HomeLoop, abandon, on_fork
from ..core.tier import TierContext

T = TypeVar("T")
KEY_VERSION_TTL = 86_400
#: memcached reads an expiry above 30 days as an absolute Unix time (an entry kept for
#: 31 days would be dead on arrival), so memcached backends keep expiring entries at most
#: this long (entries without expiry stay without)
MEMCACHED_MAX_TTL = 30 * 86_400


@dataclass(frozen=True, slots=True)
class AiocacheLease:
    """Versions read when a load began: key version, namespace epoch, tag versions."""

    key_version: int
    epoch: int
    tags: tuple[str, ...]
    tag_versions: tuple[int, ...]


class AiocacheTier:
    """Adapter making an aiocache ``BaseCache`` a tier (its serializer is set to bytes).

    Args:
        cache: the aiocache cache, e.g. ``aiocache.SimpleMemoryCache()`` or ``RedisCache(...)``.
        ttl: upper bound in seconds on how long an entry is kept.
        name: name in stats and logs (default: ``"aiocache-<backend>"``).
    """

    shared = True

    def __init__(self, cache: Any, *, ttl: float | None = None, name: str | None = None) -> None:
        if not isinstance(cache, aiocache.BaseCache):
            raise ConfigError(f"AiocacheTier needs an aiocache cache, not {type(cache).__name__}")
        ttl = check_optional("AiocacheTier ttl", ttl)
        cache.serializer = NullSerializer(encoding=None)
        self.cache = cache
        self.ttl = ttl
        backend = getattr(cache, "NAME", "cache")
        self.name = name or f"aiocache-{backend}"
        #: the longest relative expiry the backend understands (None: no limit)
        self.max_expiry = MEMCACHED_MAX_TTL if backend == "memcached" else None
        #: bytes one stored entry may take (None: the backend states no limit)
        self.max_value_size = MAX_MEMCACHED_VALUE if backend == "memcached" else None
        self.shared = not hasattr(cache, "_cache")  # the memory backend is per process
        self.decode_errors = 0
        self._context = TierContext(namespace="")
        self._meta = "__sc__::"
        #: the event loop the client's connections live on (see the module docstring)
        self._home = HomeLoop(lambda: abandon(getattr(cache, "client", None)))
        on_fork(self)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, context: TierContext) -> None:
        self._context = context
        self._meta = f"__sc__:{context.namespace}:"

    async def close(self) -> None:
        await self._call("close", self.cache.close)

    # -- reads -------------------------------------------------------------------------------
    async def get(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
        return (await self.get_many([key])).get(key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        if not keys:
            return {}
        raws = await self._call("get_many", self.cache.multi_get, list(keys))
        parts: dict[str, tuple[bytes, list[Any]]] = {}
        for key, raw in zip(keys, raws, strict=True):
            if raw is None:
                continue
            try:
                parts[key] = _split(raw)
            except (DeserializationError, ValueError, TypeError):
                self.decode_errors += 1
        tags = sorted({t for _, pairs in parts.values() for t in pairs[0::2]})
        current = dict(zip(tags, await self._versions(tags), strict=True))
        found = {}
        now = self._context.clock.time()
        for key, (data, pairs) in parts.items():
            if any(current.get(t) != v for t, v in zip(pairs[0::2], pairs[1::2], strict=False)):
                continue
            try:
                entry = self._context.codec.decode(data, key=key)
            except DeserializationError:
                self.decode_errors += 1
                continue
            if not entry.is_gone(now):
                found[key] = entry
        return found

    # -- writes ------------------------------------------------------------------------------
    async def lease(self, key: str, tags: Sequence[str]) -> object | None:
        tags = [self._token(t) for t in tags]
        names = [self._kv(key), self._epoch(), *(self._tag(t) for t in tags)]
        values = await self._call("lease", self.cache.multi_get, names)
        kv, epoch, *versions = (_int(v) for v in values)
        return AiocacheLease(kv, epoch, tuple(tags), tuple(versions))

    async def set(self, key: str, entry: Entry, lease: object | None = None) -> bool:
        ttl = self._ttl(entry)
        if ttl is None:
            return True  # already past its end: nothing worth storing
        tags = [self._token(t) for t in entry.tags]
        if isinstance(lease, AiocacheLease):
            names = [self._kv(key), self._epoch(), *(self._tag(t) for t in tags)]
            kv, epoch, *versions = (
                _int(v) for v in await self._call("set", self.cache.multi_get, names)
            )
            leased = dict(zip(lease.tags, lease.tag_versions, strict=True))
            if (kv, epoch) != (lease.key_version, lease.epoch) or any(
                leased.get(t, v) != v for t, v in zip(tags, versions, strict=True)
            ):
                return False
        else:
            await self._void("set", key)
            versions = await self._versions(tags)
        await self._call(
            "set", self.cache.set, key, self._payload(key, entry, tags, versions), ttl=ttl or None
        )
        return True

    async def set_many(self, entries: Mapping[str, Entry]) -> None:
        tags = sorted({self._token(t) for e in entries.values() for t in e.tags})
        current = dict(zip(tags, await self._versions(tags), strict=True))
        for key, entry in entries.items():  # one TTL per multi_set call: group would not help
            ttl = self._ttl(entry)
            if ttl is not None:
                await self._void("set_many", key)
                toks = [self._token(t) for t in entry.tags]
                payload = self._payload(key, entry, toks, [current[t] for t in toks])
                await self._call("set_many", self.cache.set, key, payload, ttl=ttl or None)

    async def delete_many(self, keys: Sequence[str]) -> int:
        removed = 0
        for key in keys:
            removed += int(await self._call("delete_many", self.cache.delete, key) or 0)
            await self._void("delete_many", key)
        return removed

    async def delete_prefix(self, prefix: str) -> int:
        await self._call("delete_prefix", self.cache.increment, self._epoch())
        keys = await self._keys_with_prefix(prefix)
        removed = 0
        for key in keys:
            removed += int(await self._call("delete_prefix", self.cache.delete, key) or 0)
        return removed

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        codec = self._context.codec
        for tag in dict.fromkeys(x for t in tags for x in codec.tag_tokens(t)):
            await self._call("invalidate_tags", self.cache.increment, self._tag(tag))

    async def clear(self) -> None:
        await self.delete_prefix(self._context.namespace + ":")

    # -- internals ---------------------------------------------------------------------------
    async def _call(self, op: str, fn: Callable[..., Awaitable[T]], *args: Any, **kw: Any) -> T:
        try:
            return await self._home.run(_awaited(fn, *args, **kw))
        except StratacacheError:
            raise
        except Exception as exc:  # aiocache raises whatever its driver raises
            raise TierError(self.name, op, exc) from exc

    async def _void(self, op: str, key: str) -> None:
        """Void every lease taken on ``key`` so far (an overwrite or a delete is coming)."""
        await self._call(op, self.cache.increment, self._kv(key))
        await self._call(op, self.cache.expire, self._kv(key), KEY_VERSION_TTL)

    def after_fork(self) -> None:
        """In a forked child: the parent's loop and connections are not this process's."""
        self._home.forget()

    async def _versions(self, tags: Sequence[str]) -> list[int]:
        if not tags:
            return []
        values = await self._call("tags", self.cache.multi_get, [self._tag(t) for t in tags])
        return [_int(v) for v in values]

    async def _keys_with_prefix(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (unqualified by aiocache's namespace); memory and Redis only."""
        full = self.cache.build_key(prefix)
        strip = len(full) - len(prefix)
        store = getattr(self.cache, "_cache", None)
        if isinstance(store, dict):
            return [k[strip:] for k in list(store) if k.startswith(full)]
        client = getattr(self.cache, "client", None)
        if client is not None and hasattr(client, "scan_iter"):
            pattern = "".join("\\" + c if c in "*?[]\\" else c for c in full) + "*"
            try:
                found = [k async for k in client.scan_iter(match=pattern, count=1000)]
            except Exception as exc:
                raise TierError(self.name, "delete_prefix", exc) from exc
            return [(k.decode() if isinstance(k, bytes) else k)[strip:] for k in found]
        raise StratacacheError(
            f"delete_prefix/clear are not supported by the aiocache backend "
            f"{type(self.cache).__name__}: it cannot list its keys"
        )

    def _ttl(self, entry: Entry) -> float | None:
        """Seconds to keep ``entry`` (0: no expiry), or None when it is already past its end."""
        remaining = entry.keep_for(self._context.clock.time(), self.ttl)
        if remaining is None:
            return 0
        if remaining <= 0:
            return None
        if self.max_expiry is not None:
            remaining = min(remaining, self.max_expiry)
        return float(max(1, math.ceil(remaining)))

    def _payload(self, key: str, entry: Entry, tags: list[str], versions: list[int]) -> bytes:
        data = self._context.codec.encode(entry, key=key)
        if not tags:
            return b"\x00" + data
        header: bytes = msgpack.packb(
            [x for pair in zip(tags, versions, strict=True) for x in pair]
        )
        return b"\x01" + len(header).to_bytes(4, "big") + header + data

    def _token(self, tag: str) -> str:
        """How ``tag`` is stored (a keyed digest under encryption)."""
        return self._context.codec.tag_token(tag)

    def _kv(self, key: str) -> str:
        return self._meta + "keyv:" + key

    def _epoch(self) -> str:
        return self._meta + "epoch"

    def _tag(self, tag: str) -> str:
        return self._meta + "tagv:" + tag


def _int(value: Any) -> int:
    return 0 if value is None else int(value)


def _split(raw: Any) -> tuple[bytes, list[Any]]:
    if not isinstance(raw, (bytes, bytearray)):
        raise DeserializationError("not bytes")
    if raw[:1] == b"\x00":
        return bytes(raw[1:]), []
    if raw[:1] == b"\x01" and len(raw) >= 5:
        n = int.from_bytes(raw[1:5], "big")
        pairs = msgpack.unpackb(raw[5 : 5 + n], raw=False)
        if isinstance(pairs, list) and len(raw) >= 5 + n:
            return bytes(raw[5 + n :]), pairs
    raise DeserializationError("not a stratacache aiocache value")


async def _awaited(fn: Callable[..., Awaitable[T]], *args: Any, **kw: Any) -> T:
    return await fn(*args, **kw)
