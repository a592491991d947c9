"""Redis implementations of the fleet protocols (``core.fleet``): bus, lock, hot set.

Beside ``tiers``: these modules import only ``core`` and redis-py, and the engine
never imports them (a ``RedisTier`` builds the default bus and lock on its own
connection; users may build them directly).
"""

from .bus import RedisBus
from .hotkeys import CountMinSketch, HotKeys, TopK
from .lock import RedisLock
from .tracking import RedisTracker, TrackingUnsupported

__all__ = [
    "CountMinSketch",
    "HotKeys",
    "RedisBus",
    "RedisLock",
    "RedisTracker",
    "TopK",
    "TrackingUnsupported",
]
