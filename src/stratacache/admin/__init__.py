"""The admin HTTP API: stats, invalidation and clearing over HTTP, as a pure ASGI app."""

from .app import AdminAPI

__all__ = ["AdminAPI"]
