"""Byte envelopes applied around a serialized entry: compression, HMAC signing, encryption.

Each envelope is a small object with ``seal(bytes) -> bytes`` and
``open(bytes) -> bytes``; ``open`` raises ``DeserializationError`` on anything
it did not seal itself, so tampered or foreign bytes become a cache miss.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import zlib
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from .errors import ConfigError, DeserializationError

_RAW, _ZLIB, _ZSTD = b"R", b"Z", b"S"
_TAG_DIGEST = b"stratacache tag digest v1"


@runtime_checkable
class Envelope(Protocol):
    """A reversible transformation of stored bytes."""

    def seal(self, data: bytes) -> bytes: ...

    def open(self, data: bytes) -> bytes: ...


#: what ``Compression`` inflates at most by default: Redis's own limit on one value
MAX_INFLATED = 512 << 20


class Compression:
    """Compress payloads of at least ``threshold`` bytes with zlib or zstd (a 1-byte tag says which).

    Args:
        algorithm: ``"zlib"`` (standard library) or ``"zstd"`` (``stratacache[zstd]``).
        threshold: payloads shorter than this many bytes are stored as they are.
        level: compression level (None: the algorithm's default).
        max_size: stored bytes that would inflate past this many bytes are refused as a
            miss (``DeserializationError``) instead of being inflated: a guard against
            decompression bombs written by someone who can write to the storage.
    """

    def __init__(
        self,
        algorithm: str = "zlib",
        threshold: int = 1024,
        level: int | None = None,
        max_size: int = MAX_INFLATED,
    ):
        if algorithm not in ("zlib", "zstd"):
            raise ConfigError(f"compression must be 'zlib' or 'zstd', not {algorithm!r}")
        if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 0:
            raise ConfigError(f"compression threshold must be an int >= 0, not {threshold!r}")
        if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 1:
            raise ConfigError(f"compression max_size must be an int >= 1, not {max_size!r}")
        self.threshold = threshold
        self.max_size = max_size
        self._tag = _ZLIB if algorithm == "zlib" else _ZSTD
        self._zstd_c: Any = None
        self._zstd_d: Any = None
        self._level = level
        if algorithm == "zstd":
            try:
                import zstandard
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ConfigError(
                    "zstd compression needs: pip install 'stratacache[zstd]'"
                ) from exc
            self._zstd_c = zstandard.ZstdCompressor(level=level or 3)
            self._zstd_d = zstandard.ZstdDecompressor()

    def bound(self, size: int) -> int:
        """The most bytes a ``size``-byte payload becomes (zlib and zstd grow by far less)."""
        return size + size // 256 + 129

    def seal(self, data: bytes) -> bytes:
        if len(data) < self.threshold:
            return _RAW + data
        if self._tag == _ZLIB:
            return _ZLIB + zlib.compress(data, self._level if self._level is not None else 6)
        return _ZSTD + bytes(self._zstd_c.compress(data))

    def open(self, data: bytes) -> bytes:
        tag, body = data[:1], data[1:]
        limit = self.max_size
        try:
            if tag == _RAW:
                return body
            if tag == _ZLIB:
                inflater = zlib.decompressobj()
                out = inflater.decompress(body, limit + 1)
                if len(out) <= limit and not inflater.eof:
                    raise ValueError("truncated zlib stream")
            elif tag == _ZSTD:
                if self._zstd_d is None:
                    import zstandard

                    self._zstd_d = zstandard.ZstdDecompressor()
                # stream_reader honours the read bound even when the frame announces a size
                with self._zstd_d.stream_reader(body, read_across_frames=False) as reader:
                    out = reader.read(limit + 1)
            else:
                raise DeserializationError("stored bytes carry an unknown compression tag")
        except DeserializationError:
            raise
        except Exception as exc:
            raise DeserializationError(f"cannot decompress stored bytes: {exc!r}") from exc
        if len(out) > limit:
            raise DeserializationError(f"stored bytes inflate to larger than {limit} bytes")
        return bytes(out)


class HMACSigner:
    """Prefix an HMAC-SHA256 so only holders of the key can write values this process accepts.

    Several keys may be given: the first signs, all verify (key rotation).
    """

    _SIZE = 32

    def __init__(self, keys: bytes | str | Sequence[bytes | str]):
        raw = [keys] if isinstance(keys, (bytes, str)) else list(keys)
        if not raw or any(len(k) < 16 for k in raw):
            raise ConfigError("signing keys must be at least 16 bytes long")
        self._keys = [k.encode() if isinstance(k, str) else bytes(k) for k in raw]

    def bound(self, size: int) -> int:
        """The sealed size of a ``size``-byte payload."""
        return size + self._SIZE

    def seal(self, data: bytes) -> bytes:
        return hmac.new(self._keys[0], data, hashlib.sha256).digest() + data

    def open(self, data: bytes) -> bytes:
        mac, body = data[: self._SIZE], data[self._SIZE :]
        for key in self._keys:
            if hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()):
                return body
        raise DeserializationError("signature mismatch: value was not written by a trusted key")


class FernetEncryption:
    """Encrypt and authenticate with Fernet (``cryptography``); several keys allow rotation."""

    def __init__(self, keys: bytes | str | Sequence[bytes | str]):
        try:
            from cryptography.fernet import Fernet, MultiFernet
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError("encryption needs: pip install 'stratacache[crypto]'") from exc
        raw = [keys] if isinstance(keys, (bytes, str)) else list(keys)
        if not raw:
            raise ConfigError("at least one encryption key is required")
        try:
            self._fernet = MultiFernet([Fernet(k) for k in raw])
        except ValueError as exc:
            raise ConfigError(f"invalid Fernet key: {exc}") from exc
        self._digest_keys = [
            hmac.new(k.encode() if isinstance(k, str) else bytes(k), _TAG_DIGEST, "sha256").digest()
            for k in raw
        ]

    def digest_keys(self) -> list[bytes]:
        """Secrets derived from the keys (first = current) for keyed digests of stored metadata."""
        return list(self._digest_keys)

    def bound(self, size: int) -> int:
        """The token size of a ``size``-byte payload (version, time, IV, padding, HMAC, base64)."""
        return 4 * math.ceil((57 + 16 * (size // 16 + 1)) / 3)

    def seal(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def open(self, data: bytes) -> bytes:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(data)
        except InvalidToken as exc:
            raise DeserializationError("cannot decrypt stored bytes") from exc
