"""Event-driven invalidation: signals → invalidations, tag cascades, signals sent, audit trail."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import blinker
import pytest

import stratacache as sc
from stratacache import events
from stratacache.core.fleet import Invalidation
from stratacache.engine import signals
from stratacache.fleet.bus import RedisBus


def memory_cache() -> sc.Cache:
    return sc.Cache(tiers=[sc.MemoryTier(maxsize=100)], namespace="ev")


# -- invalidate_on -------------------------------------------------------------------------------
async def test_signal_template_invalidates_key() -> None:
    """A key template filled from the signal's payload is invalidated when it is sent."""
    user_updated = blinker.Signal()
    async with memory_cache() as cache:
        cache.invalidate_on(user_updated, keys="user:{user_id}")
        await cache.set("user:1", "a")
        await cache.set("user:2", "b")
        await events.send(user_updated, None, user_id=1)
        assert await cache.get("user:1") is None
        assert await cache.get("user:2") == "b"


async def test_callable_maps_payload_to_tags() -> None:
    """A callable receives sender and payload and returns the tags to invalidate."""
    order_paid = blinker.Signal()
    async with memory_cache() as cache:
        events.invalidate_on(
            cache, order_paid, tags=lambda sender, order: [f"customer:{order['customer']}"]
        )
        await cache.set("orders:9", [1], tags=["customer:9"])
        await cache.set("orders:8", [2], tags=["customer:8"])
        await events.send(order_paid, "shop", order={"customer": 9})
        assert await cache.get("orders:9") is None
        assert await cache.get("orders:8") == [2]


async def test_plain_send_in_a_loop_returns_the_invalidation_task() -> None:
    """``signal.send`` inside a running loop schedules the invalidation and returns its task."""
    changed = blinker.Signal()
    async with memory_cache() as cache:
        cache.invalidate_on(changed, prefix="report:")
        await cache.set("report:1", 1)
        ((_, task),) = changed.send(None)
        assert isinstance(task, asyncio.Task)
        await task
        assert await cache.get("report:1") is None


def test_send_outside_a_loop_invalidates_before_returning() -> None:
    """With no running loop the invalidation runs synchronously, so it is done on return."""
    changed = blinker.Signal()
    cache = memory_cache()
    with cache.sync as facade:
        cache.invalidate_on(changed, keys=["a", "b"])
        facade.set("a", 1)
        facade.set("c", 3)
        changed.send(None)
        assert facade.get("a") is None
        assert facade.get("c") == 3


async def test_sender_filter_and_disconnect() -> None:
    """A rule bound to a sender ignores others; after ``disconnect`` it ignores everyone."""
    saved = blinker.Signal()
    async with memory_cache() as cache:
        rule = cache.invalidate_on(saved, keys="{sender}:list", sender="post")
        await cache.set("post:list", 1)
        await cache.set("page:list", 1)
        await events.send(saved, "page")
        assert await cache.get("page:list") == 1
        await events.send(saved, "post")
        assert await cache.get("post:list") is None
        rule.disconnect()
        await cache.set("post:list", 2)
        await events.send(saved, "post")
        assert await cache.get("post:list") == 2


async def test_rule_errors_are_clear() -> None:
    """A rule without targets, or a template field the signal lacks, raises ConfigError."""
    signal = blinker.Signal()
    async with memory_cache() as cache:
        with pytest.raises(sc.ConfigError):
            cache.invalidate_on(signal)
        cache.invalidate_on(signal, keys="user:{user_id}")
        with pytest.raises(sc.ConfigError, match="user_id"):
            await events.send(signal, None, id=1)


async def test_rule_reason_reaches_the_invalidated_signal() -> None:
    """The ``invalidated`` signal carries the rule's reason and actor."""
    signal = blinker.Signal()
    seen: list[dict[str, Any]] = []

    def on_invalidated(sender: Any, **payload: Any) -> None:
        seen.append(payload)

    async with memory_cache() as cache:
        cache.invalidate_on(signal, tags="t:{n}", reason="price change", actor="billing")
        signals.invalidated.connect(on_invalidated, sender=cache)
        try:
            await events.send(signal, None, n=3)
        finally:
            signals.invalidated.disconnect(on_invalidated, sender=cache)
    assert [(p["tags"], p["reason"], p["actor"], p["origin"]) for p in seen] == [
        (("t:3",), "price change", "billing", "local")
    ]


# -- tag cascades --------------------------------------------------------------------------------
async def test_implied_tags_cascade_transitively() -> None:
    """Invalidating ``org:1`` invalidates what its implied tags (and theirs) tag, not other orgs."""
    async with memory_cache() as cache:
        rules = events.tag_rules(cache)
        rules.implies("org:{org_id}", ["org-users:{org_id}"])
        rules.implies("org-users:{org_id}", lambda org_id: [f"user:{org_id}{n}" for n in "ab"])
        await cache.set("u1a", 1, tags=["user:1a"])
        await cache.set("u1b", 1, tags=["user:1b"])
        await cache.set("list1", 1, tags=["org-users:1"])
        await cache.set("u2a", 1, tags=["user:2a"])
        await cache.invalidate(tags=["org:1"])
        for key in ("u1a", "u1b", "list1"):
            assert await cache.get(key) is None
        assert await cache.get("u2a") == 1
        assert events.tag_rules(cache) is rules


def test_repeated_field_must_repeat_its_value() -> None:
    """A pattern naming a field twice matches only tags where both values agree."""
    rules = sc.TagRules().implies("{a}-{a}", ["twin:{a}"])
    assert rules.expand(["x-x"]) == ("x-x", "twin:x")
    assert rules.expand(["x-y"]) == ("x-y",)


@pytest.mark.parametrize(
    "chain",
    [
        [("a:{x}", "a:{x}:more")],  # grows itself forever
        [("a:{x}", "b:{x}"), ("b:{x}", "a:{x}")],
        [("a:{x}", "b:{x}"), ("b:{x}", "c:{x}"), ("c:{x}", "a:{x}")],
    ],
)
def test_looping_rules_are_refused(chain: list[tuple[str, str]]) -> None:
    """A rule closing a loop among template rules raises ConfigError when added."""
    rules = sc.TagRules()
    for pattern, implied in chain[:-1]:
        rules.implies(pattern, [implied])
    with pytest.raises(sc.ConfigError, match="loop"):
        rules.implies(*chain[-1][:1], [chain[-1][1]])


def test_diamond_is_not_a_loop_and_callable_loops_are_capped() -> None:
    """Two paths to one tag are fine; a callable that keeps generating tags hits ``max_tags``."""
    rules = sc.TagRules().implies("a", ["b", "c"]).implies("b", ["d"]).implies("c", ["d"])
    assert sorted(rules.expand(["a"])) == ["a", "b", "c", "d"]
    runaway = sc.TagRules(max_tags=50).implies("n:{i}", lambda i: [f"n:{int(i) + 1}"])
    with pytest.raises(sc.ConfigError, match="over 50"):
        runaway.expand(["n:0"])


def test_implied_template_fields_are_checked() -> None:
    """An implied template using a field the pattern lacks is refused."""
    with pytest.raises(sc.ConfigError, match="team"):
        sc.TagRules().implies("org:{org_id}", ["team:{team}"])


# -- audit trail ---------------------------------------------------------------------------------
async def test_json_lines_audit_log_records_every_invalidation(tmp_path: Path) -> None:
    """Each invalidation, clear and flush is one JSON line with who, why, when and what."""
    path = tmp_path / "audit.jsonl"
    path.write_text('{"earlier": true}\n')
    log = sc.JSONLinesAuditLog(path, fsync=True)
    async with memory_cache() as cache:
        events.audit(cache, log)
        await cache.invalidate(keys=["k"], tags=["t"], prefix="p:", reason="fix", actor="ops")
        await cache.clear(reason="reset")
        await cache.flush_namespace(actor="deploy")
        await cache.set("k", 1)  # an overwrite is not an invalidation
    log.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"earlier": True}  # append-only
    first, cleared, flushed = lines[1:]
    assert first["keys"] == ["ev:k"] and first["tags"] == ["t"] and first["prefixes"] == ["ev:p:"]
    assert (first["reason"], first["actor"], first["origin"]) == ("fix", "ops", cache.origin)
    assert first["time"] > 0
    assert cleared["clear"] and cleared["reason"] == "reset"
    assert flushed["clear"] and flushed["generation"] == 1 and flushed["actor"] == "deploy"


async def test_audit_sees_remote_invalidations_only_when_asked(redis_url: str) -> None:
    """``audit(remote=False)`` logs this process's invalidations; ``remote=True`` adds others'."""
    namespace = "aud" + uuid.uuid4().hex[:6]

    def make() -> sc.Cache:
        return sc.Cache(tiers=[sc.MemoryTier()], namespace=namespace, bus=RedisBus(redis_url))

    one, two = make(), make()
    local_only: list[Invalidation] = []
    everything: list[Invalidation] = []
    arrived = asyncio.Event()

    def collect(message: Invalidation) -> None:
        everything.append(message)
        arrived.set()

    async with one, two:
        events.audit(two, local_only.append)
        events.audit(two, collect, remote=True)
        events.tag_rules(one).implies("org:{o}", ["members:{o}"])
        await one.invalidate(tags=["org:5"], reason="remote one")
        await asyncio.wait_for(arrived.wait(), 5)
        await two.invalidate(keys=["x"], reason="local one")
    assert [m.reason for m in everything] == ["remote one", "local one"]
    assert everything[0].tags == ("org:5", "members:5")  # expanded before it travels
    assert [m.reason for m in local_only] == ["local one"]
