"""What the HTTP cache policy decides: verdicts on stored responses, requests, storage plans.

Why: these plain records cross from the policy to both middleware; kept apart from
the rules that fill them, they are what the ASGI and WSGI drivers read.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from .rules import Directives
from .stored import StoredResponse

#: header fields as ``(name, value)`` byte pairs, as ASGI carries them
Headers = list[tuple[bytes, bytes]]


class Verdict(enum.Enum):
    """What a stored response is good for, for one request."""

    FRESH = "HIT"
    STALE_OK = "STALE"  # stale, servable now (max-stale, or stale-while-revalidate: refresh it)
    STALE_IF_ERROR = "STALE-IF-ERROR"  # stale; only if the origin fails
    UNUSABLE = "MISS"


@dataclass(slots=True)
class Lookup:
    """A stored response judged against a request."""

    verdict: Verdict
    stored: StoredResponse
    age: int
    revalidate: bool  # serve it, and refresh in the background

    @property
    def answers(self) -> bool:
        """Whether this answers the request without the app (a stale-if-error copy does not:
        the app is asked first, and the copy only replaces an error)."""
        return self.verdict is not Verdict.STALE_IF_ERROR

    def in_place_of_error(self) -> Lookup:
        """This stale-if-error copy, marked as answering in place of the app's error."""
        self.verdict = Verdict.STALE_OK
        return self


@dataclass(slots=True)
class Request:
    """The parts of a request the policy reads; ``headers`` maps lower-case names to values."""

    method: str
    url: str
    path: str
    headers: Mapping[str, str]
    directives: Directives
    cc: dict[str, str | None]
    may_serve: bool
    may_store: bool
    cookies: Mapping[str, str] = field(default_factory=dict)  # parsed ``Cookie`` header
    #: the URL names the request's target (its ``Host`` is a valid host[:port]); when not,
    #: the request is neither served, stored nor lets an unsafe method purge anything
    keyed: bool = True


@dataclass(slots=True)
class Plan:
    """What to do with an origin response: the headers to send and, if storable, how to store."""

    client_headers: Headers
    store: bool
    stored_headers: Headers
    status: int
    lifetime: float
    ttl: float
    tags: list[str]
    vary: tuple[str, ...]
    initial_age: float = 0.0
    swr: int = 0
    sie: int = 0
    must_revalidate: bool = False
    auth_ok: bool = False
    length: int | None = None  # the declared Content-Length of a stored response
