"""``Entries``: how a cache turns a value and its per-call options into an ``Entry``.

Shared by the async client, ``cache.sync`` and the primitives, so an option
given to one of them means the same in all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..core.clock import Clock
from ..core.codec import EntryCodec
from ..core.entry import Entry
from ..core.errors import CacheKeyError, ConfigError
from ..core.keys import MAX_KEY_LENGTH, check_text
from .policy import UNSET, EntryPolicy


def check_tags(tags: object) -> tuple[str, ...]:
    """``tags`` as a tuple of non-empty strings, checked at the call (never a tier's failure).

    Raises:
        ConfigError: ``tags`` is a single string or not iterable.
        CacheKeyError: a tag is not a non-empty string (as ``invalidate(tags=...)`` says).
    """
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise ConfigError(f"tags must be a list of strings, not {tags!r}")
    checked = tuple(tags)
    for tag in checked:
        if not isinstance(tag, str) or not tag:
            raise CacheKeyError(f"each tag must be a non-empty string, not {tag!r}")
        if len(tag) > MAX_KEY_LENGTH:
            raise CacheKeyError(
                f"a tag is {len(tag)} characters long; the limit is {MAX_KEY_LENGTH}"
            )
        check_text(tag, "a tag")
    return checked


class Entries:
    """The cache's default ``EntryPolicy`` and the making of entries under it."""

    __slots__ = ("clock", "codec", "policy")

    def __init__(self, policy: EntryPolicy, codec: EntryCodec, clock: Clock) -> None:
        self.policy = policy
        self.codec = codec
        self.clock = clock

    def entry_policy(
        self,
        ttl: Any = UNSET,
        refresh_after: Any = UNSET,
        stale_ttl: Any = UNSET,
        cache_none: bool | None = None,
        store_if: Callable[[Any], bool] | None = None,
    ) -> EntryPolicy:
        """The cache's default entry policy with any of its fields overridden."""
        base = self.policy
        if (
            ttl is UNSET
            and refresh_after is UNSET
            and stale_ttl is UNSET
            and cache_none is None
            and store_if is None
        ):
            return base
        return EntryPolicy(
            base.ttl if ttl is UNSET else ttl,
            base.refresh_after if refresh_after is UNSET else refresh_after,
            base.stale_ttl if stale_ttl is UNSET else stale_ttl,
            base.jitter,
            base.cache_none if cache_none is None else cache_none,
            store_if,
        )

    def new_entry(self, value: Any, policy: EntryPolicy, tags: Sequence[str]) -> Entry:
        """An entry for an explicit write; ``SerializationError`` before anything is written."""
        tag_tuple = check_tags(tags)
        payload = self.codec.dumps_value(value)
        return policy.make(value, self.clock.time(), tag_tuple, payload=payload)


def check_plugins(serializer: object, envelopes: object, clock: object) -> None:
    """Refuse, where the cache is built, plug-ins that would only fail inside every call."""
    if isinstance(envelopes, (str, bytes)) or not isinstance(envelopes, Sequence):
        raise ConfigError(f"envelopes must be a list of Envelope objects, not {envelopes!r}")
    for envelope in envelopes:
        if not (
            callable(getattr(envelope, "seal", None)) and callable(getattr(envelope, "open", None))
        ):
            raise ConfigError(f"envelopes must be Envelope objects (seal/open), not {envelope!r}")
    for name, value, methods in (
        ("serializer", serializer, ("dumps", "loads")),
        ("clock", clock, ("time",)),
    ):
        if value is not None and not all(callable(getattr(value, m, None)) for m in methods):
            wanted = ", ".join(f".{m}()" for m in methods)
            raise ConfigError(f"{name} must be an object with {wanted}, not {value!r}")


__all__ = ["Entries", "check_plugins", "check_tags"]
