"""The typed ``MISS`` sentinel: absent, as distinct from a cached ``None``."""

from __future__ import annotations

import enum
from typing import Final


class _Miss(enum.Enum):
    MISS = "MISS"

    def __repr__(self) -> str:
        return "MISS"

    def __bool__(self) -> bool:
        return False


MISS: Final = _Miss.MISS
"""Returned internally (and by ``get(..., default=MISS)``) when nothing is cached."""

Miss = _Miss
