"""Signals: sent only when someone listens, with the sender given."""

from __future__ import annotations

from typing import Any

from stratacache.engine import signals


def test_send_reaches_receivers_with_payload() -> None:
    """A connected receiver gets the sender and the keyword payload."""
    got: list[tuple[Any, dict[str, Any]]] = []
    sender = object()
    with signals.miss.connected_to(lambda s, **kw: got.append((s, kw))):
        signals.send(signals.miss, sender, key="k")
    assert got == [(sender, {"key": "k"})]


def test_send_without_receivers_is_a_no_op() -> None:
    """No receiver: nothing is sent (and nothing fails)."""
    assert not signals.evicted.receivers
    signals.send(signals.evicted, object(), key="k", tier="memory")
