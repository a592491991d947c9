"""``PerLoop`` values and after-fork resets."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from stratacache.core.loops import HomeLoop, PerLoop, on_fork


def _per_loop() -> tuple[PerLoop[object], list[object]]:
    discarded: list[object] = []
    return PerLoop(object, discarded.append), discarded


async def _get(values: PerLoop[object]) -> object:
    return values.get()


def test_one_value_per_loop_and_the_same_within_a_loop() -> None:
    """A loop gets one value, built once; another loop gets another."""
    values, _ = _per_loop()

    async def twice() -> tuple[object, object]:
        return values.get(), values.get()

    first, again = asyncio.run(twice())
    second, _ = asyncio.run(twice())
    assert first is again
    assert second is not first


@pytest.mark.parametrize("loops", [2, 3, 7])
def test_values_of_closed_loops_are_discarded(loops: int) -> None:
    """Each new loop releases the values of loops closed before it; nothing piles up."""
    values, discarded = _per_loop()
    seen = [asyncio.run(_get(values)) for _ in range(loops)]
    assert discarded == seen[:-1]
    assert len(values) == 1


def test_values_of_live_loops_are_kept() -> None:
    """Two loops alive at once each keep their own value."""
    values, discarded = _per_loop()
    one, two = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        a = one.run_until_complete(_get(values))
        b = two.run_until_complete(_get(values))
        assert one.run_until_complete(_get(values)) is a
        assert two.run_until_complete(_get(values)) is b
        assert a is not b and discarded == []
    finally:
        one.close()
        two.close()


def test_pop_current_and_clear() -> None:
    """``pop_current`` hands over the running loop's value; ``clear`` releases the rest."""
    values, discarded = _per_loop()
    other = asyncio.run(_get(values))

    async def pop() -> tuple[object, object | None]:
        mine = values.get()
        return mine, values.pop_current()

    mine, popped = asyncio.run(pop())
    assert popped is mine
    assert discarded == [other]
    values.clear()
    assert len(values) == 0


def test_get_outside_a_loop_raises() -> None:
    """Outside a running loop there is no value to give."""
    values, _ = _per_loop()
    with pytest.raises(RuntimeError):
        values.get()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_after_fork_runs_in_the_child_only() -> None:
    """A registered object's ``after_fork`` runs in a forked child, not in the parent."""

    class Marker:
        forked = False

        def after_fork(self) -> None:
            self.forked = True

    marker = Marker()
    on_fork(marker)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0 if marker.forked else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not marker.forked


def test_home_loop_moves_to_the_next_loop_once_closed() -> None:
    """The first loop is home; after it closes the next one is, and the old client is let go."""
    released: list[int] = []
    home = HomeLoop(lambda: released.append(1))

    async def where() -> asyncio.AbstractEventLoop:
        return await home.run(_current_loop())

    first = asyncio.run(where())
    second = asyncio.run(where())
    assert first is not second and released == [1]


def test_home_loop_runs_calls_of_other_loops_on_itself() -> None:
    """While home runs on its thread, another loop's call runs there, not on the caller's."""
    home = HomeLoop(lambda: None)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        ran_on = asyncio.run_coroutine_threadsafe(home.run(_current_loop()), loop).result(5)
        assert ran_on is loop
        assert asyncio.run(home.run(_current_loop())) is loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_home_loop_blocked_by_its_own_caller_times_out() -> None:
    """A home loop whose thread waits for the call cannot answer: the hop gives up."""
    home = HomeLoop(lambda: None, hop_timeout=0.05)
    loop = asyncio.new_event_loop()
    unblock = threading.Event()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(home.run(_current_loop()), loop).result(5)
        loop.call_soon_threadsafe(unblock.wait)  # sync code holding the home loop's thread
        with pytest.raises(TimeoutError, match="did not answer"):
            asyncio.run(home.run(_current_loop()))
    finally:
        unblock.set()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def _current_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()
