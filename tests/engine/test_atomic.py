"""Read-modify-write decisions: pure steps from the entry found to the entry stored."""

from __future__ import annotations

import pytest

import stratacache as sc
from stratacache.core.errors import ConfigError
from stratacache.engine.atomic import (
    add_step,
    check_delta,
    initial_value,
    loaded_subset,
    remaining,
    unique_keys,
)


def test_add_stores_only_where_nothing_lives() -> None:
    """``add``: store and report True on an empty key; leave a live entry and report False."""
    entry = sc.Entry(1, created=0.0)
    assert add_step(entry)(None, 0.0) == (entry, True)
    assert add_step(entry)(sc.Entry(2, created=0.0), 0.0) == (None, False)


def test_deltas_and_initial_values_must_be_integers() -> None:
    """``incr`` takes integer deltas (bool refused) and an integer or None initial value."""
    assert check_delta(3) == 3
    for bad in (1.5, True, "1"):
        with pytest.raises(ConfigError):
            check_delta(bad)
    assert initial_value(None) is None
    with pytest.raises(ConfigError):
        initial_value(0.5)


def test_remaining_seconds() -> None:
    """``ttl``: None for a missing key, infinity for no expiry, seconds left otherwise."""
    assert remaining(None, 0.0) is None
    assert remaining(sc.Entry(1, created=0.0), 0.0) == float("inf")
    assert remaining(sc.Entry(1, created=0.0, expires=10.0), 4.0) == 6.0


def test_batch_helpers() -> None:
    """Keys are deduplicated in order; a loader's extra keys are ignored; strings refused."""
    assert unique_keys(["a", "b", "a"]) == ["a", "b"]
    with pytest.raises(ConfigError):
        unique_keys("ab")
    assert loaded_subset({"a": 1, "z": 2}, ["a"]) == {"a": 1}
    with pytest.raises(TypeError):
        loaded_subset([("a", 1)], ["a"])


def _plan_cache() -> sc.Cache:
    """A cache for the plan's decisions (no I/O: the plan never calls the tier itself)."""
    return sc.Cache(tiers=[sc.MemoryTier()], bus=False)


def test_update_plan_retries_a_lost_race_then_stores() -> None:
    """A failed compare-and-set reads again; the step decides on the newer entry."""
    from stratacache.engine.atomic import update_plan

    cache = _plan_cache()
    slot = cache.tiers.slots[-1]
    slot.local = False  # drive it as a remote authority: every call goes through the driver
    plan = update_plan(cache, slot, "ns:k", add_step(sc.Entry(9, created=0.0)))
    assert next(plan) == ("read_versioned", ("ns:k",))
    operation, args = plan.send((None, "t0"))
    assert operation == "compare_and_set" and args[:2] == ("ns:k", "t0")
    assert plan.send(False) == ("read_versioned", ("ns:k",))  # lost the race: read again
    with pytest.raises(StopIteration) as done:
        plan.send((sc.Entry(5, created=0.0), "t1"))  # someone else's value lives now
    assert done.value.value == (None, False, None)


def test_update_plan_hands_an_unreadable_value_back_to_the_driver() -> None:
    """A value this process cannot open ends the plan with the error, not with a write."""
    from stratacache.core.errors import DeserializationError
    from stratacache.engine.atomic import update_plan

    cache = _plan_cache()
    slot = cache.tiers.slots[-1]
    slot.local = False
    plan = update_plan(cache, slot, "ns:k", add_step(sc.Entry(9, created=0.0)))
    next(plan)
    error = DeserializationError("signed with another key")
    with pytest.raises(StopIteration) as done:
        plan.throw(error)
    assert done.value.value == (None, None, error)
