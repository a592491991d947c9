"""Transaction control sent as SQL text: textual COMMIT invalidates, ROLLBACK drops, BEGIN stops caching."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from tests.sql.models import CACHED, ExecutionCounter, Product, names, seed

import stratacache as sc
from stratacache.sql import QueryCache
from stratacache.sql.analysis import ALL, analyze_text
from stratacache.sql.txcontrol import classify


@pytest.mark.parametrize(
    ("sql", "action"),
    [
        ("COMMIT", "commit"),
        ("commit work;", "commit"),
        ("END", "commit"),
        ("END TRANSACTION", "commit"),
        ("COMMIT AND NO CHAIN", "commit"),
        ("COMMIT AND CHAIN", "commit-chain"),
        ("ROLLBACK", "rollback"),
        ("ABORT", "rollback"),
        ("rollback transaction and chain", "rollback-chain"),
        ("ROLLBACK TO SAVEPOINT s1", "keep"),
        ("ROLLBACK WORK TO s1", "keep"),
        ("SAVEPOINT s1", "savepoint"),
        ('RELEASE SAVEPOINT "s 1"', "release"),
        ("RELEASE s1", "release"),
        ("BEGIN", "begin"),
        ("BEGIN IMMEDIATE TRANSACTION", "begin"),
        ("START TRANSACTION READ ONLY", "begin"),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE", "begin-session"),
        ("START TRANSACTION ISOLATION LEVEL REPEATABLE READ", "begin-session"),
        ("COMMIT PREPARED 'tx1'", "unknown"),
        ("PREPARE TRANSACTION 'tx1'", "unknown"),
        ("XA COMMIT 'x'", "unknown"),
        ("BEGIN NOT ATOMIC UPDATE t SET a = 1", "unknown"),
        ("START REPLICA", "unknown"),
        ("UPDATE products SET name = 'x'; COMMIT", "unknown"),
        ("COMMIT; DELETE FROM products", "unknown"),
        ("/* done */ COMMIT -- now", "commit"),
    ],
)
def test_textual_transaction_control_is_classified(sql: str, action: str) -> None:
    """Each form maps to what it does to pending writes; anything not understood is ``unknown``."""
    analysis = analyze_text(sql)
    assert (analysis.kind, analysis.action) == ("transaction", action)


def test_a_prepare_that_is_not_two_phase_commit_is_not_transaction_control() -> None:
    """``PREPARE name AS …`` (a prepared statement) stays a write of unknown tables."""
    assert analyze_text("PREPARE q AS SELECT 1").tables == {ALL}
    assert classify("COMMIT") == "commit"


COMMITS: dict[str, Callable[[sa.Connection], object]] = {
    "exec_driver_sql COMMIT": lambda c: c.exec_driver_sql("COMMIT"),
    "text COMMIT": lambda c: c.execute(sa.text("COMMIT")),
    "text END": lambda c: c.execute(sa.text("END")),
    "COMMIT AND CHAIN": lambda c: c.exec_driver_sql("COMMIT AND CHAIN"),
    "COMMIT TRANSACTION": lambda c: c.exec_driver_sql("commit transaction"),
}
RENAME = sa.update(Product).where(Product.id == 1).values(name="globe")


@pytest.mark.parametrize("how", sorted(COMMITS))
def test_a_commit_sent_as_sql_invalidates(engine: sa.Engine, qc: QueryCache, how: str) -> None:
    """A write committed by ``COMMIT``/``END`` sent as text is seen by the next cached read."""
    if how == "COMMIT AND CHAIN" and engine.dialect.name == "sqlite":
        pytest.skip("SQLite has no COMMIT AND CHAIN")
    assert names(engine) == ["atlas", "novel", "kite"]
    with engine.connect() as conn:  # closed without conn.commit(): SQLAlchemy rolls back
        conn.execute(RENAME)
        COMMITS[how](conn)
    assert names(engine) == ["globe", "novel", "kite"]


def test_a_rollback_sent_as_sql_drops_the_pending_writes(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter
) -> None:
    """A write undone by a textual ROLLBACK invalidates nothing, even when SQLAlchemy then commits."""
    names(engine)
    with engine.connect() as conn:
        conn.execute(RENAME)
        conn.exec_driver_sql("ROLLBACK")
        conn.commit()
    assert counter.delta(lambda: names(engine)) == (["atlas", "novel", "kite"], 0)


@pytest.mark.parametrize("inner", ["release", "rollback-to"])
def test_a_textual_transaction_with_savepoints_invalidates_on_its_commit(
    engine: sa.Engine, qc: QueryCache, inner: str
) -> None:
    """BEGIN, SAVEPOINT, a write, RELEASE or ROLLBACK TO, a later write, COMMIT: all sent as text."""
    names(engine)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("BEGIN")
        conn.exec_driver_sql("SAVEPOINT s1")
        conn.execute(RENAME)
        conn.exec_driver_sql("RELEASE SAVEPOINT s1" if inner == "release" else "ROLLBACK TO s1")
        conn.execute(sa.update(Product).where(Product.id == 2).values(name="poems"))
        assert names(engine) == ["atlas", "novel", "kite"]  # not committed yet
        conn.exec_driver_sql("COMMIT")
    first = "globe" if inner == "release" else "atlas"
    assert names(engine) == [first, "poems", "kite"]


def test_writes_in_a_textual_transaction_on_an_autocommit_connection_wait_for_its_commit(
    engine: sa.Engine, qc: QueryCache
) -> None:
    """After a textual BEGIN an AUTOCOMMIT connection's writes invalidate at COMMIT, not as they run.

    Invalidating at the UPDATE would let a reader store the old row before the commit.
    """
    names(engine)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("BEGIN")
        conn.execute(RENAME)
        assert names(engine) == ["atlas", "novel", "kite"]  # read (and stored) before the commit
        conn.exec_driver_sql("COMMIT")
    assert names(engine) == ["globe", "novel", "kite"]


def test_reads_inside_a_textual_transaction_are_not_cached(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter
) -> None:
    """Between a textual BEGIN and its end, reads go to the database and nothing is stored."""
    names(engine)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("BEGIN")
        for _ in range(2):
            assert counter.delta(lambda: conn.execute(CACHED).scalars().all())[1] == 1
        conn.exec_driver_sql("COMMIT")
        assert counter.delta(lambda: conn.execute(CACHED).scalars().all())[1] == 0
    assert qc.stats()["uncached"]["textual transaction"] == 2


def test_transaction_control_not_understood_invalidates_the_database_and_stops_caching(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter
) -> None:
    """A COMMIT inside a multi-statement string is not parsed: all is invalidated, caching stops."""
    if engine.dialect.name == "sqlite":
        pytest.skip("the SQLite driver runs one statement per execute")
    names(engine)
    with engine.connect() as conn:
        conn.execute(RENAME)
        conn.exec_driver_sql("COMMIT; SELECT 1")
        assert names(engine) == ["globe", "novel", "kite"]
        for _ in range(2):
            assert counter.delta(lambda: conn.execute(CACHED).scalars().all())[1] == 1


def test_the_sqlite_recipe_that_emits_begin_stores_nothing_from_an_old_snapshot(
    tmp_path: Path, cache: sc.Cache
) -> None:
    """pysqlite with ``isolation_level=None`` and BEGIN sent on SQLAlchemy's begin (WAL).

    A reader's transaction holds a snapshot; a write commits elsewhere; a result the reader
    then reads from its old snapshot must not outlive its transaction in the cache.
    """
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'snap.db'}")
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")  # outside a transaction, or ignored
    with engine.begin() as conn:
        seed(conn)

    @event.listens_for(engine, "connect")
    def _autocommit(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite emits no BEGIN of its own

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    engine.pool.dispose()  # connections made from now on follow the recipe
    qc = QueryCache(cache, engine)
    by_id = sa.select(Product.price).where(Product.id == 1).execution_options(stratacache=True)
    total = sa.select(sa.func.sum(Product.price)).execution_options(stratacache=True)
    try:
        with engine.connect() as reader:
            assert reader.execute(by_id).scalar() == 30  # the snapshot opens here
            with engine.begin() as writer:
                writer.execute(sa.update(Product).values(price=Product.price * 100))
            assert reader.execute(total).scalar() == 50  # its snapshot: the old prices
        with engine.connect() as conn:
            assert conn.execute(total).scalar() == 5000
            assert conn.execute(by_id).scalar() == 3000
        assert qc.stats()["uncached"]["textual transaction"] >= 2
    finally:
        qc.detach()
        engine.dispose()


def test_a_textual_repeatable_read_transaction_stores_nothing_from_its_snapshot(
    engine: sa.Engine, qc: QueryCache
) -> None:
    """``BEGIN ISOLATION LEVEL REPEATABLE READ`` sent as text: its old snapshot is never stored."""
    if engine.dialect.name == "sqlite":
        pytest.skip("PostgreSQL isolation levels")
    total = sa.select(sa.func.sum(Product.price)).execution_options(stratacache=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as reader:
        reader.exec_driver_sql("BEGIN ISOLATION LEVEL REPEATABLE READ")
        assert reader.execute(CACHED).scalars().all() == ["atlas", "novel", "kite"]
        with engine.begin() as writer:
            writer.execute(sa.update(Product).values(price=Product.price * 100))
        assert reader.execute(total).scalar() == 50
        reader.exec_driver_sql("COMMIT")
    with engine.connect() as conn:
        assert conn.execute(total).scalar() == 5000


def test_transaction_control_that_fails_after_committing_still_invalidates(
    engine: sa.Engine, qc: QueryCache
) -> None:
    """``COMMIT; SELECT 1/0``: the commit happened, the statement raised; the write is seen."""
    if engine.dialect.name == "sqlite":
        pytest.skip("the SQLite driver runs one statement per execute")
    names(engine)
    with engine.connect() as conn:
        conn.execute(RENAME)
        with pytest.raises(sa.exc.DBAPIError):
            conn.exec_driver_sql("COMMIT; SELECT 1/0")
        assert names(engine) == ["globe", "novel", "kite"]  # read on another connection
