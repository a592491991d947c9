"""Bearer tokens with two scopes (read, admin) and the anonymous-loopback rule."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from starlette.requests import Request

from ..core.errors import ConfigError
from .problems import Problem

READ = "read"
ADMIN = "admin"
#: shortest token accepted: long enough that guessing is hopeless
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request: the scope they hold and the actor recorded in the audit trail."""

    scope: str
    actor: str


class Guard:
    """Decides the scope of each request (see ``AdminAPI`` for the rules).

    Raises:
        ConfigError: no token and not ``allow_anonymous``; a token shorter than
            ``MIN_TOKEN_LENGTH``; the same token for both scopes.
    """

    def __init__(self, token: str | None, read_token: str | None, allow_anonymous: bool) -> None:
        for name, value in (("token", token), ("read_token", read_token)):
            if value is not None and (not isinstance(value, str) or len(value) < MIN_TOKEN_LENGTH):
                raise ConfigError(
                    f"AdminAPI {name} must be a string of at least {MIN_TOKEN_LENGTH} characters"
                )
        if token is None and read_token is None and not allow_anonymous:
            raise ConfigError(
                "AdminAPI needs token= (admin scope) and/or read_token= (read scope); "
                "pass allow_anonymous=True to serve loopback clients without a token"
            )
        if token is not None and token == read_token:
            raise ConfigError("AdminAPI token and read_token must differ")
        self._admin = token.encode() if token else None
        self._read = read_token.encode() if read_token else None
        self.anonymous = allow_anonymous

    def caller(self, request: Request) -> Caller | None:
        """The caller's scope, or None when the request carries no token.

        Raises:
            Problem: 401 for a malformed or wrong token, 403 for a non-loopback
                client of an anonymous API.
        """
        host = request.client.host if request.client else None
        where = host or "unknown"
        header = request.headers.get("authorization")
        if header is None:
            if self.anonymous:
                if not _loopback(host):
                    raise Problem(403, "this admin API answers loopback clients only")
                return Caller(ADMIN, f"anonymous@{where}")
            return None
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            raise _unauthorized("the Authorization header must be 'Bearer <token>'")
        given = presented.strip().encode()
        # compare with both tokens every time, so timing tells nothing about which one matched
        is_admin = self._admin is not None and hmac.compare_digest(given, self._admin)
        is_read = self._read is not None and hmac.compare_digest(given, self._read)
        if is_admin:
            return Caller(ADMIN, f"admin-token@{where}")
        if is_read:
            return Caller(READ, f"read-token@{where}")
        raise _unauthorized("wrong bearer token")

    def require(self, request: Request, scope: str) -> Caller:
        """The caller, if it holds ``scope`` (admin implies read); raises a 401/403 problem."""
        caller = self.caller(request)
        if caller is None:
            raise _unauthorized("this route needs a bearer token (Authorization: Bearer <token>)")
        if scope == ADMIN and caller.scope != ADMIN:
            raise Problem(403, "this route needs the admin token; the read token is not enough")
        return caller

    def check_open(self, request: Request) -> None:
        """For routes open without a token: still apply the loopback rule when anonymous."""
        if self.anonymous and request.headers.get("authorization") is None:
            self.caller(request)


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="stratacache"'})
