"""The Core fast path: repeated cached SELECTs answered before SQLAlchemy compiles them, same guarantees."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session
from tests.sql.models import Product, seed

import stratacache as sc
from stratacache.sql import QueryCache
from stratacache.sql.fastpath import CachedResult, shape

products = Product.__table__
BY_PRICE = (
    sa.select(products.c.id, products.c.name, products.c.price)
    .where(products.c.price > 5)
    .order_by(products.c.id)
    .execution_options(stratacache=True)
)


def run(engine: sa.Engine, stmt: Any = BY_PRICE) -> Any:
    """Execute ``stmt`` on a fresh connection; the Result, fully buffered."""
    with engine.connect() as conn:
        return conn.execute(stmt)


def test_a_repeated_select_is_served_without_an_execution(
    engine: sa.Engine, qc: QueryCache, counter: Any
) -> None:
    """The third identical Core SELECT reaches no driver, no cursor event, and equals the first."""
    events: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: events.append(args[2]))
    first, sent_first = counter.delta(lambda: run(engine).all())
    run(engine)  # the ordinary path serves it from the cache and teaches the fast path
    events.clear()
    result, sent = counter.delta(lambda: run(engine))
    assert isinstance(result, CachedResult)
    assert result.all() == first
    assert (sent_first, sent, events) == (1, 0, [])
    assert qc.stats()["tables"]["products"]["hits"] == 2


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
        lambda r: [row._mapping[products.c.name] for row in r],
        lambda r: [row.price for row in r],
        lambda r: list(r.keys()),
        lambda r: r.columns("name").all(),
    ],
    ids=[
        "all", "scalars", "mappings", "first", "iterate", "fetchmany", "scalars-first",
        "column-key", "attribute", "keys", "columns",
    ],
)  # fmt: skip
def test_results_behave_alike_on_the_fast_path(
    engine: sa.Engine, qc: QueryCache, use: Callable[[Any], Any]
) -> None:
    """Every Result accessor gives the same on a fast hit as uncached."""
    plain = use(run(engine, BY_PRICE.execution_options(stratacache=False)))
    run(engine)
    run(engine)
    fast = run(engine)
    assert isinstance(fast, CachedResult)
    assert use(fast) == plain


def test_one_raises_alike_on_the_fast_path(engine: sa.Engine, qc: QueryCache) -> None:
    """``.one()`` on a multi-row fast hit raises as uncached."""
    run(engine)
    run(engine)
    with pytest.raises(sa.exc.MultipleResultsFound):
        run(engine).one()


def test_type_processing_applies_on_the_fast_path(tmp_path: Any, cache: sc.Cache) -> None:
    """Result processors (SQLite dates, decimals, booleans, JSON) turn stored rows into equal values."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'types.db'}")
    table = sa.Table(
        "typed",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime),
        sa.Column("amount", sa.Numeric(10, 2)),
        sa.Column("flag", sa.Boolean),
        sa.Column("doc", sa.JSON),
    )
    row = {"id": 1, "at": dt.datetime(2024, 5, 6, 7, 8, 9), "amount": Decimal("12.50")}
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(table.insert(), [{**row, "flag": True, "doc": {"a": [1, 2]}}])
    qc = QueryCache(cache, engine)
    stmt = sa.select(table).execution_options(stratacache=True)
    try:
        plain = run(engine, stmt.execution_options(stratacache=False)).one()
        run(engine, stmt)
        run(engine, stmt)
        fast = run(engine, stmt)
        assert isinstance(fast, CachedResult)
        assert fast.one() == plain
        assert type(plain.at) is dt.datetime and type(plain.amount) is Decimal
    finally:
        qc.detach()
        engine.dispose()


def test_a_committed_write_makes_the_next_fast_read_fresh(
    engine: sa.Engine, qc: QueryCache, counter: Any
) -> None:
    """A committed write invalidates what the fast path would serve: the next read goes to the database."""
    run(engine)
    run(engine)
    with engine.begin() as conn:
        conn.execute(sa.update(products).where(products.c.id == 3).values(price=99))
    fresh, sent = counter.delta(lambda: run(engine).all())
    assert (3, "kite", 99) in fresh
    assert sent == 1
    assert isinstance(run(engine), CachedResult)


def test_a_rollback_keeps_the_fast_path_serving(
    engine: sa.Engine, qc: QueryCache, counter: Any
) -> None:
    """A rolled-back write invalidates nothing: the fast path still answers."""
    run(engine)
    before = run(engine).all()
    with engine.connect() as conn:
        conn.execute(sa.update(products).values(price=1))
        conn.rollback()
    after, sent = counter.delta(lambda: run(engine))
    assert isinstance(after, CachedResult)
    assert (after.all(), sent) == (before, 0)


def test_read_your_writes_inside_a_transaction_on_the_fast_path(
    engine: sa.Engine, qc: QueryCache, counter: Any
) -> None:
    """A transaction that wrote a table reads it from the database, though a shortcut exists."""
    run(engine)
    run(engine)
    with engine.connect() as conn:
        conn.execute(sa.update(products).where(products.c.id == 1).values(price=77))
        mine, sent = counter.delta(lambda: conn.execute(BY_PRICE).all())
        assert (1, "atlas", 77) in mine and sent == 1
        conn.rollback()
    assert (1, "atlas", 30) in run(engine).all()


def test_a_fast_hit_begins_the_transaction_as_an_execution_does(
    engine: sa.Engine, qc: QueryCache
) -> None:
    """After a fast hit the connection is in a transaction, so ``begin()`` fails as it would uncached."""
    run(engine)
    run(engine)
    with engine.connect() as conn:
        assert isinstance(conn.execute(BY_PRICE), CachedResult)
        assert conn.in_transaction()
        with pytest.raises(sa.exc.InvalidRequestError):
            conn.begin()


def test_isolation_levels_that_refuse_the_cache_refuse_the_fast_path(
    postgres_url: str, cache: sc.Cache
) -> None:
    """At REPEATABLE READ the fast path serves nothing: every read reaches the database."""
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        seed(conn)
    qc = QueryCache(cache, engine)
    try:
        run(engine)
        run(engine)
        with engine.connect() as conn:
            result = conn.execution_options(isolation_level="REPEATABLE READ").execute(BY_PRICE)
            assert not isinstance(result, CachedResult)
        assert qc.stats()["uncached"].get("isolation level", 0) >= 1
    finally:
        qc.detach()
        engine.dispose()


def test_before_execute_listeners_keep_the_ordinary_path(engine: sa.Engine, qc: QueryCache) -> None:
    """A ``before_execute`` listener still sees every execution (it may rewrite the statement)."""
    run(engine)
    run(engine)
    seen: list[Any] = []
    sa.event.listen(engine, "before_execute", lambda *args: seen.append(args[1]))
    result = run(engine)
    assert not isinstance(result, CachedResult)
    assert len(seen) == 1


BY_PK = (
    sa.select(products.c.name, products.c.price)
    .where(products.c.id == sa.bindparam("pk"))
    .execution_options(stratacache=True)
)


def test_execution_time_parameters_are_served_by_their_exact_values(
    engine: sa.Engine, qc: QueryCache, counter: Any
) -> None:
    """A statement built once and executed with ``{"pk": n}`` is fast-served per value, never across."""
    plain = BY_PK.execution_options(stratacache=False)
    with engine.connect() as conn:
        expected = {pk: conn.execute(plain, {"pk": pk}).all() for pk in (1, 2, 3)}
        for _ in range(2):
            for pk in (1, 2, 3):
                conn.execute(BY_PK, {"pk": pk})
        for pk in (3, 1, 2):
            result, sent = counter.delta(lambda pk=pk: conn.execute(BY_PK, {"pk": pk}))
            assert isinstance(result, CachedResult)
            assert (result.all(), sent) == (expected[pk], 0)
    with engine.begin() as conn:
        conn.execute(sa.update(products).where(products.c.id == 2).values(price=77))
    with engine.connect() as conn:
        assert conn.execute(BY_PK, {"pk": 2}).one().price == 77
        assert conn.execute(BY_PK, {"pk": 1}).all() == expected[1]


@pytest.mark.parametrize(
    ("one", "other"),
    [(1, True), (1, 1.0), (0.0, -0.0), (Decimal("1.0"), Decimal("1.00")), ("1", 1)],
)
def test_parameters_equal_in_python_but_unlike_in_sql_have_their_own_shortcuts(
    one: Any, other: Any
) -> None:
    """Execution-time values Python calls equal never share a shortcut; names count too."""
    assert shape(BY_PK, ({"pk": one},)) != shape(BY_PK, ({"pk": other},))
    assert shape(BY_PK, ({"pk": one},)) == shape(BY_PK, ({"pk": one},))
    assert shape(BY_PK, ({"pk": one},)) != shape(BY_PK, ({"pk": one, "extra": one},))


@pytest.mark.parametrize(
    "parameters",
    [[{"pk": 1}, {"pk": 2}], [{"pk": [1]}], [{"pk": dt.datetime(2026, 1, 1)}], [{1: 1}]],
    ids=["executemany", "list-value", "datetime-value", "non-string-name"],
)
def test_parameters_the_fast_path_cannot_compare_exactly_are_refused(parameters: Any) -> None:
    """An executemany, a container value, a value whose repr is not exact: no identity at all."""
    assert shape(BY_PK, parameters) is None


def test_sessions_serve_parameters_and_orm_loads_stay_attached(
    engine: sa.Engine, qc: QueryCache, counter: Any
) -> None:
    """A Session's Core SELECT with parameters is fast-served; ORM loads never are (objects attach)."""
    with Session(engine) as session:
        expected = session.execute(BY_PK, {"pk": 1}).all()
        session.execute(BY_PK, {"pk": 1})
        hit, sent = counter.delta(lambda: session.execute(BY_PK, {"pk": 1}))
        assert isinstance(hit, CachedResult)
        assert (hit.all(), sent) == (expected, 0)
        assert session.execute(BY_PK, {"pk": 2}).all() != expected
    entity = sa.select(Product).order_by(Product.id).execution_options(stratacache=True)
    with Session(engine) as session:
        for _ in range(3):
            objects = session.scalars(entity).all()
        assert all(obj in session for obj in objects)
        assert objects[0] is session.get(Product, 1)


def test_execute_takes_parameters(engine: sa.Engine, qc: QueryCache, counter: Any) -> None:
    """``qc.execute(stmt, params)`` serves by value with no checkout, and refreshes after a write."""
    first = qc.execute(BY_PK, {"pk": 3}).all()
    qc.execute(BY_PK, {"pk": 3})
    hit, sent = counter.delta(lambda: qc.execute(BY_PK, {"pk": 3}))
    assert isinstance(hit, CachedResult)
    assert (hit.all(), sent) == (first, 0)
    assert qc.execute(BY_PK, {"pk": 1}).all() != first
    with engine.begin() as conn:
        conn.execute(sa.update(products).where(products.c.id == 3).values(price=88))
    assert qc.execute(BY_PK, {"pk": 3}).one().price == 88


@pytest.mark.parametrize(
    ("one", "other"),
    [(1, True), (1, 1.0), (0.0, -0.0), (Decimal("1.0"), Decimal("1.00")), ("1", 1), (None, 0)],
)
def test_values_equal_in_python_but_unlike_in_sql_have_their_own_shortcuts(
    one: Any, other: Any
) -> None:
    """Two statements differing only in a value Python calls equal never share a shortcut."""

    def stmt(value: Any) -> Any:
        return sa.select(products.c.id).where(products.c.name == sa.literal(value))

    assert shape(stmt(one), ()) != shape(stmt(other), ())
    assert shape(stmt(one), ()) == shape(stmt(one), ())


def test_detach_restores_the_ordinary_connection(engine: sa.Engine, qc: QueryCache) -> None:
    """After ``detach`` the engine makes plain connections and nothing is served from the cache."""
    run(engine)
    run(engine)
    qc.detach()
    assert type(engine.connect()) is sa.Connection
    assert not isinstance(run(engine), CachedResult)


async def test_async_engines_take_the_fast_path(sqlite_url: str, cache: sc.Cache) -> None:
    """An AsyncEngine's repeated SELECT is fast-served, and a committed write refreshes it."""
    engine = create_async_engine(str(sqlite_url).replace("sqlite:", "sqlite+aiosqlite:", 1))
    async with engine.begin() as conn:
        await conn.run_sync(seed)
    qc = QueryCache(cache, engine)
    try:
        results = []
        for _ in range(3):
            async with engine.connect() as conn:
                results.append(await conn.execute(BY_PRICE))
        assert isinstance(results[2], CachedResult)
        assert results[2].all() == results[0].all()
        async with engine.begin() as conn:
            await conn.execute(sa.update(products).where(products.c.id == 2).values(price=55))
        async with engine.connect() as conn:
            fresh = await conn.execute(BY_PRICE)
        assert not isinstance(fresh, CachedResult)
        assert (2, "novel", 55) in fresh.all()
    finally:
        await qc.ainvalidate_tables()
        qc.detach()
        await engine.dispose()


def test_execute_serves_a_known_select_without_a_connection(
    engine: sa.Engine, qc: QueryCache, counter: Any
) -> None:
    """``qc.execute`` answers a repeated cached SELECT with no pool checkout and no driver call."""
    checkouts: list[object] = []
    sa.event.listen(engine.pool, "checkout", lambda *args: checkouts.append(args[0]))
    first = qc.execute(BY_PRICE).all()  # a miss: runs on a fresh connection
    qc.execute(BY_PRICE)  # answered by the cache on that connection: the fast path learns it
    checkouts.clear()
    hit, sent = counter.delta(lambda: qc.execute(BY_PRICE))
    assert isinstance(hit, CachedResult)
    assert (hit.all(), sent, checkouts) == (first, 0, [])
    with engine.begin() as conn:
        conn.execute(sa.update(products).where(products.c.id == 1).values(price=31))
    fresh, sent = counter.delta(lambda: qc.execute(BY_PRICE).all())
    assert (1, "atlas", 31) in fresh and sent == 1


def test_execute_and_aexecute_refuse_the_wrong_engine_kind(
    engine: sa.Engine, qc: QueryCache
) -> None:
    """``aexecute`` on a sync engine's QueryCache is a ConfigError, not a silent wrong call."""
    import asyncio

    with pytest.raises(sc.ConfigError):
        asyncio.run(qc.aexecute(BY_PRICE))


async def test_aexecute_serves_a_known_select_and_refreshes_after_a_write(
    sqlite_url: str, cache: sc.Cache
) -> None:
    """``await qc.aexecute`` hits without a connection; a committed write makes it fresh."""
    engine = create_async_engine(str(sqlite_url).replace("sqlite:", "sqlite+aiosqlite:", 1))
    async with engine.begin() as conn:
        await conn.run_sync(seed)
    qc = QueryCache(cache, engine)
    try:
        with pytest.raises(sc.ConfigError):
            qc.execute(BY_PRICE)
        first = (await qc.aexecute(BY_PRICE)).all()
        await qc.aexecute(BY_PRICE)
        hit = await qc.aexecute(BY_PRICE)
        assert isinstance(hit, CachedResult)
        assert hit.all() == first
        async with engine.begin() as conn:
            await conn.execute(sa.update(products).where(products.c.id == 2).values(price=56))
        fresh = await qc.aexecute(BY_PRICE)
        assert not isinstance(fresh, CachedResult)
        assert (2, "novel", 56) in fresh.all()
    finally:
        await qc.ainvalidate_tables()
        qc.detach()
        await engine.dispose()


def test_connection_shortcuts_scalar_and_scalars_behave_alike(
    engine: sa.Engine, qc: QueryCache, counter: Any
) -> None:
    """``conn.scalar``/``conn.scalars`` on a fast hit equal their uncached results, with no driver call."""
    plain = BY_PRICE.execution_options(stratacache=False)
    with engine.connect() as conn:
        expected = (conn.scalar(plain), conn.scalars(plain).all())
        conn.execute(BY_PRICE)
        conn.execute(BY_PRICE)
        got, sent = counter.delta(lambda: (conn.scalar(BY_PRICE), conn.scalars(BY_PRICE).all()))
    assert (got, sent) == (expected, 0)


@pytest.mark.parametrize("option", [{"yield_per": 1}, {"stream_results": True}])
def test_streaming_executions_take_the_ordinary_path(
    engine: sa.Engine, qc: QueryCache, option: dict[str, Any]
) -> None:
    """Streaming options are never fast-served."""
    run(engine)
    run(engine)
    with engine.connect() as conn:
        result = conn.execute(BY_PRICE.execution_options(**option))
        assert not isinstance(result, CachedResult)
        result.close()


def test_a_fast_path_miss_is_asked_of_the_cache_once_more_not_twice(
    engine: sa.Engine, qc: QueryCache, cache: sc.Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After ``qc.execute`` finds a known result missing, the connection's fast path does not ask again."""
    first = qc.execute(BY_PRICE).all()
    qc.execute(BY_PRICE)  # learned
    asks: list[str] = []
    original = type(cache.sync).get

    def counting(self: Any, key: str, *args: Any, **kwargs: Any) -> Any:
        asks.append(key)
        return original(self, key, *args, **kwargs)

    monkeypatch.setattr(type(cache.sync), "get", counting)
    qc.invalidate_tables(["products"])
    assert qc.execute(BY_PRICE).all() == first
    assert len(asks) == 1  # the standalone ask; the ordinary path's read-through asks inside


def test_a_left_over_miss_mark_never_serves_another_statement(
    engine: sa.Engine, qc: QueryCache
) -> None:
    """A mark for one statement only sends that statement the ordinary way, and only once."""
    other = BY_PK.execution_options(stratacache=True)
    with engine.connect() as conn:
        expected = conn.execute(BY_PRICE).all()
        conn.execute(BY_PRICE)
        conn.stratacache_missed = other  # type: ignore[attr-defined]
        result = conn.execute(BY_PRICE)
        assert conn.stratacache_missed is None  # type: ignore[attr-defined]
        assert result.all() == expected
        assert isinstance(conn.execute(BY_PRICE), CachedResult)


def test_a_listener_that_rewrites_the_sql_keeps_the_ordinary_path(
    engine: sa.Engine, qc: QueryCache
) -> None:
    """A ``before_cursor_execute(retval=True)`` listener may rewrite the SQL per call (a
    tenant's table): the fast path never answers for it, the ordinary path keys what is sent."""
    run(engine)
    run(engine)  # learned
    tenant = {"table": "FROM products"}

    @sa.event.listens_for(engine, "before_cursor_execute", retval=True)
    def rewrite(conn, cursor, statement, parameters, context, many):  # type: ignore[no-untyped-def]
        return statement.replace("FROM products", tenant["table"]), parameters

    assert not isinstance(run(engine), CachedResult)
    tenant["table"] = "FROM (SELECT * FROM products WHERE id = 1) AS products"
    assert [row.id for row in run(engine)] == [1]
    sa.event.remove(engine, "before_cursor_execute", rewrite)


def test_a_statement_built_anew_finds_its_own_columns_on_a_fast_hit(
    engine: sa.Engine, qc: QueryCache
) -> None:
    """Rows of a fast hit answer the column objects of the statement executed, even when an
    equal statement (a new subquery) taught the fast path."""

    def build() -> tuple[Any, Any]:
        counts = sa.select(products.c.id.label("n")).where(products.c.price > 5).subquery()
        stmt = sa.select(counts.c.n).order_by(counts.c.n).execution_options(stratacache=True)
        return stmt, counts

    expected = None
    for _ in range(3):
        stmt, counts = build()
        with engine.connect() as conn:
            result = conn.execute(stmt)
            got = [row._mapping[counts.c.n] for row in result]
        assert expected is None or got == expected
        expected = got
    assert isinstance(result, CachedResult)
    stmt, counts = build()
    assert [r[0] for r in qc.execute(stmt).columns(counts.c.n)] == expected


def test_a_fast_hit_answers_the_select_parts_of_a_cursor_result(
    engine: sa.Engine, qc: QueryCache
) -> None:
    """``fetchmany()`` fetches one row (a cursor's default arraysize), ``is_insert`` is False."""
    run(engine)
    run(engine)
    hit = run(engine)
    assert isinstance(hit, CachedResult)
    assert len(hit.fetchmany()) == 1 and len(hit.fetchmany(5)) == 2
    assert hit.is_insert is False and hit.supports_sane_rowcount()


def test_options_with_a_ttl_or_tags_of_their_own_keep_their_own_entry(
    engine: sa.Engine, qc: QueryCache, cache: sc.Cache
) -> None:
    """The same SELECT with other tags is another entry: invalidating those tags reaches it."""
    plain = BY_PRICE
    tagged = BY_PRICE.execution_options(stratacache={"tags": ["pricing"]})
    for stmt in (plain, tagged, plain, tagged, plain, tagged):
        run(engine, stmt)
    raw = engine.raw_connection()  # a write the engine does not see
    try:
        raw.cursor().execute("UPDATE products SET price = 77 WHERE id = 1")
        raw.commit()
    finally:
        raw.close()
    cache.sync.invalidate(tags=["pricing"])
    assert (1, "atlas", 77) in run(engine, tagged).all()
    assert (1, "atlas", 77) not in run(engine, plain).all()  # its entry stands, untagged


def test_reads_of_the_clock_by_parameter_or_literal_are_not_cached(
    engine: sa.Engine, qc: QueryCache, counter: Any
) -> None:
    """A bound 'now'/'today' or a 'today' literal is the time of the query: never stored."""
    by_param = sa.select(sa.bindparam("when", type_=sa.String)).execution_options(stratacache=True)
    literal = sa.text("SELECT 'today' AS d").execution_options(stratacache=True)
    with engine.connect() as conn:
        for _ in range(2):
            conn.execute(by_param, {"when": "now"}).all()
            conn.execute(by_param, {"when": " Today "}).all()
            conn.execute(literal).all()
    assert counter.count == 6
    assert qc.stats()["uncached"]["reads the clock ('now')"] == 6


def test_execute_refuses_what_is_not_executable(qc: QueryCache) -> None:
    """``qc.execute("SELECT 1")`` raises SQLAlchemy's own error, as ``conn.execute`` does."""
    with pytest.raises(sa.exc.ObjectNotExecutableError):
        qc.execute("SELECT 1")  # type: ignore[arg-type]
