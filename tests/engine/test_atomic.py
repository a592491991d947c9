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
