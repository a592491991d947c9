"""Point reads (one row by primary key): tagged by their row, refreshed only by writes that may touch it."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session
from tests.sql.models import CACHED, ExecutionCounter, Product, names, update_core, update_orm_flush

import stratacache as sc
from stratacache.sql import QueryCache


def point(key: Any) -> Any:
    """A cached point read: one product by primary key."""
    return sa.select(Product.name).where(Product.id == key).execution_options(stratacache=True)


def test_a_write_to_one_row_keeps_point_reads_of_other_rows(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter
) -> None:
    """Updating row 3 by key refreshes reads of row 3 and of the whole table, not of row 1."""
    table_read = CACHED
    for stmt in (point(1), point(3), table_read):
        names(engine, stmt)
    update_core(engine)
    assert counter.delta(lambda: names(engine, point(1))) == (["atlas"], 0)
    assert counter.delta(lambda: names(engine, point(3))) == (["yoyo"], 1)
    assert counter.delta(lambda: names(engine, table_read))[1] == 1


SPREAD_WRITES = {
    "by-name": "UPDATE products SET name = 'yoyo' WHERE name = 'kite'",
    "by-price": "UPDATE products SET name = 'yoyo' WHERE price < 10",
}


@pytest.mark.parametrize("how", ["core-by-name", "text-by-key", "key-change", "or-condition"])
def test_writes_not_naming_their_rows_refresh_every_point_read(
    engine: sa.Engine, qc: QueryCache, how: str
) -> None:
    """A write whose rows are not known by key refreshes all point reads of the table."""
    for key in (3, 10):
        names(engine, point(key))
    with engine.begin() as conn:
        if how == "core-by-name":
            conn.execute(sa.update(Product).where(Product.name == "kite").values(name="yoyo"))
        elif how == "text-by-key":
            conn.execute(sa.text("UPDATE products SET name = 'yoyo' WHERE id = 3"))
        elif how == "or-condition":
            conn.execute(
                sa.update(Product)
                .where(sa.or_(Product.id == 3, Product.id == 99))
                .values(name="yoyo")
            )
        else:  # the row moves from key 3 to key 10: the empty read of 10 must go too
            conn.execute(sa.update(Product).where(Product.id == 3).values(id=10, name="yoyo"))
    expected = {
        3: [] if how == "key-change" else ["yoyo"],
        10: ["yoyo"] if how == "key-change" else [],
    }
    assert {key: names(engine, point(key)) for key in (3, 10)} == expected


@pytest.mark.parametrize("with_key", [True, False], ids=["explicit-key", "generated-key"])
def test_an_insert_refreshes_the_empty_point_read_of_its_row(
    engine: sa.Engine, qc: QueryCache, with_key: bool
) -> None:
    """A point read that found nothing is refreshed once a row with that key is inserted."""
    assert names(engine, point(4)) == []
    with Session(engine) as session:
        session.add(Product(id=4 if with_key else None, name="drum", price=5, category_id=2))
        session.commit()
    assert names(engine, point(4)) == ["drum"]


def test_a_key_of_another_type_is_not_a_point_read(engine: sa.Engine, qc: QueryCache) -> None:
    """Comparing an integer key with a string falls back to table dependencies (never misses a write)."""
    stmt = sa.select(Product.name).where(Product.id == sa.literal("3", sa.Integer()))
    stmt = stmt.execution_options(stratacache=True)
    names(engine, stmt)
    update_core(engine)
    assert names(engine, stmt) == ["yoyo"]


def test_session_get_is_a_point_read_refreshed_by_a_flush_of_that_row(
    engine: sa.Engine, cache: sc.Cache, counter: ExecutionCounter
) -> None:
    """With cache_all, ``Session.get`` is cached per row and refreshed by a flush of that row only."""
    qc = QueryCache(cache, engine, cache_all=True)

    def get(key: int) -> str:
        with Session(engine) as session:
            return session.get_one(Product, key).name

    get(1), get(3)
    update_orm_flush(engine)
    assert counter.delta(lambda: get(1)) == ("atlas", 0)
    assert get(3) == "yoyo"
    qc.detach()


@pytest.mark.parametrize(
    ("column_type", "read_key", "write_key"),
    [
        (sa.CHAR(3), "FR", "FR "),  # CHAR(n): trailing blanks do not count
        (sa.String(10, collation="NOCASE").with_variant(sa.String(10), "postgresql"), "fr", "FR"),
    ],
    ids=["char-padding", "case-insensitive"],
)
def test_string_keys_are_never_point_reads(
    engine: sa.Engine, qc: QueryCache, column_type: Any, read_key: str, write_key: str
) -> None:
    """SQL may call unequal strings equal (padding, collations): a write by a string key
    refreshes every read of the table, never only the Python-equal one."""
    countries = sa.Table(
        "countries",
        sa.MetaData(),
        sa.Column("code", column_type, primary_key=True),
        sa.Column("name", sa.String(20)),
    )
    countries.create(engine)
    try:
        with engine.begin() as conn:
            conn.execute(countries.insert().values(code=read_key.strip(), name="old"))
        stmt = sa.select(countries.c.name).where(countries.c.code == read_key)
        stmt = stmt.execution_options(stratacache=True)
        assert names(engine, stmt) == ["old"]
        with engine.begin() as conn:
            conn.execute(countries.update().where(countries.c.code == write_key).values(name="new"))
        uncached = names(engine, stmt.execution_options(stratacache=False))
        assert names(engine, stmt) == uncached
    finally:
        countries.drop(engine)


def test_a_point_read_that_also_reads_other_rows_is_refreshed_by_their_writes(
    engine: sa.Engine, qc: QueryCache
) -> None:
    """A read by key with a correlated subquery over the table depends on the whole table."""
    products = Product.__table__
    others = products.alias("others")
    cheaper = (
        sa.select(sa.func.count())
        .where(others.c.price < products.c.price)
        .scalar_subquery()
        .label("cheaper")
    )
    stmt = sa.select(products.c.name, cheaper).where(products.c.id == 1)
    stmt = stmt.execution_options(stratacache=True)
    with engine.connect() as conn:
        before = conn.execute(stmt).one().cheaper
    with engine.begin() as conn:
        conn.execute(sa.update(products).where(products.c.id == 3).values(price=1000))
    with engine.connect() as conn:
        assert conn.execute(stmt).one().cheaper == before - 1
