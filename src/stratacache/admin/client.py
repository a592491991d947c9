"""``AdminClient``: talk to a running admin API (standard library only; used by the CLI)."""

from __future__ import annotations

import json
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
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = self.base_url + path + (f"?{urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        request = Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
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
