"""``SQLTier``: a shared tier in a SQL table via SQLAlchemy Core (SQLite and PostgreSQL).

Two tables. ``entries``: key (PK), codec bytes (NULL marks a *tombstone* left by a
delete), ``expires_at`` (NULL: never), ``tags`` as ``|hex(tag)|…|`` and ``seq``,
the namespace sequence number current when the entry's load began (from the
lease) or when it was written. ``versions``: per namespace, the sequence
counter (``#``), and for each tag (``t<hex>``) or deleted prefix (``p<prefix>``)
the sequence number of its last invalidation.

An entry is outdated when one of its tags was invalidated at a later sequence
number than the entry's own: the check is a ``NOT EXISTS`` inside the read's
SELECT, so a hit is one statement, and invalidating a tag costs one counter
bump plus one row per tag. Tag rows are never deleted: one that vanished would
make outdated entries fresh again. A lease is the current sequence number; a
leased set is refused when a tag, a prefix or the key itself (tombstone) moved
past it. Prefix rows and tombstones are swept a day after they were written.

The engine is synchronous; async methods run the same code in a small
dedicated thread pool. Expiry is enforced on read and by ``sweep()``, which a
background task runs every ``sweep_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from ..core.durations import check_duration, check_optional
from ..core.entry import Entry
from ..core.errors import ConfigError, DeserializationError, TierError
from ..core.tier import TierContext

try:
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql, sqlite
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ConfigError("SQLTier needs SQLAlchemy: pip install 'stratacache[sql]'") from exc

from . import _sql_atomic

T = TypeVar("T")
log = logging.getLogger(__name__)

#: how long tombstones and prefix rows void leases; no loader runs that long
LEASE_HORIZON = 86_400.0
_COUNTER = "#"


@dataclass(frozen=True, slots=True)
class SQLLease:
    """The namespace sequence number when a load began."""

    seq: int


def _tag_text(tags: Sequence[str]) -> str:
    return "|" + "|".join(t.encode().hex() for t in tags) + "|" if tags else ""


class SQLTier:
    """A tier in a SQL table; rows expire at their entry's end, capped by ``ttl``.

    Args:
        url: SQLAlchemy URL, ``sqlite:///path.db`` or ``postgresql+psycopg://...``.
        engine: an existing SQLAlchemy ``Engine`` to use instead of ``url``.
        table: name of the entries table; the versions table is ``<table>_versions``.
        ttl: upper bound in seconds on how long an entry is kept.
        sweep_interval: seconds between background deletions of expired rows (0: none).
        name: name in stats and logs.
        workers: threads running the async methods.
    """

    shared = True

    def __init__(
        self,
        url: str = "sqlite:///stratacache.db",
        *,
        engine: sa.Engine | None = None,
        table: str = "stratacache_entries",
        ttl: float | None = None,
        sweep_interval: float = 60.0,
        name: str = "sql",
        workers: int = 8,
    ) -> None:
        ttl = check_optional("SQLTier ttl", ttl)
        sweep_interval = check_duration("SQLTier sweep_interval", sweep_interval, zero_ok=True)
        self.name = name
        self.ttl = ttl
        self.sweep_interval = sweep_interval
        self.decode_errors = 0
        self._owns_engine = engine is None
        self.engine = engine if engine is not None else _make_engine(url)
        dialect = self.engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise ConfigError(f"SQLTier supports sqlite and postgresql, not {dialect!r}")
        self._insert: Callable[..., Any] = (
            postgresql.insert if dialect == "postgresql" else sqlite.insert
        )
        self._pg = dialect == "postgresql"
        md = sa.MetaData()
        self.entries = sa.Table(
            table,
            md,
            sa.Column("key", sa.Text, primary_key=True),
            sa.Column("value", sa.LargeBinary, nullable=True),
            sa.Column("expires_at", sa.Float, nullable=True, index=True),
            sa.Column("tags", sa.Text, nullable=False, default=""),
            sa.Column("seq", sa.BigInteger, nullable=False, default=0),
        )
        self.versions = sa.Table(
            table + "_versions",
            md,
            sa.Column("namespace", sa.Text, primary_key=True),
            sa.Column("name", sa.Text, primary_key=True),
            sa.Column("seq", sa.BigInteger, nullable=False),
            sa.Column("updated", sa.Float, nullable=False),
            sa.Index(f"ix_{table}_versions_seq", "namespace", "seq"),
        )
        self._metadata = md
        self._workers = workers
        self._executor: ThreadPoolExecutor | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._context = TierContext(namespace="")

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, context: TierContext) -> None:
        self._context = context
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="stratacache-sql")
        await self._call("start", self._metadata.create_all, self.engine)
        if self.sweep_interval and self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, wait=True)  # never block the loop
        if self._owns_engine:
            self.engine.dispose()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except TierError as exc:
                log.warning("stratacache: sweep of tier %r failed: %s", self.name, exc)

    async def sweep(self) -> int:
        """Delete expired rows (and old tombstones/prefix rows); returns how many entries."""
        return await self._call("sweep", self.sweep_sync)

    def sweep_sync(self) -> int:
        now = self._now()
        e, v = self.entries, self.versions
        with self._begin("sweep") as conn:
            done = conn.execute(sa.delete(e).where(e.c.expires_at <= now)).rowcount
            conn.execute(
                sa.delete(v).where(v.c.name.startswith("p"), v.c.updated < now - LEASE_HORIZON)
            )
        return int(done)

    # -- sync API ----------------------------------------------------------------------------
    def get_sync(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
        return self.get_many_sync([key]).get(key)

    def get_many_sync(self, keys: Sequence[str]) -> dict[str, Entry]:
        if not keys:
            return {}
        now = self._now()
        params = {"keys": list(keys), "now": now, "ns": self._context.namespace}
        with self._connect("get") as conn:
            rows = conn.execute(self._get_query, params).all()
        found = {}
        for key, data in rows:
            entry = self._decode(data, now)
            if entry is not None:
                found[key] = entry
        return found

    @functools.cached_property
    def _get_query(self) -> sa.Select[Any]:
        """The read statement, built once (bound: ``keys``, ``now``, ``ns``); a hit is one query
        and entries outdated by a later tag invalidation are filtered out in it."""
        e, v = self.entries, self.versions
        outdated = sa.exists().where(
            v.c.namespace == sa.bindparam("ns"),
            v.c.seq > e.c.seq,
            v.c.name.startswith("t"),
            e.c.tags.contains("|" + sa.func.substr(v.c.name, 2, type_=sa.Text) + "|"),
        )
        return sa.select(e.c.key, e.c.value).where(
            e.c.key.in_(sa.bindparam("keys", expanding=True)),
            e.c.value.is_not(None),
            sa.or_(e.c.expires_at.is_(None), e.c.expires_at > sa.bindparam("now")),
            sa.or_(e.c.tags == "", ~outdated),
        )

    def lease_sync(self, key: str, tags: Sequence[str]) -> object | None:
        with self._connect("lease") as conn:
            return SQLLease(self._current_seq(conn))

    def set_sync(self, key: str, entry: Entry, lease: object | None = None) -> bool:
        row = self._row(key, entry)
        if row is None:
            return True  # already past its end: nothing worth storing
        with self._begin("set") as conn:
            if not isinstance(lease, SQLLease):
                row["seq"] = self._current_seq(conn)
                conn.execute(self._upsert_stmt, row)
                return True
            if self._pg:  # serialize with invalidations, which update the counter row
                conn.execute(self._counter_row().with_for_update(read=True))
            row["seq"] = lease.seq
            stored = conn.execute(self._leased_upsert(key, row, lease.seq)).first()
            return stored is not None

    def set_many_sync(self, entries: Mapping[str, Entry]) -> None:
        rows = [r for k, e in entries.items() if (r := self._row(k, e)) is not None]
        if not rows:
            return
        with self._begin("set_many") as conn:
            seq = self._current_seq(conn)
            for row in rows:
                row["seq"] = seq
            conn.execute(self._upsert_stmt, rows)

    def delete_many_sync(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        e = self.entries
        now = self._now()
        with self._begin("delete_many") as conn:
            seq = self._bump(conn)
            live = conn.execute(
                sa.select(sa.func.count())
                .select_from(e)
                .where(e.c.key.in_(list(keys)), e.c.value.is_not(None))
            ).scalar_one()
            tomb = {"value": None, "expires_at": now + LEASE_HORIZON, "tags": "", "seq": seq}
            conn.execute(self._upsert_stmt, [{"key": k, **tomb} for k in dict.fromkeys(keys)])
        return int(live)

    def delete_prefix_sync(self, prefix: str) -> int:
        e = self.entries
        with self._begin("delete_prefix") as conn:
            seq = self._bump(conn)
            self._mark(conn, ["p" + prefix], seq)
            query = sa.delete(e).where(e.c.key.startswith(prefix, autoescape=True))
            return int(conn.execute(query.where(e.c.value.is_not(None))).rowcount)

    def invalidate_tags_sync(self, tags: Sequence[str]) -> None:
        if not tags:
            return
        with self._begin("invalidate_tags") as conn:
            seq = self._bump(conn)
            self._mark(conn, ["t" + t.encode().hex() for t in dict.fromkeys(tags)], seq)

    def clear_sync(self) -> None:
        self.delete_prefix_sync(self._context.namespace + ":")

    # -- atomic read-modify-write (``_sql_atomic``; used by add/incr/touch) --------------------
    def read_versioned_sync(self, key: str) -> tuple[Entry | None, object]:
        return _sql_atomic.read_versioned(self, key)

    def compare_and_set_sync(self, key: str, token: object, entry: Entry) -> bool:
        return _sql_atomic.compare_and_set(self, key, token, entry)

    async def read_versioned(self, key: str) -> tuple[Entry | None, object]:
        return await self._call("read_versioned", self.read_versioned_sync, key)

    async def compare_and_set(self, key: str, token: object, entry: Entry) -> bool:
        return await self._call("cas", self.compare_and_set_sync, key, token, entry)

    # -- async API: the sync code in the tier's threads ---------------------------------------
    async def get(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
        return await self._call("get", self.get_sync, key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        return await self._call("get_many", self.get_many_sync, keys)

    async def lease(self, key: str, tags: Sequence[str]) -> object | None:
        return await self._call("lease", self.lease_sync, key, tags)

    async def set(self, key: str, entry: Entry, lease: object | None = None) -> bool:
        return await self._call("set", self.set_sync, key, entry, lease)

    async def set_many(self, entries: Mapping[str, Entry]) -> None:
        await self._call("set_many", self.set_many_sync, entries)

    async def delete_many(self, keys: Sequence[str]) -> int:
        return await self._call("delete_many", self.delete_many_sync, keys)

    async def delete_prefix(self, prefix: str) -> int:
        return await self._call("delete_prefix", self.delete_prefix_sync, prefix)

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        await self._call("invalidate_tags", self.invalidate_tags_sync, tags)

    async def clear(self) -> None:
        await self._call("clear", self.clear_sync)

    # -- internals ---------------------------------------------------------------------------
    async def _call(self, op: str, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise TierError(self.name, op, RuntimeError("tier not started"))
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise TierError(self.name, op, exc) from exc

    def _connect(self, op: str) -> _Translate:
        return _Translate(self, op, self.engine.connect)

    def _begin(self, op: str) -> _Translate:
        return _Translate(self, op, self.engine.begin)

    def _now(self) -> float:
        return float(self._context.clock.time())

    def _row(self, key: str, entry: Entry) -> dict[str, Any] | None:
        """The row storing ``entry``, or None when it is already past its end."""
        now = self._now()
        remaining = entry.keep_for(now, self.ttl)
        if remaining is not None and remaining <= 0:
            return None
        return {
            "key": key,
            "value": self._context.codec.encode(entry),
            "expires_at": None if remaining is None else now + remaining,
            "tags": _tag_text(entry.tags),
        }

    def _decode(self, data: bytes, now: float) -> Entry | None:
        try:
            entry = self._context.codec.decode(bytes(data))
        except DeserializationError:
            self.decode_errors += 1
            return None
        return None if entry.is_gone(now) else entry

    @functools.cached_property
    def _upsert_stmt(self) -> Any:
        """INSERT … ON CONFLICT UPDATE of one entry row, built once."""
        stmt = self._insert(self.entries)
        cols = ("value", "expires_at", "tags", "seq")
        return stmt.on_conflict_do_update(
            index_elements=["key"], set_={c: stmt.excluded[c] for c in cols}
        )

    def _leased_upsert(self, key: str, row: dict[str, Any], seq: int) -> Any:
        """INSERT … SELECT that writes nothing if a tag, prefix or the key moved past ``seq``."""
        e, v = self.entries, self.versions
        tag_names = ["t" + t for t in row["tags"].strip("|").split("|") if t]
        key_lit = sa.literal(key, sa.Text)
        prefix_hit = sa.and_(
            v.c.name.startswith("p"),
            sa.func.substr(key_lit, 1, sa.func.length(v.c.name) - 1) == sa.func.substr(v.c.name, 2),
        )
        voided = sa.exists().where(
            v.c.namespace == self._context.namespace,
            v.c.seq > seq,
            sa.or_(v.c.name.in_(tag_names), prefix_hit) if tag_names else prefix_hit,
        )
        source = sa.select(
            *(sa.literal(row[c], e.c[c].type).label(c) for c in ("key", "value", "expires_at")),
            sa.literal(row["tags"], sa.Text).label("tags"),
            sa.literal(seq, sa.BigInteger).label("seq"),
        ).where(~voided)
        stmt = self._insert(e).from_select(["key", "value", "expires_at", "tags", "seq"], source)
        cols = ("value", "expires_at", "tags", "seq")
        return stmt.on_conflict_do_update(
            index_elements=["key"], set_={c: stmt.excluded[c] for c in cols}, where=e.c.seq <= seq
        ).returning(e.c.key)

    def _counter_row(self) -> sa.Select[Any]:
        v = self.versions
        return sa.select(v.c.seq).where(
            v.c.namespace == self._context.namespace, v.c.name == _COUNTER
        )

    def _current_seq(self, conn: sa.Connection) -> int:
        return int(conn.execute(self._counter_row()).scalar() or 0)

    def _bump(self, conn: sa.Connection) -> int:
        """Advance the namespace counter; returns the new sequence number."""
        v = self.versions
        stmt = self._insert(v).values(
            namespace=self._context.namespace, name=_COUNTER, seq=1, updated=self._now()
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["namespace", "name"],
            set_={"seq": v.c.seq + 1, "updated": stmt.excluded.updated},
        ).returning(v.c.seq)
        return int(conn.execute(stmt).scalar_one())

    def _mark(self, conn: sa.Connection, names: Sequence[str], seq: int) -> None:
        """Record that ``names`` (tags or prefixes) were invalidated at ``seq``."""
        stmt = self._insert(self.versions)
        stmt = stmt.on_conflict_do_update(
            index_elements=["namespace", "name"],
            set_={"seq": stmt.excluded.seq, "updated": stmt.excluded.updated},
        )
        ns, now = self._context.namespace, self._now()
        conn.execute(
            stmt, [{"namespace": ns, "name": n, "seq": seq, "updated": now} for n in names]
        )


class _Translate:
    """A connection context that turns driver errors into ``TierError``."""

    def __init__(self, tier: SQLTier, op: str, opener: Callable[[], Any]) -> None:
        self._tier, self._op, self._opener = tier, op, opener
        self._cm: Any = None

    def __enter__(self) -> sa.Connection:
        try:
            self._cm = self._opener()
            return self._cm.__enter__()  # type: ignore[no-any-return]
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise TierError(self._tier.name, self._op, exc) from exc

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self._cm.__exit__(*exc_info)
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise TierError(self._tier.name, self._op, exc) from exc
        if isinstance(exc_info[1], (sa.exc.SQLAlchemyError, OSError)):
            raise TierError(self._tier.name, self._op, exc_info[1]) from exc_info[1]


def _make_engine(url: str) -> sa.Engine:
    """An engine for ``url``: SQLite in WAL mode with a busy timeout; short connect timeouts."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": 5.0, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

        return engine
    if parsed.get_backend_name() == "postgresql":
        return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 2})
    return sa.create_engine(url)
