"""The admin HTTP API: stats, metrics, keys, entries, invalidation, warming and a dashboard."""

from .app import AdminAPI
from .routes import AdminAction

__all__ = ["AdminAPI", "AdminAction"]
