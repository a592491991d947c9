"""Errors as RFC 9457 problem details (``application/problem+json``)."""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

PROBLEM_TYPE = "application/problem+json"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Problem(Exception):
    """Raised by a handler to answer with a problem document.

    Args:
        status: HTTP status code.
        detail: one sentence for the operator: what was wrong and what to do.
        headers: extra response headers (``WWW-Authenticate`` on a 401).
        extra: RFC 9457 extension members (e.g. ``errors`` for a bad body).
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def problem_response(request: Request, problem: Problem) -> Response:
    """The ``application/problem+json`` response for ``problem``."""
    body = {
        "type": "about:blank",
        "title": _TITLES.get(problem.status, "Error"),
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
        **problem.extra,
    }
    return Response(dumps(body), problem.status, headers=problem.headers, media_type=PROBLEM_TYPE)


def json_response(data: Any, status: int = 200) -> Response:
    """A JSON response that also carries values JSON has no type for (as their ``repr``)."""
    return Response(dumps(data), status, media_type="application/json")


def dumps(data: Any) -> bytes:
    """Strict JSON (no NaN/Infinity), with unknown types and non-finite floats as strings."""
    return json.dumps(_clean(data), default=repr, allow_nan=False).encode()


def _clean(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return str(data)
    if isinstance(data, dict):
        return {str(k): _clean(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_clean(v) for v in data]
    if isinstance(data, (bytes, bytearray)):
        return repr(bytes(data))
    return data
