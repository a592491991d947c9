"""The portal moved to ``core.portal`` (the Redis bus beside the engine runs on one too)."""

from ..core.portal import Portal, _await

__all__ = ["Portal", "_await"]
