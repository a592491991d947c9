"""Redis implementations of the fleet protocols (``core.fleet``): bus, lock, hot set.

Beside ``tiers``: these modules import only ``core`` and redis-py, and the engine
never imports them (a ``RedisTier`` builds the default bus and lock on its own
connection; users may build them directly).
"""

from .bus import BusUnavailable, RedisBus
from .connection import RedisConnection
from .hotkeys import CountMinSketch, HotKeys, TopK
from .lock import RedisLock
from .tracking import RedisTracker, TrackingUnsupported
from .tracking_group import TrackingGroup

__all__ = [
    "BusUnavailable",
    "CountMinSketch",
    "HotKeys",
    "RedisBus",
    "RedisConnection",
    "RedisLock",
    "RedisTracker",
    "TopK",
    "TrackingGroup",
    "TrackingUnsupported",
]
