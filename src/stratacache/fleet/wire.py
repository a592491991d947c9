"""The bus's wire format: one msgpack list per ``Invalidation`` (never pickle)."""

from __future__ import annotations

import logging

import msgpack

from ..core.fleet import Invalidation

log = logging.getLogger("stratacache")

_FORMAT = 1  # first field of every message; a receiver treats other formats as "clear"


def encode(message: Invalidation) -> bytes:
    """The wire form of ``message`` (msgpack list; never pickle)."""
    packed: bytes = msgpack.packb(
        [
            _FORMAT,
            message.origin,
            list(message.keys),
            list(message.tags),
            list(message.prefixes),
            message.clear,
            message.reason,
            message.actor,
            message.at,
            message.generation,
        ],
        use_bin_type=True,
    )
    return packed


def decode(data: bytes) -> Invalidation:
    """Parse a bus message; anything unreadable becomes a conservative *clear*."""
    try:
        fmt, origin, keys, tags, prefixes, clear, reason, actor, at, gen = msgpack.unpackb(
            data, raw=False
        )
        if fmt != _FORMAT:
            raise ValueError(f"unknown bus message format {fmt!r}")
        return Invalidation(
            keys=tuple(str(k) for k in keys),
            tags=tuple(str(t) for t in tags),
            prefixes=tuple(str(p) for p in prefixes),
            clear=bool(clear),
            reason=reason,
            origin=str(origin),
            actor=actor,
            at=float(at),
            generation=int(gen),
        )
    except Exception as exc:  # a message we cannot read may have been an invalidation
        log.warning("stratacache: unreadable bus message, dropping local tiers: %r", exc)
        return Invalidation(clear=True, reason="unreadable bus message")


__all__ = ["decode", "encode"]
