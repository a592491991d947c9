"""``AdminAPI``: a small pure-ASGI app to inspect and invalidate a cache over HTTP.

Routes (JSON in and out)::

    GET  /stats                  cache.stats()
    POST /invalidate             {"keys": [...], "tags": [...], "prefix": "...", "reason": "..."}
    POST /clear                  remove every entry of the namespace
    GET  /health                 {"ok": true}

Mount it on its own port or under a path of your app; protect it with
``token=`` (``Authorization: Bearer <token>``), compared in constant time.
Every invalidation carries ``actor`` (the client address) and ``reason`` to
the cache's audit hooks.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..core.errors import StratacacheError
from ..engine.cache import Cache

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 1 << 20


class AdminAPI:
    """ASGI app exposing ``cache`` for operators (see the module docstring for routes)."""

    def __init__(self, cache: Cache, *, token: str | None = None, root_path: str = "") -> None:
        self.cache = cache
        self._token = token.encode() if token else None
        self._root = root_path.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if self._root and path.startswith(self._root):
            path = path[len(self._root) :] or "/"
        if not self._authorized(scope):
            await _json(send, 401, {"error": "missing or wrong bearer token"})
            return
        route = (scope["method"], path)
        try:
            if route == ("GET", "/health"):
                await _json(send, 200, {"ok": True})
            elif route == ("GET", "/stats"):
                await _json(send, 200, self.cache.stats())
            elif route == ("POST", "/invalidate"):
                await self._invalidate(scope, receive, send)
            elif route == ("POST", "/clear"):
                await self.cache.clear()
                await _json(send, 200, {"cleared": True})
            elif path in ("/health", "/stats", "/invalidate", "/clear"):
                await _json(send, 405, {"error": f"{scope['method']} not allowed on {path}"})
            else:
                await _json(send, 404, {"error": f"no route {path}"})
        except StratacacheError as exc:
            await _json(send, 400, {"error": str(exc)})

    def _authorized(self, scope: Scope) -> bool:
        if self._token is None:
            return True
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value.startswith(b"Bearer "):
                return hmac.compare_digest(value[7:], self._token)
        return False

    async def _invalidate(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        if body is None:
            await _json(send, 413, {"error": f"body larger than {MAX_BODY} bytes"})
            return
        try:
            request = json.loads(body or b"{}")
        except ValueError as exc:
            await _json(send, 400, {"error": f"body is not JSON: {exc}"})
            return
        if not isinstance(request, dict) or not set(request) <= {
            "keys",
            "tags",
            "prefix",
            "reason",
        }:
            await _json(send, 400, {"error": "expected an object with keys, tags, prefix, reason"})
            return
        keys, tags, prefix = request.get("keys", []), request.get("tags", []), request.get("prefix")
        if (
            not _strings(keys)
            or not _strings(tags)
            or not (prefix is None or isinstance(prefix, str))
        ):
            await _json(send, 400, {"error": "keys and tags are lists of strings; prefix a string"})
            return
        if not (keys or tags or prefix):
            await _json(send, 400, {"error": "nothing to invalidate: give keys, tags or prefix"})
            return
        client = scope.get("client") or ("unknown", 0)
        reason = request.get("reason") or "admin API"
        await self.cache.invalidate(
            keys=keys, tags=tags, prefix=prefix, reason=f"{reason} (by {client[0]})"
        )
        await _json(send, 200, {"invalidated": {"keys": keys, "tags": tags, "prefix": prefix}})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.cache.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.cache.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _json(send: Send, status: int, payload: Any) -> None:
    body = json.dumps(payload, default=str).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
