"""The database query cache: SELECT results cached at the SQLAlchemy boundary.

``QueryCache(cache, engine)`` hooks a SQLAlchemy ``Engine`` or ``AsyncEngine``.
A SELECT asking for it (``.execution_options(stratacache=True)``, or every
eligible SELECT with ``cache_all=True``) is answered from the cache; writes
through the same engine invalidate, once their transaction commits, every
cached result that read the tables they wrote, in every tier and every process.

The rules:

* **Keys**: the result identity (URL without password), dialect, the SQL sent and
  its bound parameters encoded canonically. Writes invalidate under a coarser
  identity (backend and database name, or ``database_id=``), so every spelling
  of one database's URL invalidates together.
* **Dependencies**: every table of the statement (joins, subqueries, CTEs,
  unions, ORM eager joins); textual SELECTs depend on every identifier they
  contain; a write whose tables are unknown (DDL, ``CALL``, unrecognised text)
  invalidates the whole database.
* **Transactions**: invalidation after commit, never on rollback; a
  transaction that wrote a table reads it from the database, and nothing it
  reads is stored. ``COMMIT``, ``ROLLBACK``, ``BEGIN`` … sent as SQL text are
  understood (or, when not, the database is invalidated and the connection stops
  caching); reads inside a transaction begun by SQL text are not cached.
* **Never cached**: volatile or unknown functions, row locks, streaming
  results, transactions at REPEATABLE READ or SERIALIZABLE (a cached result
  would break their snapshot; SQLite, whose reads outside a transaction open
  no snapshot, is exempt; an open SQLite transaction that has not written is not),
  and reads on a connection whose session state was changed by a ``SET``,
  ``RESET``, ``DISCARD`` or ``PRAGMA`` assignment.
"""

from __future__ import annotations

from .querycache import QueryCache, from_cache
from .stats import QueryCacheCollector

__all__ = ["QueryCache", "QueryCacheCollector", "from_cache"]
