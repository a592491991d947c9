"""Entries: per-call options over the cache's defaults, and checks before anything is written."""

from __future__ import annotations

import pytest

import stratacache as sc
from stratacache.core.codec import EntryCodec
from stratacache.core.errors import CacheKeyError, ConfigError, SerializationError
from stratacache.engine.entries import Entries, check_plugins, check_tags
from stratacache.engine.policy import EntryPolicy


def _entries(clock: sc.ManualClock) -> Entries:
    return Entries(EntryPolicy(60.0), EntryCodec(), clock)


def test_no_override_is_the_default_policy_itself() -> None:
    """Without overrides no policy object is built (the decorators' hot path relies on it)."""
    entries = _entries(sc.ManualClock())
    assert entries.entry_policy() is entries.policy


def test_overrides_replace_only_what_is_given() -> None:
    """``ttl`` overrides; the other fields keep the cache's defaults."""
    entries = _entries(sc.ManualClock())
    policy = entries.entry_policy(ttl=5, stale_ttl=10)
    assert (policy.ttl, policy.stale_ttl, policy.refresh_after) == (5, 10, None)


def test_new_entry_is_timed_by_the_clock() -> None:
    """A new entry is created now and expires after the policy's TTL."""
    clock = sc.ManualClock()
    entry = _entries(clock).new_entry({"a": 1}, EntryPolicy(30.0), ["t"])
    assert entry.created == clock.time() and entry.expires == clock.time() + 30
    assert entry.tags == ("t",) and entry.payload is not None


def test_an_unserializable_value_is_refused_before_any_write() -> None:
    """A value the serializer cannot store raises SerializationError at the call."""
    with pytest.raises(SerializationError):
        _entries(sc.ManualClock()).new_entry(object(), EntryPolicy(30.0), [])


@pytest.mark.parametrize(
    ("tags", "error"), [("user:1", ConfigError), ([""], CacheKeyError), ([3], CacheKeyError)]
)
def test_bad_tags_are_refused(tags: object, error: type[Exception]) -> None:
    """A single string, an empty tag or a non-string tag is a clear error."""
    with pytest.raises(error):
        check_tags(tags)


def test_plugins_without_their_methods_are_refused() -> None:
    """A serializer without dumps/loads or an envelope without seal/open fails at construction."""
    with pytest.raises(ConfigError):
        check_plugins(object(), (), None)
    with pytest.raises(ConfigError):
        check_plugins(None, [object()], None)
    with pytest.raises(ConfigError):
        check_plugins(None, "gzip", None)
