"""Invalidator: one flow (apply, then publish, then announce) for both clients."""

from __future__ import annotations

from typing import Any

import pytest

import stratacache as sc
from stratacache.core.errors import ConfigError
from stratacache.core.fleet import Invalidation
from stratacache.engine import signals
from stratacache.engine.invalidation import APPLY, PUBLISH


def _cache(**options: Any) -> sc.Cache:
    return sc.Cache([sc.MemoryTier()], namespace="inv", bus=False, **options)


def test_the_flow_applies_then_publishes_then_announces() -> None:
    """Tiers first, then the bus, then the signal and the audit hooks."""
    cache = _cache()
    order: list[str] = []
    cache.audit_hooks.append(lambda message: order.append("audit"))
    message = cache.invalidator.message(["k"], [], None, "why", "me")
    with signals.invalidated.connected_to(lambda _s, **kw: order.append("signal")):
        for step, _ in cache.invalidator.flow(message):
            order.append(step)
    assert order == [APPLY, PUBLISH, "signal", "audit"]
    assert cache.counters.invalidations == 1


def test_message_takes_full_keys_and_checks_its_arguments() -> None:
    """Keys become full keys; a bare string for keys or tags is a clear error."""
    cache = _cache()
    message = cache.invalidator.message(["k"], ["t"], "p:", "r", "a")
    assert message.keys == ("inv:k",) and message.prefixes == ("inv:p:",)
    assert (message.reason, message.actor, message.origin) == ("r", "a", cache.origin)
    with pytest.raises(ConfigError):
        cache.invalidator.message("k", [], None, None)


def test_tag_rules_from_the_constructor_expand_tags() -> None:
    """``Cache(tag_rules=...)`` expands every invalidation's tags."""
    cache = _cache(tag_rules=lambda tags: (*tags, "implied"))
    assert cache.tag_rules is not None
    assert cache.invalidator.message([], ["t"], None, None).tags == ("t", "implied")
    with pytest.raises(ConfigError):
        _cache(tag_rules="not callable")


def test_remote_messages_of_this_process_are_skipped() -> None:
    """A message this process sent comes back on the bus: it is not applied twice."""
    cache = _cache()
    seen: list[Invalidation] = []
    cache.audit_hooks.append(seen.append)
    cache.invalidator.apply_remote(Invalidation(keys=("inv:k",), origin=cache.origin))
    assert seen == []
    cache.invalidator.apply_remote(Invalidation(keys=("inv:k",), origin="another"))
    assert len(seen) == 1


async def test_clear_counts_and_signals_on_both_clients() -> None:
    """``clear`` (async and sync) counts an invalidation and sends ``cleared`` with its reason."""
    cache = _cache()
    cleared: list[Any] = []
    with signals.cleared.connected_to(lambda _s, **kw: cleared.append(kw["reason"])):
        await cache.clear(reason="async")
        await cache.close()
    sync = _cache()
    with signals.cleared.connected_to(lambda _s, **kw: cleared.append(kw["reason"])):
        sync.sync.clear(reason="sync", actor="ops")
        sync.sync.close()
    assert cleared == ["async", "sync"]
    assert cache.counters.invalidations == sync.counters.invalidations == 1


async def test_tag_rules_given_to_the_constructor_cascade() -> None:
    """``Cache(tag_rules=TagRules()...)``: invalidating a tag drops entries of the tags it implies."""
    from stratacache.events import TagRules, tag_rules

    rules = TagRules().implies("org:{org_id}", ["org-users:{org_id}"])
    async with sc.Cache([sc.MemoryTier()], namespace="cascade", tag_rules=rules) as cache:
        await cache.set("u1", 1, tags=["org-users:7"])
        await cache.invalidate(tags=["org:7"])
        assert await cache.get("u1") is None
        assert tag_rules(cache) is rules


#: (invalidate's arguments, the keys it must drop of "k" (tag "t"), "j" and "p:1")
_NONE_GIVEN: list[tuple[dict[str, Any], set[str]]] = [
    ({"keys": None, "tags": ["t"]}, {"k"}),
    ({"keys": ["j"], "tags": None}, {"j"}),
    ({"keys": None, "tags": None, "prefix": "p:"}, {"p:1"}),
    ({"keys": None, "tags": None, "prefix": None}, set()),
]


@pytest.mark.parametrize(("arguments", "dropped"), _NONE_GIVEN)
async def test_none_is_not_given_for_keys_tags_and_prefix_in_both_clients(
    arguments: dict[str, Any], dropped: set[str]
) -> None:
    """``invalidate(keys=None)`` and ``tags=None`` mean "not given", as ``prefix=None`` does."""
    remaining: list[set[str]] = []
    async with _cache() as cache:
        await cache.set("k", 1, tags=["t"])
        await cache.set_many({"j": 2, "p:1": 3})
        await cache.invalidate(**arguments)
        remaining.append(set(await cache.get_many(["k", "j", "p:1"])))
    with _cache().sync as facade:
        facade.set("k", 1, tags=["t"])
        facade.set_many({"j": 2, "p:1": 3})
        facade.invalidate(**arguments)
        remaining.append(set(facade.get_many(["k", "j", "p:1"])))
    assert remaining == [{"k", "j", "p:1"} - dropped] * 2


@pytest.mark.parametrize(
    "arguments", [{"keys": "k"}, {"tags": "t"}, {"keys": 5}, {"tags": 5}, {"prefix": 5}]
)
async def test_a_bare_string_or_a_non_iterable_is_a_config_error_in_both_clients(
    arguments: dict[str, Any],
) -> None:
    """A string where a list belongs, or something not iterable, is a ``ConfigError`` in both."""
    async with _cache() as cache:
        with pytest.raises(ConfigError, match="must be"):
            await cache.invalidate(**arguments)
    with _cache().sync as facade, pytest.raises(ConfigError, match="must be"):
        facade.invalidate(**arguments)
