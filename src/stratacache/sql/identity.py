"""Which database an engine talks to: the identity results are keyed by, and the one writes announce.

Two identities, erring in opposite directions. A result's key must never be
shared by two databases that could answer differently, so it is *fine*: the
whole URL (backend, user, host, port, database, query), never the password.
A write's invalidation must reach every engine on the same database however
its URL is spelled (``localhost`` or ``127.0.0.1``, ``:5432`` or no port, a
read replica, a pooler, another role, ``application_name``), so it is
*coarse*: the backend family and the database name alone. Two databases of the
same name sharing one cache invalidate each other: extra misses, never a stale
row.

SQLite files are named by their real path in both. An in-memory or temporary
SQLite database (``:memory:``, an empty path, ``file::memory:``, a URI with
``mode=memory`` or ``vfs=memdb``) exists in one process only: its identity is
unique to the engine, or, when connections of one process share it (a named
``cache=shared`` or memdb database), to the process and its name.
"""

from __future__ import annotations

import getpass
import os
import re
import uuid
from collections.abc import Mapping

from sqlalchemy.engine import URL

_EXPLICIT = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_FAMILIES = {"mariadb": "mysql"}  # backends of one server family (one database, two dialects)

_process = uuid.uuid4().hex


def _new_process() -> None:
    global _process
    _process = uuid.uuid4().hex  # a forked child holds copies of the parent's memory databases


os.register_at_fork(after_in_child=_new_process)


def identities(url: URL) -> tuple[str, str]:
    """The identities writes invalidate under and results are keyed by (see the module doc)."""
    if url.get_backend_name() == "sqlite":
        identity = _sqlite_identity(url)  # computed once: an in-memory one is new each time
        return identity, identity
    return write_identity(url), result_identity(url)


def result_identity(url: URL) -> str:
    """The identity results are keyed by: the whole URL but the password (SQLite: see module doc)."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_identity(url)
    query = "&".join(f"{k}={url.query[k]}" for k in sorted(url.query))
    return (
        f"{url.get_backend_name()}://{url.username or ''}@{url.host or ''}:{url.port or ''}"
        f"/{url.database or ''}?{query}"
    )


def write_identity(url: URL) -> str:
    """The identity writes invalidate under: backend family and database name (SQLite: its file)."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_identity(url)
    family = _FAMILIES.get(backend, backend)
    return f"{family}:{_database_name(url, family).lower()}"


def explicit_id(value: str) -> str:
    """A ``database_id=`` given by the application, checked (used as is in tags)."""
    if not isinstance(value, str) or not _EXPLICIT.fullmatch(value):
        raise ValueError(
            f"database_id must be 1-64 letters, digits, '_', '.' or '-', not {value!r}"
        )
    return value


def _database_name(url: URL, family: str) -> str:
    query: Mapping[str, object] = url.query
    if url.database:
        return url.database
    named = query.get("dbname") or query.get("database")
    if isinstance(named, str) and named:
        return named
    if family == "postgresql":  # libpq's defaults: PGDATABASE, else the user name
        user = url.username or query.get("user") or os.environ.get("PGUSER") or _os_user()
        return os.environ.get("PGDATABASE") or str(user)
    return ""


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name known: every such engine shares one identity
        return ""


def _sqlite_identity(url: URL) -> str:
    database = url.database or ""
    options = dict(url.query)
    if database.startswith("file:"):  # a URI filename: file:path?query or file:///path
        path, _, inline = database[5:].partition("?")
        for pair in inline.split("&"):
            name, _, value = pair.partition("=")
            options.setdefault(name, value)
        if path.startswith("//"):
            path = path[2:]
    else:
        path = database
    memory = path in ("", ":memory:") or options.get("mode") == "memory"
    if memory or options.get("vfs") == "memdb":
        shared = options.get("cache") == "shared" or options.get("vfs") == "memdb"
        if shared and path not in ("", ":memory:"):
            return f"sqlite:memory:{_process}:{path}"  # one database per name in this process
        if shared:
            return f"sqlite:memory:{_process}:"
        return f"sqlite:memory:{uuid.uuid4().hex}"  # each engine its own (one per connection)
    return "sqlite:" + os.path.realpath(path)


__all__ = ["explicit_id", "identities", "result_identity", "write_identity"]
