"""Transactions: read-your-writes, nothing stored from a writing transaction, savepoints, autocommit."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session
from tests.sql.models import CACHED, Category, ExecutionCounter, Product, names, seed

import stratacache as sc
from stratacache.sql import QueryCache


def test_read_your_writes_inside_a_transaction(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter
) -> None:
    """A transaction that wrote a table reads it from the database; others keep the cache until commit."""
    names(engine)
    with Session(engine) as session:
        session.get_one(Product, 1).name = "globe"
        session.flush()
        mine, sent = counter.delta(lambda: session.scalars(CACHED).all())
        assert (mine, sent) == (["globe", "novel", "kite"], 1)
        assert names(engine) == ["atlas", "novel", "kite"]  # uncommitted: others see the old
        session.commit()
    assert names(engine) == ["globe", "novel", "kite"]


def test_results_read_in_a_writing_transaction_are_not_stored(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter
) -> None:
    """A read of another table inside a writing transaction goes to the database and is not kept."""
    stmt = sa.select(Category.name).order_by(Category.id).execution_options(stratacache=True)
    with engine.begin() as conn:
        conn.execute(sa.update(Product).where(Product.id == 1).values(price=1))
        conn.execute(stmt).all()
    assert counter.delta(lambda: names(engine, stmt)) == (["books", "toys"], 1)


@pytest.mark.parametrize("outcome", ["release", "rollback-savepoint", "rollback-all"])
def test_savepoints_invalidate_only_when_the_outer_transaction_commits(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter, outcome: str
) -> None:
    """Writes inside a savepoint invalidate on the outer commit, never on the outer rollback."""
    names(engine)
    conn = engine.connect()
    conn.begin()
    nested = conn.begin_nested()
    conn.execute(sa.update(Product).where(Product.id == 1).values(name="globe"))
    assert list(conn.execute(CACHED).scalars()) == ["globe", "novel", "kite"]
    if outcome == "release":
        nested.commit()
    else:
        nested.rollback()
    if outcome == "rollback-all":
        conn.rollback()
    else:
        conn.commit()
    conn.close()
    expected = "globe" if outcome == "release" else "atlas"
    result, sent = counter.delta(lambda: names(engine))
    assert result[0] == expected
    assert sent == (0 if outcome == "rollback-all" else 1)


def test_a_sqlite_connection_in_autocommit_invalidates_each_write(
    engine: sa.Engine, qc: QueryCache
) -> None:
    """With AUTOCOMMIT each write is committed at once, and so invalidated at once."""
    names(engine)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.update(Product).where(Product.id == 2).values(name="poem"))
        assert names(engine) == ["atlas", "poem", "kite"]


def test_a_sqlite_read_inside_an_open_driver_transaction_is_not_stored(
    tmp_path: Any, cache: sc.Cache
) -> None:
    """A SQLite transaction opened on the driver (unseen by SQLAlchemy) holds a WAL snapshot.

    What it reads after another connection committed is old: it must not be stored.
    """
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    with engine.begin() as conn:
        seed(conn)
    qc = QueryCache(cache, engine)
    total = sa.select(sa.func.sum(Product.price)).execution_options(stratacache=True)
    try:
        with engine.connect() as reader:
            reader.connection.driver_connection.execute("BEGIN")  # type: ignore[union-attr]
            reader.connection.driver_connection.execute("SELECT 1 FROM products")  # type: ignore[union-attr]
            with engine.begin() as writer:
                writer.execute(sa.update(Product).values(price=Product.price * 100))
            assert reader.execute(total).scalar() == 50  # the snapshot's prices
        with engine.connect() as conn:
            assert conn.execute(total).scalar() == 5000
        assert qc.stats()["uncached"]["snapshot transaction"] == 1
    finally:
        qc.detach()
        engine.dispose()
