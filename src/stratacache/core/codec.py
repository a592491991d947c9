"""``EntryCodec``: an ``Entry`` to bytes and back, for tiers that store bytes.

Layout: a msgpack array ``[FORMAT, binding, created, expires, refresh_after,
stale_until, cost, tags, tag_versions, value]`` where ``binding`` is a
16-byte digest of the full key the entry is stored under (namespace and
generation included), then the envelopes (compression, signing, encryption)
applied in order. With the default ``MsgpackSerializer`` the value is the
serializer's msgpack document itself, inline (format 3): the entry is written
by concatenating bytes and read by one ``unpackb`` (one pass, no copy of the
value's bytes). Other serializers store their output as a msgpack ``bin``
(format 2, also still read for entries written before format 3). Decoding
anything else raises ``DeserializationError``, which tiers turn into a miss.

Because the binding and the freshness metadata sit *inside* the signed or
encrypted bytes, a signature or ciphertext copied from one key to another
(in Redis, SQL or any byte store) no longer decodes: ``decode(data, key=...)``
raises ``MovedValueError`` and counts it in ``moved_values``.

Value size: ``limit_to(tiers)`` takes the smallest ``max_value_size`` of the
byte-storing tiers and ``dumps_value`` refuses (``SerializationError``, at the
call site, before any write) a value whose stored form could exceed it, the
envelopes' worst-case growth and ``METADATA_RESERVE`` bytes of metadata counted.

With an encryption envelope, ``tag_token`` turns a tag into a keyed digest so
tiers that store tags beside the value (tag-version keys, headers, columns)
never hold a tag in plaintext.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Any

import msgpack

from .entry import Entry, trusted
from .envelope import Envelope
from .errors import ConfigError, DeserializationError, MovedValueError, SerializationError
from .serializer import MsgpackSerializer, Serializer

#: the format of entries whose value is inline msgpack (the default serializer)
FORMAT = 3
#: the format of entries whose value is the serializer's bytes as a msgpack ``bin``
BYTES_FORMAT = 2
_UNBOUND = b""
#: msgpack's header of a 10-element array (a fixarray: one byte)
_ARRAY_10 = b"\x9a"
#: bytes of every stored entry's form kept for its metadata (times, binding, tags, header)
METADATA_RESERVE = 4096
#: what one Redis string may hold (``proto-max-bulk-len``)
MAX_REDIS_VALUE = 512 << 20
#: what one SQLite value may hold (``SQLITE_MAX_LENGTH``) / one PostgreSQL ``bytea``
MAX_SQLITE_VALUE = 1_000_000_000
MAX_POSTGRES_VALUE = (1 << 30) - 1
#: memcached's default item size (``-I``); aiocache's memcached backend is held to it
MAX_MEMCACHED_VALUE = 1 << 20


def check_value_size(name: str, value: object) -> int:
    """A tier's ``max_value_size`` as a positive int of bytes, else ``ConfigError``."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= METADATA_RESERVE:
        raise ConfigError(f"{name} must be an int of bytes > {METADATA_RESERVE}, not {value!r}")
    return value


def sealed_bound(envelopes: Sequence[Envelope], size: int) -> int:
    """The most bytes ``size`` bytes can become through ``envelopes`` (worst case)."""
    for envelope in envelopes:
        bound = getattr(envelope, "bound", None)
        size = int(bound(size)) if callable(bound) else 2 * size + 4096
    return size


def key_binding(key: str) -> bytes:
    """The 16-byte digest of a full key recorded inside every entry stored under it."""
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class EntryCodec:
    """Encode/decode entries with one serializer and a chain of envelopes."""

    def __init__(
        self, serializer: Serializer | None = None, envelopes: Sequence[Envelope] = ()
    ) -> None:
        self.serializer: Serializer = serializer or MsgpackSerializer()
        self.envelopes = tuple(envelopes)
        #: entries refused because they were sealed for another key (copied in storage)
        self.moved_values = 0
        #: largest serialized value accepted (None: no byte-storing tier states a limit)
        self.max_value_size: int | None = None
        self._limited_by = ""
        self._tag_keys: list[bytes] = []
        #: the value is inline msgpack only with the stock serializer (a subclass may differ)
        self._inline = type(self.serializer) is MsgpackSerializer
        self._ext_hook: Any = (
            self.serializer._ext_hook if self._inline else msgpack.ExtType  # type: ignore[attr-defined]
        )
        self._bindings: dict[str, bytes] = {}
        for envelope in self.envelopes:
            digest_keys = getattr(envelope, "digest_keys", None)
            if callable(digest_keys):
                self._tag_keys = list(digest_keys())
                break

    @property
    def hides_tags(self) -> bool:
        """True when tags are stored as keyed digests (an encryption envelope is on)."""
        return bool(self._tag_keys)

    def tag_token(self, tag: str) -> str:
        """What a tier stores for ``tag``: the tag itself, or its keyed digest under encryption."""
        if not self._tag_keys:
            return tag
        return _token(self._tag_keys[0], tag)

    def tag_tokens(self, tag: str) -> list[str]:
        """Every token ``tag`` may be stored as (one per encryption key kept for rotation)."""
        if not self._tag_keys:
            return [tag]
        return list(dict.fromkeys(_token(k, tag) for k in self._tag_keys))

    def limit_to(self, tiers: Iterable[object]) -> None:
        """Fit ``max_value_size`` to the smallest ``max_value_size`` among ``tiers``.

        Raises:
            ConfigError: that tier's limit leaves no room for a value once the envelopes'
                growth and the metadata reserve are counted.
        """
        limits = [
            (limit, str(getattr(tier, "name", type(tier).__name__)))
            for tier in tiers
            if isinstance(limit := getattr(tier, "max_value_size", None), int)
        ]
        if not limits:
            self.max_value_size, self._limited_by = None, ""
            return
        limit, name = min(limits)
        low, high = -1, limit  # largest n with sealed_bound(n + reserve) <= limit
        while low < high:
            mid = (low + high + 1) // 2
            if sealed_bound(self.envelopes, mid + METADATA_RESERVE) <= limit:
                low = mid
            else:
                high = mid - 1
        if low < 1:
            raise ConfigError(f"tier {name!r} max_value_size={limit} leaves no room for a value")
        self.max_value_size, self._limited_by = low, f"tier {name!r} keeps at most {limit} bytes"

    def dumps_value(self, value: Any) -> bytes:
        """Serialize a bare value.

        Raises:
            SerializationError: a type that cannot round-trip, or a value larger than
                ``max_value_size`` once serialized.
        """
        data = self.serializer.dumps(value)
        limit = self.max_value_size
        if limit is not None and len(data) > limit:
            raise SerializationError(
                f"value is {len(data)} bytes serialized; the limit is {limit} "
                f"({self._limited_by} per entry, envelopes and metadata included)"
            )
        return data

    def encode(
        self, entry: Entry, value_bytes: bytes | None = None, *, key: str | None = None
    ) -> bytes:
        """The stored form of ``entry``, bound to the full ``key`` it is stored under.

        Args:
            entry: the entry to store.
            value_bytes: the serialized value when already known (else ``entry.payload`` or
                a fresh serialization).
            key: the full key (``namespace:...``); ``decode`` with another key refuses the
                bytes. ``None`` stores an unbound entry, which only a keyless ``decode`` accepts.
        """
        if value_bytes is None:
            value_bytes = entry.payload
        if value_bytes is None:
            value_bytes = self.serializer.dumps(entry.value)
        versions = entry.tag_versions
        head: bytes = msgpack.packb(
            [
                FORMAT if self._inline else BYTES_FORMAT,
                _UNBOUND if key is None else self._binding(key),
                entry.created,
                entry.expires,
                entry.refresh_after,
                entry.stale_until,
                entry.cost,
                entry.tags,
                versions if type(versions) is dict else dict(versions),
            ],
            use_bin_type=True,
        )
        # the 9 fields are a fixarray: one header byte, rewritten to say 10 items; with the
        # stock serializer its output (one msgpack document) is the 10th item as it is
        tail = value_bytes if self._inline else msgpack.packb(value_bytes, use_bin_type=True)
        data = _ARRAY_10 + head[1:] + tail
        for envelope in self.envelopes:
            data = envelope.seal(data)
        return data

    def _binding(self, key: str) -> bytes:
        """``key_binding(key)``, memoized for the keys seen last (a digest per read adds up)."""
        bindings = self._bindings
        binding = bindings.get(key)
        if binding is None:
            if len(bindings) >= _BINDINGS_KEPT:
                bindings.clear()
            binding = bindings[key] = key_binding(key)
        return binding

    def decode(self, data: bytes, *, key: str | None = None) -> Entry:
        """The entry stored as ``data`` under the full ``key``.

        Raises:
            MovedValueError: the entry was sealed for another key (counted in ``moved_values``).
            DeserializationError: the bytes are not an entry of ours (corrupt, foreign,
                tampered, from another format or another signing/encryption key).
        """
        if type(data) is not bytes and not isinstance(data, bytes):
            raise DeserializationError(f"stored data must be bytes, not {type(data).__name__}")
        if self.envelopes:
            for envelope in reversed(self.envelopes):
                data = envelope.open(data)
        try:
            # one pass: with the stock serializer an inline value decodes with the metadata
            (
                fmt,
                binding,
                created,
                expires,
                refresh_after,
                stale_until,
                cost,
                tags,
                versions,
                value,
            ) = msgpack.unpackb(
                data, raw=False, use_list=True, strict_map_key=False, ext_hook=self._ext_hook
            )
        except DeserializationError:
            raise
        except Exception as exc:
            raise DeserializationError(f"not a stratacache entry: {exc!r}") from exc
        if type(binding) is not bytes:
            raise DeserializationError(f"unsupported entry format {fmt!r}")
        if fmt == BYTES_FORMAT and type(value) is bytes:
            value = self.serializer.loads(value)
        elif fmt != FORMAT or not self._inline:
            raise DeserializationError(f"unsupported entry format {fmt!r}")
        if key is not None and not hmac.compare_digest(binding, self._binding(key)):
            self.moved_values += 1
            raise MovedValueError(f"entry under {key!r} was sealed for another key")
        # msgpack yields exact ints, floats, strs, lists and dicts (never bool for a number):
        # exact type checks say what ``isinstance`` would, at a fraction of the cost
        if not (
            type(created) in _NUMBER
            and type(expires) in _OPTIONAL_NUMBER
            and type(refresh_after) in _OPTIONAL_NUMBER
            and type(stale_until) in _OPTIONAL_NUMBER
            and type(cost) in _NUMBER
            and type(tags) is list
            and (not tags or all(type(t) is str for t in tags))
            and type(versions) is dict
            and (not versions or _versions_ok(versions))
        ):
            raise DeserializationError("entry metadata has the wrong types")
        return Entry(  # positionally: this runs on every read of a byte-storing tier
            value,
            created,
            expires,
            refresh_after,
            stale_until,
            cost,
            tuple(tags),
            versions,
            len(data),
        )

    def decode_many(
        self, keys: Sequence[str], blobs: Sequence[bytes], start: int = 0
    ) -> list[Entry | None]:
        """``decode(blob[start:], key=key)`` of each pair, in one loop; None where it raises.

        Why: a batch read decodes many entries; with no envelope and the stock serializer
        the common form is read here without a call per entry into ``decode`` and built
        without ``Entry.__init__`` (fields checked once, as ``decode`` checks them).
        Anything off that path (another format, another key, odd metadata) goes through
        ``decode`` itself, which decides (and counts a moved value) as for a single read.
        """
        if self.envelopes or not self._inline:
            return [
                self._decode_or_none(blob[start:], key)
                for key, blob in zip(keys, blobs, strict=True)
            ]
        unpack, ext_hook = msgpack.unpackb, self._ext_hook
        bindings, binding_of = self._bindings, self._binding
        number, optional = _NUMBER, _OPTIONAL_NUMBER
        out: list[Entry | None] = []
        for key, blob in zip(keys, blobs, strict=True):
            data = blob[start:]
            try:
                (
                    fmt,
                    binding,
                    created,
                    expires,
                    refresh_after,
                    stale_until,
                    cost,
                    tags,
                    versions,
                    value,
                ) = unpack(data, raw=False, use_list=True, strict_map_key=False, ext_hook=ext_hook)
            except Exception:
                out.append(None)  # not an entry of ours (``decode`` says so alike)
                continue
            if (
                fmt == FORMAT
                # an unkeyed digest of the key (no secret): ``==`` is as good as compare_digest
                and binding == (bindings.get(key) or binding_of(key))
                and type(created) in number
                and type(expires) in optional
                and type(refresh_after) in optional
                and type(stale_until) in optional
                and type(cost) in number
                and type(tags) is list
                and (not tags or all(type(t) is str for t in tags))
                and type(versions) is dict
                and (not versions or _versions_ok(versions))
            ):
                out.append(
                    trusted(
                        value,
                        created,
                        expires,
                        refresh_after,
                        stale_until,
                        cost,
                        tuple(tags) if tags else (),
                        versions,
                        len(data),
                    )
                )
            else:
                out.append(self._decode_or_none(data, key))
        return out

    def _decode_or_none(self, data: bytes, key: str) -> Entry | None:
        try:
            return self.decode(data, key=key)
        except DeserializationError:
            return None


def _token(secret: bytes, tag: str) -> str:
    """A keyed 128-bit digest of ``tag`` (hex), the form tags take in storage under encryption."""
    return "~" + hmac.new(secret, tag.encode("utf-8", "surrogatepass"), "sha256").hexdigest()[:32]


_NUMBER = frozenset((int, float))
#: how many key bindings a codec memoizes before starting over
_BINDINGS_KEPT = 4096
_OPTIONAL_NUMBER = frozenset((int, float, type(None)))


def _versions_ok(versions: dict[Any, Any]) -> bool:
    """Tag versions decoded from msgpack: ``str`` tags to ``int`` versions."""
    return all(type(t) is str and type(v) is int for t, v in versions.items())
