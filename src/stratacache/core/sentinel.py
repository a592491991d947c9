"""Typed sentinels: ``MISS`` (absent, as distinct from a cached ``None``) and ``UNSET``.

Both are single-member enums, so a type checker narrows ``x is MISS`` /
``x is UNSET`` exactly (``Miss`` / ``Unset`` are their types in annotations).
"""

from __future__ import annotations

import enum
from typing import Final


class Miss(enum.Enum):
    """The type of ``MISS``."""

    MISS = "MISS"

    def __repr__(self) -> str:
        return "MISS"

    def __bool__(self) -> bool:
        return False


MISS: Final = Miss.MISS
"""Returned internally (and by ``get(..., default=MISS)``) when nothing is cached."""


class Unset(enum.Enum):
    """The type of ``UNSET``: e.g. ``ttl: float | None | Unset = UNSET``."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET
"""Marks an argument the caller did not give, so the cache's default applies
(distinct from ``None``, which often means "no expiry")."""
