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
        """Rebuild from ``to_value()`` output; None for anything of another shape."""
        if not isinstance(value, dict):
            return None
        try:
            headers = [(bytes(n), bytes(v)) for n, v in value["h"]]
            body = value["b"]
            if not isinstance(body, bytes):
                return None
            return cls(
                status=int(value["s"]),
                headers=headers,
                body=body,
                response_time=float(value["t"]),
                initial_age=float(value["a"]),
                lifetime=float(value["l"]),
                swr=int(value["w"]),
                sie=int(value["e"]),
                must_revalidate=bool(value["m"]),
                auth_ok=bool(value["z"]),
                etag=value["g"],
                last_modified=value["d"],
            )
        except (KeyError, TypeError, ValueError):
            return None
