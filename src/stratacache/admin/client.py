"""``AdminClient``: talk to a running admin API (standard library only; used by the CLI)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode, urlsplit
from urllib.request import Request, urlopen

from ..core.errors import StratacacheError


class AdminError(StratacacheError):
    """A call to the admin API failed; the message is one line meant for an operator."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AdminClient:
    """A blocking client of ``AdminAPI``.

    Args:
        base_url: where the admin API is served (``http://127.0.0.1:8081`` or a mount path).
        token: bearer token (read or admin scope), or None for an anonymous loopback API.
        timeout: seconds per request.

    Raises:
        AdminError: ``base_url`` is not an http(s) URL.
    """

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AdminError(f"admin URL must be http(s)://host[:port][/path], not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None
    ) -> Any:
        """One call; returns the decoded JSON (or text) body.

        Raises:
            AdminError: the server answered with an error (its problem ``detail`` is the
                message), could not be reached, or sent something that is not JSON.
        """
        request = self._build(method, path, params, body)
        url = request.full_url
        try:
            with urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
                content_type = response.headers.get("Content-Type", "")
        except HTTPError as exc:
            raise AdminError(_problem(exc), exc.code) from None
        except (URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdminError(f"cannot reach {self.base_url}: {reason}") from None
        if "json" not in content_type:
            return raw.decode("utf-8", "replace")
        try:
            return json.loads(raw)
        except ValueError:
            raise AdminError(f"{url} did not answer with JSON") from None

    def _build(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        body: Any,
        accept: str = "application/json",
    ) -> Request:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = self.base_url + path + (f"?{urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        request = Request(url, data=data, method=method)
        request.add_header("Accept", accept)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        return request

    # -- the API's routes --------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return dict(self.request("GET", "/stats"))

    def keys(self, prefix: str = "", limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
        params = {"prefix": prefix, "limit": limit, "cursor": cursor}
        return dict(self.request("GET", "/keys", params=params))

    def entry(self, key: str, value: bool = False) -> dict[str, Any]:
        params = {"value": 1} if value else None
        return dict(self.request("GET", f"/entries/{quote(key, safe='')}", params=params))

    def invalidate(
        self,
        keys: list[str] | None = None,
        tags: list[str] | None = None,
        prefix: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        body = {"keys": keys or [], "tags": tags or [], "prefix": prefix, "reason": reason}
        return dict(self.request("POST", "/invalidate", body=body))

    def warmers(self) -> list[str]:
        return list(self.request("GET", "/warmers")["warmers"])

    def warm(self, warmers: list[str] | None = None, reason: str | None = None) -> dict[str, Any]:
        return dict(self.request("POST", "/warm", body={"warmers": warmers, "reason": reason}))

    def warm_progress(
        self, warmers: list[str] | None = None, reason: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Warm with progress: yields ``{"total"}``, then ``{"done", "warmed", "failed"}``
        lines as the server sends them, then ``{"summary": {...}}``.

        Raises:
            AdminError: as ``request``, or when the server reports a failure mid-way.
        """
        request = self._build(
            "POST", "/warm", None, {"warmers": warmers, "reason": reason}, "application/x-ndjson"
        )
        try:
            with urlopen(request, timeout=self.timeout) as response:
                for raw in response:
                    if not raw.strip():
                        continue
                    event = json.loads(raw)
                    if "error" in event:
                        raise AdminError(f"warming failed: {event['error']}")
                    yield event
        except HTTPError as exc:
            raise AdminError(_problem(exc), exc.code) from None
        except (URLError, OSError) as exc:
            reason_text = getattr(exc, "reason", exc)
            raise AdminError(f"cannot reach {self.base_url}: {reason_text}") from None
        except ValueError:
            raise AdminError(f"{self.base_url}/warm sent a line that is not JSON") from None

    def flush(self, reason: str | None = None) -> dict[str, Any]:
        return dict(self.request("POST", "/flush", body={"confirm": True, "reason": reason}))


def _problem(exc: HTTPError) -> str:
    """One line from an error response: its problem ``detail`` when it has one."""
    try:
        body = json.loads(exc.read() or b"{}")
        detail = body.get("detail") if isinstance(body, dict) else None
    except (ValueError, OSError):
        detail = None
    return f"HTTP {exc.code}: {detail or exc.reason}"
