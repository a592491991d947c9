"""``StoredResponse``: one cached HTTP response and what its freshness was computed from.

It travels through the cache as a plain msgpack-able dict (short keys, bytes
headers and body), so any tier can hold it and nothing foreign is executed.
A dict that does not have the expected shape is treated as a miss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["StoredResponse"]


@dataclass(slots=True)
class StoredResponse:
    """A response as stored: status, end-to-end headers (lower-case names), body, freshness data."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    response_time: float  # epoch seconds when the origin's response was complete
    initial_age: float  # the origin's Age header (RFC 9111 §4.2.3 corrected_initial_age)
    lifetime: float  # freshness lifetime in seconds (§4.2.1)
    swr: int = 0  # stale-while-revalidate window, seconds
    sie: int = 0  # stale-if-error window, seconds
    must_revalidate: bool = False
    auth_ok: bool = False  # may answer a request carrying Authorization (§3.5)
    etag: str | None = None
    last_modified: float | None = None

    def age(self, now: float) -> float:
        """Current age (§4.2.3): what it had when stored plus the time it spent here."""
        return self.initial_age + max(0.0, now - self.response_time)

    def to_value(self) -> dict[str, Any]:
        """The msgpack-able form written to the cache."""
        return {
            "s": self.status,
            "h": [[n, v] for n, v in self.headers],
            "b": self.body,
            "t": self.response_time,
            "a": self.initial_age,
            "l": self.lifetime,
            "w": self.swr,
            "e": self.sie,
            "m": self.must_revalidate,
            "z": self.auth_ok,
            "g": self.etag,
            "d": self.last_modified,
        }

    @classmethod
    def from_value(cls, value: object) -> StoredResponse | None:
        """Rebuild from ``to_value()`` output; None for anything of another shape.

        Whoever can write to a shared tier can put any msgpack value under a page's key,
        so every field is checked for its type and range before it is used.
        """
        if not isinstance(value, dict):
            return None
        try:
            raw_headers, body, status = value["h"], value["b"], value["s"]
            if not (isinstance(body, bytes) and isinstance(raw_headers, list)):
                return None
            if not (isinstance(status, int) and 100 <= status <= 999):
                return None
            headers = []
            for pair in raw_headers:
                name, field = pair
                if not (isinstance(name, bytes) and isinstance(field, bytes)):
                    return None
                headers.append((name, field))
            etag, modified = value["g"], value["d"]
            if not (etag is None or isinstance(etag, str)):
                return None
            if not (modified is None or _finite(modified)):
                return None
            times = [value[k] for k in ("t", "a", "l", "w", "e")]
            if not all(_finite(t) for t in times):
                return None
            return cls(
                status=status,
                headers=headers,
                body=body,
                response_time=float(times[0]),
                initial_age=float(times[1]),
                lifetime=float(times[2]),
                swr=int(times[3]),
                sie=int(times[4]),
                must_revalidate=bool(value["m"]),
                auth_ok=bool(value["z"]),
                etag=etag,
                last_modified=None if modified is None else float(modified),
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            return None


#: bound on stored times and durations (seconds): far past any real date, and small
#: enough that sums of them stay finite
_MAX_SECONDS = 1e15


def _finite(number: object) -> bool:
    """A real number (not a bool) within ``±_MAX_SECONDS``: no NaN, infinity or huge int."""
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return False
    return -_MAX_SECONDS <= number <= _MAX_SECONDS
