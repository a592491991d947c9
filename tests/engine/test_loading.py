"""Read-through decisions with no I/O: the fleet-lock loop and the shared ``Loads`` state."""

from __future__ import annotations

from typing import Any

import pytest

import stratacache as sc
from stratacache.core.codec import EntryCodec
from stratacache.core.errors import ConfigError
from stratacache.core.fleet import LockAttempt
from stratacache.engine import signals
from stratacache.engine.accounting import Recorder
from stratacache.engine.loading import Loads, LockStep, locked_load
from stratacache.engine.policy import EntryPolicy, Freshness
from stratacache.engine.stats import CacheStats, FunctionStats

MINE = LockAttempt(owned=True, token="t1", ttl=5.0)
THEIRS = LockAttempt(owned=False, token="other", ttl=5.0)
VALUE = sc.Entry("v", created=1.0)


def drive(flow: Any, answers: dict[LockStep, list[Any]]) -> tuple[Any, list[LockStep]]:
    """Run a lock flow against scripted answers (an exception answer is thrown in)."""
    steps: list[LockStep] = []
    step, _ = next(flow)
    while True:
        steps.append(step)
        answer = answers[step].pop(0)
        try:
            if isinstance(answer, BaseException):
                step, _ = flow.throw(answer)
            else:
                step, _ = flow.send(answer)
        except StopIteration as stop:
            return stop.value, steps


def _rec() -> Recorder:
    return Recorder(CacheStats(), sender="cache")


def test_the_holder_rereads_loads_under_the_lock_and_releases() -> None:
    """Owning the lock: look for a value stored meanwhile, load while holding it, release."""
    rec = _rec()
    loaded = sc.Entry("new", created=2.0)
    result, steps = drive(
        locked_load(rec, "ns:k", 5.0, None, None),
        {
            LockStep.ACQUIRE: [MINE],
            LockStep.REREAD: [None],
            LockStep.LOAD_HELD: [loaded],
            LockStep.RELEASE: [True],
        },
    )
    assert result is loaded
    assert steps == [LockStep.ACQUIRE, LockStep.REREAD, LockStep.LOAD_HELD, LockStep.RELEASE]
    assert rec.counters.lock_acquired == 1


def test_a_waiter_takes_the_holders_value() -> None:
    """Not owning it: wait (counted and signalled once), then serve what the holder stored."""
    rec = _rec()
    waits: list[str] = []
    with signals.lock_wait.connected_to(lambda _s, key: waits.append(key)):
        result, steps = drive(
            locked_load(rec, "ns:k", 5.0, None, FunctionStats()),
            {LockStep.ACQUIRE: [THEIRS], LockStep.WAIT: [True], LockStep.REREAD: [VALUE]},
        )
    assert result is VALUE and steps == [LockStep.ACQUIRE, LockStep.WAIT, LockStep.REREAD]
    assert rec.counters.lock_waits == 1 and waits == ["ns:k"]


def test_an_unreachable_lock_falls_back_to_loading() -> None:
    """The lock is an optimisation: an acquire error loads without it (counted, signalled)."""
    rec = _rec()
    fstats = FunctionStats()
    result, steps = drive(
        locked_load(rec, "ns:k", 5.0, None, fstats),
        {LockStep.ACQUIRE: [ConnectionError("down")], LockStep.LOAD: [VALUE]},
    )
    assert result is VALUE and steps == [LockStep.ACQUIRE, LockStep.LOAD]
    assert rec.counters.lock_errors == 1 and rec.counters.lock_fallbacks == 1
    assert fstats.lock_fallbacks == 1


def test_a_lock_on_a_server_known_down_is_not_asked() -> None:
    """``usable`` False (the breaker of the lock's Redis is open): load at once, no attempt,
    counted as a fallback with reason ``circuit_open``, not as a lock error."""
    rec = _rec()
    fstats = FunctionStats()
    reasons: list[str] = []
    with signals.lock_fallback.connected_to(lambda _s, key, reason: reasons.append(reason)):
        result, steps = drive(
            locked_load(rec, "ns:k", 5.0, None, fstats, lambda: False),
            {LockStep.LOAD: [VALUE]},
        )
    assert result is VALUE and steps == [LockStep.LOAD]
    assert rec.counters.lock_fallbacks == fstats.lock_fallbacks == 1
    assert rec.counters.lock_errors == 0 and reasons == ["circuit_open"]


def test_a_waiter_whose_lock_server_goes_down_loads_instead_of_asking_again() -> None:
    """The circuit opens while waiting for a holder: the next attempt is not made."""
    rec = _rec()
    answers = iter([True, False])
    result, steps = drive(
        locked_load(rec, "ns:k", 5.0, None, None, lambda: next(answers)),
        {
            LockStep.ACQUIRE: [THEIRS],
            LockStep.WAIT: [False],
            LockStep.REREAD: [None],
            LockStep.LOAD: [VALUE],
        },
    )
    assert result is VALUE
    assert steps == [LockStep.ACQUIRE, LockStep.WAIT, LockStep.REREAD, LockStep.LOAD]


def test_a_failing_loader_still_releases_the_lock() -> None:
    """The loader's error reaches the caller, after the lock was released."""
    rec = _rec()
    flow = locked_load(rec, "ns:k", 5.0, None, None)
    with pytest.raises(ValueError, match="boom"):
        drive(
            flow,
            {
                LockStep.ACQUIRE: [MINE],
                LockStep.REREAD: [None],
                LockStep.LOAD_HELD: [ValueError("boom")],
                LockStep.RELEASE: [True],
            },
        )


def test_a_failed_release_is_counted_not_raised() -> None:
    """Releasing may fail (the lease expires by itself): the loaded value is still returned."""
    rec = _rec()
    result, _ = drive(
        locked_load(rec, "ns:k", 5.0, None, None),
        {
            LockStep.ACQUIRE: [MINE],
            LockStep.REREAD: [None],
            LockStep.LOAD_HELD: [VALUE],
            LockStep.RELEASE: [ConnectionError("gone")],
        },
    )
    assert result is VALUE and rec.counters.lock_errors == 1


def test_a_waiter_past_the_deadline_loads_itself() -> None:
    """When the holder takes longer than ``wait_timeout`` the waiter loads (a fallback)."""
    rec = _rec()
    result, steps = drive(
        locked_load(rec, "ns:k", 0.0, None, None),
        {
            LockStep.ACQUIRE: [THEIRS],
            LockStep.WAIT: [False],
            LockStep.REREAD: [None],
            LockStep.LOAD: [VALUE],
        },
    )
    assert result is VALUE and steps[-1] is LockStep.LOAD
    assert rec.counters.lock_fallbacks == 1


def _loads(clock: sc.ManualClock) -> Loads:
    return Loads(_rec(), clock, EntryCodec(), 1.0, sc.MemoryTier())


def test_judge_counts_hits_and_misses() -> None:
    """A fresh entry is a hit; an expired one a miss, for the decorated function's counters."""
    clock = sc.ManualClock()
    loads = _loads(clock)
    fstats = FunctionStats()
    now = clock.time()
    assert loads.judge("k", sc.Entry(1, created=now, expires=now + 10), fstats) is Freshness.FRESH
    assert loads.judge("k", sc.Entry(1, created=now, expires=now), fstats) is Freshness.EXPIRED
    assert (fstats.hits, fstats.misses) == (1, 1)


def test_no_refresh_of_an_entry_older_than_the_last_load() -> None:
    """The newer-load guard: a refresh claim for a value already reloaded is refused."""
    clock = sc.ManualClock()
    loads = _loads(clock)
    old = sc.Entry(1, created=clock.time())
    clock.advance(1)
    loads.loaded("k", 2, 0.0, EntryPolicy(60.0), (), None)
    assert loads.may_refresh("k", old, loading=False) is False
    assert loads.may_refresh("other", old, loading=False) is True
    assert loads.may_refresh("other", old, loading=False) is False  # one refresh at a time


def test_resolve_lock_without_a_fleet_lock() -> None:
    """``lock=True`` on a cache without a fleet lock is a ConfigError; False/None mean none."""
    loads = _loads(sc.ManualClock())
    assert loads.resolve_lock(None) is None and loads.resolve_lock(False) is None
    with pytest.raises(ConfigError):
        loads.resolve_lock(True)
