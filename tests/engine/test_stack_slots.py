"""Slot view: which tier may be called, and what copy of an entry each tier keeps."""

from __future__ import annotations

import pytest

import stratacache as sc
from stratacache.core.errors import ConfigError
from stratacache.engine.stack_slots import SlotView


def test_tier_names_must_be_unique() -> None:
    """Two tiers of one name would share counters: refused at construction."""
    with pytest.raises(ConfigError):
        SlotView([sc.MemoryTier(), sc.MemoryTier()], 5, 5.0, lambda *_: None)


def test_an_open_breaker_skips_the_tier_and_counts_it() -> None:
    """After ``threshold`` failures the tier is skipped (counted as ``skipped``)."""
    errors: list[str] = []
    view = SlotView([sc.MemoryTier()], 2, 60.0, lambda tier, op, exc: errors.append(op))
    slot = view.slots[0]
    for _ in range(2):
        view.failed(slot, "get", RuntimeError("x"))
    assert not view.usable(slot) and slot.stats.skipped == 1 and errors == ["get", "get"]


def test_local_copies_drop_the_payload_and_respect_the_tier_ttl() -> None:
    """A local tier keeps the value object (no bytes) and no longer than its own TTL."""
    view = SlotView([sc.MemoryTier(ttl=5)], 5, 5.0, lambda *_: None)
    entry = sc.Entry(1, created=0.0, expires=100.0, payload=b"x")
    copy = view.copy_for(view.slots[0], entry, 0.0)
    assert copy is not entry and copy.payload is None and copy.expires == 5.0


def test_passes_over_an_older_entry_when_asked_for_a_newer_one() -> None:
    """``newer_than`` makes an entry created before it a miss (a waiter's look past L1)."""
    view = SlotView([sc.MemoryTier()], 5, 5.0, lambda *_: None)
    slot = view.slots[0]
    entry = sc.Entry(1, created=10.0, expires=100.0)
    assert view.passes_over(slot, "k", None, 20.0, None)
    assert not view.passes_over(slot, "k", entry, 20.0, None)
    assert view.passes_over(slot, "k", entry, 20.0, newer_than=10.0)
    assert not view.passes_over(slot, "k", entry, 20.0, newer_than=5.0)
