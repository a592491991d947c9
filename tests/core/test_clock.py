"""Clocks: the wall clock, and a manual one tests drive without sleeping."""

from __future__ import annotations

import time

from stratacache.core.clock import Clock, ManualClock, SystemClock


def test_system_clock_is_wall_time() -> None:
    """``SystemClock().time()`` is ``time.time()`` (deadlines are shared across processes)."""
    before = time.time()
    now = SystemClock().time()
    assert before <= now <= time.time()


def test_manual_clock_moves_only_when_told() -> None:
    """``advance`` and ``set`` are the only ways a ``ManualClock`` moves."""
    clock = ManualClock(start=100.0)
    assert clock.time() == clock.time() == 100.0
    clock.advance(2.5)
    assert clock.time() == 102.5
    clock.set(50.0)
    assert clock.time() == 50.0


def test_both_satisfy_the_clock_protocol() -> None:
    """Anything with ``time()`` is a ``Clock`` (runtime-checkable)."""
    assert isinstance(SystemClock(), Clock) and isinstance(ManualClock(), Clock)
    assert not isinstance(object(), Clock)
