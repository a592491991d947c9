"""``Entry``: the freshness timeline of one cached value, and its kill switch."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from stratacache.core.entry import XFETCH_HORIZON, Entry, trusted


def test_timeline_fresh_stale_expired_gone() -> None:
    """Fresh before the soft TTL, expired at the hard TTL, gone after the stale window."""
    entry = Entry("v", created=0.0, refresh_after=10.0, expires=20.0, stale_until=30.0)
    assert entry.is_fresh(9.9) and not entry.is_fresh(10.0)
    assert not entry.is_expired(19.9) and entry.is_expired(20.0)
    assert not entry.is_gone(29.9) and entry.is_gone(30.0)


def test_no_expiry_is_forever() -> None:
    """Without ``expires`` an entry is always fresh and never gone; tiers keep it for ``cap``."""
    entry = Entry("v", created=0.0)
    assert entry.is_fresh(1e12) and not entry.is_expired(1e12) and not entry.is_gone(1e12)
    assert entry.deadline == math.inf
    assert entry.keep_for(0.0, None) is None and entry.keep_for(0.0, 60.0) == 60.0


def test_keep_for_is_the_shorter_of_remaining_life_and_cap() -> None:
    """A tier keeps an entry until ``stale_until`` (or ``expires``), capped by its own TTL."""
    entry = Entry("v", created=0.0, expires=20.0, stale_until=30.0)
    assert entry.keep_for(5.0, None) == 25.0
    assert entry.keep_for(5.0, 10.0) == 10.0


def test_deadline_is_pulled_forward_by_the_load_cost() -> None:
    """The fast-path deadline leaves room for XFetch: ``soft - horizon * cost * beta``."""
    entry = Entry("v", created=0.0, expires=100.0, cost=0.5)
    assert entry.deadline == 100.0 - XFETCH_HORIZON * 0.5
    assert entry.compute_deadline(beta=2.0) == 100.0 - XFETCH_HORIZON * 0.5 * 2.0


def test_kill_marks_dead_and_calls_each_watcher_once() -> None:
    """``kill`` makes every holder see the entry dead and runs the watchers once."""
    entry = Entry("v", created=0.0)
    calls: list[int] = []
    entry.watchers = [lambda: calls.append(1)]
    assert entry.alive
    entry.kill()
    entry.kill()
    assert not entry.alive and calls == [1]


@pytest.mark.parametrize(
    "fields",
    [
        ("v", 1.0, None, None, None, 0.0, (), {}, 0),
        ("v", 1.0, 20.0, None, None, 0.5, ("t",), {"t": 2}, 10),
        ([1], 1, 20, 10, 30, 2, (), {}, 5),
    ],
)
def test_trusted_builds_what_the_constructor_builds(fields: tuple[Any, ...]) -> None:
    """``trusted`` (the decoder's constructor) sets every field as ``Entry(...)`` does."""
    made, built = Entry(*fields), trusted(*fields)
    for field in dataclasses.fields(Entry):
        assert getattr(built, field.name) == getattr(made, field.name), field.name
    assert type(built) is Entry and built.alive
