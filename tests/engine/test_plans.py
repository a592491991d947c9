"""Tier plans: the multi-tier paths as generators of tier calls, checked without I/O."""

from __future__ import annotations

from typing import Any

import stratacache as sc
from stratacache.core.fleet import Invalidation
from stratacache.engine import plans
from stratacache.engine.stack_slots import UNLEASED, SlotView


class Shared(sc.MemoryTier):
    """An in-process tier the stack treats as shared (no network needed for the test)."""

    shared = True  # type: ignore[assignment]


def _view() -> SlotView:
    tiers = [sc.MemoryTier(name="l1"), Shared(name="l2"), Shared(name="l3")]
    return SlotView(tiers, 5, 5.0, lambda *_: None)


def run(plan: Any, answer: Any = None) -> tuple[Any, list[tuple[str, str]]]:
    """Every call of ``plan`` as (tier, operation), each answered with ``answer``."""
    calls: list[tuple[str, str]] = []
    try:
        slot, operation, _args, _fallback = next(plan)
        while True:
            calls.append((slot.name, operation))
            slot, operation, _args, _fallback = plan.send(answer)
    except StopIteration as stop:
        return stop.value, calls


def test_write_goes_bottom_up() -> None:
    """A write reaches the lowest tier first, so a refused shared write never reaches L1."""
    entry = sc.Entry(1, created=0.0)
    stored, calls = run(plans.write(_view(), "ns:k", entry, None, 0.0, False), True)
    assert stored is True and calls == [("l3", "set"), ("l2", "set"), ("l1", "set")]


def test_write_stops_at_the_first_refusal() -> None:
    """A tier refusing a voided lease ends the write: nothing above it is written."""
    entry = sc.Entry(1, created=0.0)
    stored, calls = run(plans.write(_view(), "ns:k", entry, [None, None, None], 0.0, False), False)
    assert stored is False and calls == [("l3", "set")]


def test_a_plain_write_claims_memory_before_writing_below() -> None:
    """An overwrite without leases claims the in-process tier above the others first, then
    writes bottom-up; a leased write (a load) claims nothing."""
    entry = sc.Entry(1, created=0.0)
    _, calls = run(plans.write(_view(), "ns:k", entry, None, 0.0, True), True)
    assert calls == [("l1", "claim"), ("l3", "set"), ("l2", "set"), ("l1", "set")]
    _, calls = run(plans.write(_view(), "ns:k", entry, [None, None, None], 0.0, True), True)
    assert ("l1", "claim") not in calls


def test_a_memory_only_write_claims_nothing() -> None:
    """With no tier below memory there is no race to guard: no claim."""
    view = SlotView([sc.MemoryTier(name="l1")], 5, 5.0, lambda *_: None)
    _, calls = run(plans.write(view, "ns:k", sc.Entry(1, created=0.0), None, 0.0, True), True)
    assert calls == [("l1", "set")]


def test_write_many_claims_memory_before_writing_below() -> None:
    """``set_many``'s plan claims the in-process tier once for all keys, then writes bottom-up."""
    entries = {"ns:a": sc.Entry(1, created=0.0), "ns:b": sc.Entry(2, created=0.0)}
    _, calls = run(plans.write_many(_view(), entries, 0.0))
    assert calls == [
        ("l1", "claim_many"),
        ("l3", "set_many"),
        ("l2", "set_many"),
        ("l1", "set_many"),
    ]


def test_a_load_claims_memory_above_other_tiers_and_leases_the_rest() -> None:
    """A load claims an in-process tier with a tier below it and leases every other tier."""
    view = _view()
    assert plans.lease_call(view, 0, "ns:k", ("t",)) == ("claim", ("ns:k",))
    assert plans.lease_call(view, 1, "ns:k", ("t",)) == ("lease", ("ns:k", ("t",)))
    alone = SlotView([sc.MemoryTier(name="l1")], 5, 5.0, lambda *_: None)
    assert plans.lease_call(alone, 0, "ns:k", ()) == ("lease", ("ns:k", ()))


def test_a_load_memory_declines_lets_its_claim_go() -> None:
    """A load's entry that memory's admission declines is not stored there, and the
    load's claim on memory is released (no claim is left behind)."""
    view = _view()
    view.slots[0].admits = lambda key: False
    entry = sc.Entry(1, created=0.0)
    _, calls = run(plans.write(view, "ns:k", entry, [object(), None, None], 0.0, False), True)
    assert calls == [("l3", "set"), ("l2", "set"), ("l1", "release")]


def test_forget_drops_the_keys_from_in_process_tiers_only() -> None:
    """A write stopped between its tiers drops its keys from memory, not from shared tiers."""
    _, calls = run(plans.forget(_view(), ("ns:k",)))
    assert calls == [("l1", "delete_many")]


def test_invalidation_goes_bottom_up_and_a_clear_clears() -> None:
    """Keys, tags and prefixes are applied lowest tier first; a clear message clears."""
    message = Invalidation(keys=("ns:k",), tags=("t",), prefixes=("ns:p",))
    _, calls = run(plans.invalidate(_view(), message, local_only=False))
    assert [c[0] for c in calls] == ["l3"] * 3 + ["l2"] * 3 + ["l1"] * 3
    assert [c[1] for c in calls[:3]] == ["delete_many", "invalidate_tags", "delete_prefix"]
    _, calls = run(plans.invalidate(_view(), Invalidation(clear=True), local_only=True))
    assert calls == [("l1", "clear")]


def test_lease_plan_leases_again_bottom_up_and_keeps_what_the_read_could_not_reach() -> None:
    """A load leases the lowest tier first (the read's top-down leases are not reused);
    a tier the read could not reach stays ``UNLEASED``."""
    leases, wanted = plans.lease_plan(_view(), "ns:k", [], {0: 7, 1: 8})
    assert leases == [None, None, None] and wanted == [2, 1, 0]
    leases, wanted = plans.lease_plan(_view(), "ns:k", [], {0: 7, 1: UNLEASED})
    assert leases == [None, UNLEASED, None] and wanted == [2, 0]


def test_read_many_leases_local_tiers_before_reading_below() -> None:
    """Batch reads lease L1 before reading L2, so a racing invalidation voids the backfill."""
    _, calls = run(plans.read_many(_view(), ["ns:a", "ns:b"], 0.0), {})
    assert calls[:3] == [("l1", "lease"), ("l1", "lease"), ("l1", "get_many")]
    assert ("l2", "get_many") in calls and ("l3", "get_many") in calls
