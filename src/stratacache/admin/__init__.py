"""The admin HTTP API: stats, metrics, keys, entries, invalidation, warming and a dashboard.

``AdminAPI`` needs the ``[web]`` extra (Starlette); it is imported on first use,
so the command line and ``AdminClient`` work without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .client import AdminClient, AdminError

if TYPE_CHECKING:
    from .app import AdminAPI
    from .audit import AdminAction


def __getattr__(name: str) -> Any:
    if name == "AdminAPI":
        from .app import AdminAPI

        return AdminAPI
    if name == "AdminAction":
        from .audit import AdminAction

        return AdminAction
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AdminAPI", "AdminAction", "AdminClient", "AdminError"]
