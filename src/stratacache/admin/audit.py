"""Audit records of the admin API's mutating calls."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("stratacache.admin")


@dataclass(frozen=True, slots=True)
class AdminAction:
    """One audit record of a mutating admin call (handed to ``AdminAPI(audit=...)`` hooks).

    Attributes:
        time: epoch seconds when the call finished.
        actor: who asked (``admin-token@10.0.0.7``, ``anonymous@127.0.0.1``).
        action: ``invalidate``, ``delete``, ``warm`` or ``flush``.
        target: what it was asked to act on (keys, tags, prefix, warmers ...).
        reason: the reason the caller gave, if any.
        result: ``ok`` or ``error``.
        detail: the outcome (counts) or the error message.
    """

    time: float
    actor: str
    action: str
    target: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    result: str = "ok"
    detail: Any = None


def log_action(action: AdminAction) -> None:
    """The default audit hook: one INFO line on the ``stratacache.admin`` logger."""
    log.info(
        "admin %s by %s: %s (reason: %s) -> %s",
        action.action,
        action.actor,
        action.target,
        action.reason,
        action.result,
    )
