"""The query cache on sync engines (SQLite files and PostgreSQL): hits, invalidation, transactions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, joinedload, selectinload
from tests.sql.models import (
    CACHED,
    Category,
    ExecutionCounter,
    Product,
    names,
    update_core,
    update_orm_flush,
)

import stratacache as sc
from stratacache.sql import QueryCache


def test_second_identical_select_does_not_reach_the_database(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter
) -> None:
    """The same SELECT twice costs one database statement and gives equal rows."""
    first, sent_first = counter.delta(lambda: names(engine))
    second, sent_second = counter.delta(lambda: names(engine))
    assert first == second == ["atlas", "novel", "kite"]
    assert (sent_first, sent_second) == (1, 0)


@pytest.mark.parametrize(
    "use",
    [
        lambda r: r.all(),
        lambda r: r.scalars().all(),
        lambda r: r.mappings().all(),
        lambda r: r.first(),
        lambda r: list(r),
        lambda r: r.fetchmany(2),
        lambda r: r.scalars().first(),
    ],
    ids=["all", "scalars", "mappings", "first", "iterate", "fetchmany", "scalars-first"],
)
def test_results_behave_alike_on_a_miss_and_a_hit(
    engine: sa.Engine, qc: QueryCache, use: Callable[[Any], Any]
) -> None:
    """Every Result accessor returns the same thing whether the rows came from the cache or not."""
    stmt = sa.select(Product.id, Product.name, Product.price).order_by(Product.id)
    stmt = stmt.execution_options(stratacache=True)
    with engine.connect() as conn:
        missed = use(conn.execute(stmt))
        hit = use(conn.execute(stmt))
        plain = use(conn.execute(stmt.execution_options(stratacache=False)))
    assert missed == hit == plain


def test_one_raises_alike_on_a_hit(engine: sa.Engine, qc: QueryCache) -> None:
    """``.one()`` on a cached multi-row result raises as SQLAlchemy does uncached."""
    stmt = sa.select(Product.id).execution_options(stratacache=True)
    with engine.connect() as conn:
        conn.execute(stmt).all()
        with pytest.raises(sa.exc.MultipleResultsFound):
            conn.execute(stmt).one()
        assert conn.execute(stmt.where(Product.id == 1)).one() == (1,)
        assert conn.execute(stmt.where(Product.id == 1)).one() == (1,)


def test_orm_hits_return_objects_attached_to_the_callers_session(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter
) -> None:
    """An ORM query served from the cache yields mapped objects in the caller's session."""
    stmt = sa.select(Product).where(Product.price > 10).order_by(Product.id)
    stmt = stmt.execution_options(stratacache=True)
    with Session(engine) as session:
        session.scalars(stmt).all()
    with Session(engine) as session:
        products, sent = counter.delta(lambda: session.scalars(stmt).all())
        assert sent == 0
        assert [p.name for p in products] == ["atlas", "novel"]
        assert all(p in session for p in products)
        products[0].price = 31  # and they behave as loaded objects: a change flushes
        session.commit()
    assert names(engine, sa.select(Product.price).where(Product.id == 1)) == [31]


def test_orm_eager_loads_are_cached_and_invalidated_by_either_table(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter
) -> None:
    """A joinedload query is served from the cache and refreshed after a write to the joined table."""
    stmt = sa.select(Product).options(joinedload(Product.category)).order_by(Product.id)
    stmt = stmt.execution_options(stratacache=True)

    def load() -> list[tuple[str, str]]:
        with Session(engine) as session:
            return [(p.name, p.category.name) for p in session.scalars(stmt).unique()]

    first, _ = counter.delta(load)
    assert counter.delta(load) == (first, 0)
    with Session(engine) as session:
        session.get_one(Category, 2).name = "games"
        session.commit()
    fresh, sent = counter.delta(load)
    assert sent == 1 and ("kite", "games") in fresh


def update_bulk(engine: sa.Engine) -> None:
    with Session(engine) as session:
        session.execute(sa.update(Product).where(Product.id == 3).values(name="yoyo"))
        session.commit()


def update_text(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE products SET name = :n WHERE id = 3"), {"n": "yoyo"})


def update_driver_sql(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE products SET name = 'yoyo' WHERE id = 3")


def update_unknown_text(engine: sa.Engine) -> None:
    with engine.begin() as conn:  # a write whose table is not said: the whole database goes
        conn.execute(sa.text("WITH x AS (SELECT 1) UPDATE products SET name = 'yoyo' WHERE id = 3"))


def replace_orm_delete_insert(engine: sa.Engine) -> None:
    with Session(engine) as session:
        session.delete(session.get_one(Product, 3))
        session.flush()
        session.add(Product(id=3, name="yoyo", price=8, category_id=2))
        session.commit()


def update_bulk_orm_executemany(engine: sa.Engine) -> None:
    with Session(engine) as session:
        session.execute(sa.update(Product), [{"id": 3, "name": "yoyo"}, {"id": 2, "name": "novel"}])
        session.commit()


WRITERS = [
    update_core,
    update_orm_flush,
    update_bulk,
    update_text,
    update_driver_sql,
    update_unknown_text,
    replace_orm_delete_insert,
    update_bulk_orm_executemany,
]


@pytest.mark.parametrize("write", WRITERS, ids=[w.__name__ for w in WRITERS])
def test_a_committed_write_makes_the_next_read_fresh(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter, write: Callable[[sa.Engine], None]
) -> None:
    """After any kind of committed write to a table, reading it again gives the new rows."""
    assert names(engine) == ["atlas", "novel", "kite"]
    write(engine)
    assert names(engine) == ["atlas", "novel", "yoyo"]
    assert counter.delta(lambda: names(engine))[1] == 0  # and the fresh rows are cached again


def test_a_rollback_keeps_the_cached_result(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter
) -> None:
    """A write that is rolled back invalidates nothing."""
    names(engine)
    with engine.connect() as conn:
        conn.execute(sa.update(Product).values(name="gone"))
        conn.rollback()
    with Session(engine) as session:
        session.get_one(Product, 1).name = "gone"
        session.flush()
        session.rollback()
    assert counter.delta(lambda: names(engine)) == (["atlas", "novel", "kite"], 0)


SHAPES = {
    "join": sa.select(Product.name, Category.name).join(Category).order_by(Product.id),
    "subquery": sa.select(Product.name)
    .where(Product.category_id.in_(sa.select(Category.id).where(Category.name == "toys")))
    .order_by(Product.id),
    "scalar-subquery": sa.select(
        Category.name,
        sa.select(sa.func.count(Product.id))
        .where(Product.category_id == Category.id)
        .scalar_subquery(),
    ).order_by(Category.id),
    "cte": sa.select(Category.name).join(
        (cte := sa.select(Product.category_id).where(Product.price > 5).cte("cheap")),
        cte.c.category_id == Category.id,
    ),
    "union": sa.union_all(sa.select(Product.name), sa.select(Category.name)),
    "exists": sa.select(Category.name).where(sa.exists().where(Product.category_id == Category.id)),
    "text": sa.text(
        "SELECT p.name, c.name FROM products p JOIN categories c ON c.id = p.category_id"
    ),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("table", ["products", "categories"])
def test_a_query_is_invalidated_by_a_write_to_any_table_it_reads(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter, shape: str, table: str
) -> None:
    """Joins, subqueries, CTEs, unions and text are refreshed after a write to any of their tables."""
    stmt = SHAPES[shape].execution_options(stratacache=True)

    def read() -> list[Any]:
        with engine.connect() as conn:
            return sorted(map(tuple, conn.execute(stmt).all()))

    before = read()
    assert counter.delta(read) == (before, 0)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {table} SET name = name || '!'"))
    after, sent = counter.delta(read)
    with engine.connect() as conn:
        truth = sorted(map(tuple, conn.execute(stmt.execution_options(stratacache=False))))
    assert sent == 1 and after == truth


VOLATILE = {
    "now": sa.select(sa.func.now()),
    "current_timestamp": sa.select(sa.func.current_timestamp()),
    "random": sa.select(Product.name).order_by(sa.func.random()),
    "for-update": sa.select(Product.name).with_for_update(),
    "for-share": sa.select(Product.name).with_for_update(read=True),
    "unknown-function": sa.select(sa.func.my_side_effect(Product.id)),
    "text-random": sa.text("SELECT random()"),
    "text-now-literal": sa.text("SELECT datetime('now')"),
}


@pytest.mark.parametrize("name", sorted(VOLATILE))
def test_non_deterministic_sql_is_never_cached(
    engine: sa.Engine, cache: sc.Cache, name: str
) -> None:
    """Volatile functions, unknown functions and row locks are executed every time and never stored."""
    if engine.dialect.name == "sqlite" and name.startswith("for-"):
        pytest.skip("SQLite has no row locks: SQLAlchemy renders a plain SELECT")
    qc = QueryCache(cache, engine, cache_all=True)
    try:
        stmt = VOLATILE[name].execution_options(stratacache=True)
        with engine.connect() as conn:
            for _ in range(2):
                try:
                    conn.execute(stmt)
                except sa.exc.DBAPIError:
                    conn.rollback()  # the function does not exist on this database: fine
        assert qc.stats()["tables"] == {} or all(
            t["hits"] == t["misses"] == 0 for t in qc.stats()["tables"].values()
        )
        assert sum(qc.stats()["uncached"].values()) >= 1
    finally:
        qc.detach()


def test_two_databases_never_share_results(tmp_path: Any, cache: sc.Cache) -> None:
    """The same SQL on two databases gives each its own rows, through one cache."""
    engines = []
    for i in range(2):
        eng = sa.create_engine(f"sqlite:///{tmp_path / f'db{i}.sqlite'}")
        with eng.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (v INTEGER)"))
            conn.execute(sa.text("INSERT INTO t VALUES (:v)"), {"v": i})
        engines.append(eng)
    caches = [QueryCache(cache, eng, cache_all=True) for eng in engines]
    stmt = sa.text("SELECT v FROM t")
    for _ in range(2):
        assert [names(eng, stmt) for eng in engines] == [[0], [1]]
    assert caches[0].database_id != caches[1].database_id
    for eng in engines:
        eng.dispose()


def test_only_statements_that_ask_are_cached_unless_cache_all(
    engine: sa.Engine, cache: sc.Cache, counter: ExecutionCounter
) -> None:
    """Without the option a SELECT is not cached; cache_all caches it; stratacache=False opts out."""
    plain = sa.select(Product.name)
    qc = QueryCache(cache, engine)
    assert counter.delta(lambda: (names(engine, plain), names(engine, plain)))[1] == 2
    qc = QueryCache(cache, engine, cache_all=True)  # attaching again replaces the hooks
    assert counter.delta(lambda: (names(engine, plain), names(engine, plain)))[1] == 1
    refused = plain.execution_options(stratacache=False)
    assert counter.delta(lambda: (names(engine, refused), names(engine, refused)))[1] == 2
    qc.detach()


@pytest.mark.parametrize("name", ["Categories", "public.categories", 'shop."Categories"'])
def test_excluded_tables_are_never_cached(
    engine: sa.Engine, cache: sc.Cache, counter: ExecutionCounter, name: str
) -> None:
    """A read touching an excluded table goes to the database every time (a schema-qualified
    name excludes the bare name, as tables are compared everywhere)."""
    qc = QueryCache(cache, engine, cache_all=True, exclude_tables=[name])
    stmt = sa.select(Product.name).join(Category)
    assert counter.delta(lambda: (names(engine, stmt), names(engine, stmt)))[1] == 2
    assert counter.delta(lambda: (names(engine), names(engine)))[1] == 1
    qc.detach()


def test_the_option_gives_ttl_and_tags(engine: sa.Engine, qc: QueryCache, cache: sc.Cache) -> None:
    """``stratacache={"tags": [...]}`` tags the result, so invalidating the tag refreshes it."""
    stmt = CACHED.execution_options(stratacache={"ttl": 60, "tags": ["catalog"]})
    names(engine, stmt)
    with engine.connect() as conn:
        conn.exec_driver_sql("UPDATE products SET name = 'x'")  # not committed: nothing changes
    cache.sync.invalidate(tags=["catalog"])
    assert names(engine, stmt) == ["atlas", "novel", "kite"]
    assert qc.stats()["tables"]["products"]["misses"] == 2


@pytest.mark.parametrize(
    "option", [{"ttl": -1}, {"tags": "one"}, {"lifetime": 3}, "yes", {"ttl": "soon"}]
)
def test_a_malformed_option_is_a_config_error(
    engine: sa.Engine, qc: QueryCache, option: Any
) -> None:
    """A bad ``stratacache`` option raises ConfigError instead of caching something unintended."""
    with engine.connect() as conn, pytest.raises(sc.ConfigError):
        conn.execute(sa.select(Product.id).execution_options(stratacache=option))


def test_invalidate_tables_covers_writes_made_elsewhere(
    engine: sa.Engine, qc: QueryCache, db_url: str
) -> None:
    """A write outside SQLAlchemy is picked up after ``invalidate_tables``."""
    names(engine)
    other = sa.create_engine(db_url)  # no query cache on this one: its writes go unseen
    with other.begin() as conn:
        conn.execute(sa.text("UPDATE products SET name = 'yoyo' WHERE id = 3"))
    other.dispose()
    assert names(engine)[2] == "kite"
    qc.invalidate_tables(["products"])
    assert names(engine)[2] == "yoyo"
    assert qc.stats()["tables"]["products"]["invalidations"] >= 1


def test_an_engine_belongs_to_one_cache(engine: sa.Engine, qc: QueryCache) -> None:
    """Attaching a second cache to the same engine is refused."""
    other = sc.Cache([sc.MemoryTier()])
    with pytest.raises(sc.ConfigError):
        QueryCache(other, engine)


def test_selectinload_secondary_queries_still_load(engine: sa.Engine, qc: QueryCache) -> None:
    """Relationship loaders issuing their own SELECTs work with cached parents."""
    stmt = sa.select(Category).options(selectinload(Category.products)).order_by(Category.id)
    stmt = stmt.execution_options(stratacache=True)
    for _ in range(2):
        with Session(engine) as session:
            loaded = {c.name: sorted(p.name for p in c.products) for c in session.scalars(stmt)}
        assert loaded == {"books": ["atlas", "novel"], "toys": ["kite"]}


@pytest.mark.parametrize("how", ["core", "text", "driver", "text-update"])
def test_a_cascading_delete_refreshes_the_child_table(
    tmp_path: Any, cache: sc.Cache, how: str
) -> None:
    """ON DELETE CASCADE declared in the metadata makes a parent delete invalidate the children,
    whether the delete is a Core statement or SQL text naming a table of that metadata."""
    metadata = sa.MetaData()
    parent = sa.Table("parent", metadata, sa.Column("id", sa.Integer, primary_key=True))
    child = sa.Table(
        "child",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("parent_id", sa.ForeignKey("parent.id", ondelete="CASCADE", onupdate="CASCADE")),
    )
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'fk.sqlite'}")
    sa.event.listen(engine, "connect", lambda dbapi, _: dbapi.execute("PRAGMA foreign_keys=ON"))
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(parent).values(id=1))
        conn.execute(sa.insert(child).values(id=1, parent_id=1))
    qc = QueryCache(cache, engine, cache_all=True)
    read = sa.select(child.c.parent_id).where(child.c.id == 1)
    assert names(engine, read) == [1]
    with engine.begin() as conn:
        if how == "core":
            conn.execute(sa.delete(parent).where(parent.c.id == 1))
        elif how == "text":
            conn.execute(sa.text("DELETE FROM parent WHERE id = 1"))
        elif how == "driver":
            conn.exec_driver_sql("DELETE FROM Parent WHERE id = 1")
        else:
            conn.execute(sa.text("UPDATE parent SET id = 2 WHERE id = 1"))
    assert names(engine, read) == ([2] if how == "text-update" else [])
    qc.detach()
    engine.dispose()


def test_engine_event_listeners_can_tell_cached_statements_apart(
    engine: sa.Engine, qc: QueryCache
) -> None:
    """Cursor events fire for real executions only, or say ``from_cache(context)`` when the cache answered."""
    from stratacache.sql import from_cache

    seen: list[bool] = []
    sa.event.listen(engine, "after_cursor_execute", lambda *args: seen.append(from_cache(args[4])))
    names(engine)
    names(engine)  # a Core hit on the fast path: no cursor, no cursor event
    with Session(engine) as session:
        session.execute(CACHED).all()  # a Session's hit: the cursor events see a cached cursor
    names(engine, sa.select(Product.id))
    assert seen == [False, True, False]


def test_ddl_through_an_attached_engine_runs_and_invalidates(
    engine: sa.Engine, qc: QueryCache, counter: ExecutionCounter
) -> None:
    """create_all, CreateTable/CreateIndex and DROP run once the cache is attached, and a DDL
    statement drops the database's cached results (its tables cannot be told from its text)."""
    metadata = sa.MetaData()
    extra = sa.Table("ddl_extra", metadata, sa.Column("id", sa.Integer, primary_key=True))
    assert names(engine) == ["atlas", "novel", "kite"]
    _, cached = counter.delta(lambda: names(engine))
    assert cached == 0
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(sa.schema.CreateIndex(sa.Index("ddl_extra_ix", extra.c.id)))
        _, after_ddl = counter.delta(lambda: names(engine))
        assert after_ddl == 1  # the DDL invalidated the cached SELECT
    finally:
        metadata.drop_all(engine)
    assert not sa.inspect(engine).has_table("ddl_extra")
