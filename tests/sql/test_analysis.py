"""Statement analysis (tables read and written, volatility) and keys, without a database."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from tests.sql.models import Category, Product

from stratacache.sql.analysis import (
    ALL,
    analyze_text,
    changes_session,
    creates_private_objects,
    volatility,
)
from stratacache.sql.compiled import analyze_compiled, declared_cascades
from stratacache.sql.keys import Unkeyable, query_key


@pytest.mark.parametrize(
    ("sql", "tables"),
    [
        ("INSERT INTO products (id) VALUES (1)", {"products"}),
        ("insert or replace into Products values (1)", {"products"}),
        ('UPDATE public."Products" SET a = 1', {"products"}),
        ("update only products set a = 1", {"products"}),
        ("DELETE FROM shop.orders WHERE id = 1", {"orders"}),
        ("REPLACE INTO carts VALUES (1)", {"carts"}),
        ("MERGE INTO stock USING x ON true WHEN MATCHED THEN DELETE", {"stock"}),
        ("TRUNCATE a, shop.b RESTART IDENTITY", {"a", "b"}),
        ("truncate table only c", {"c"}),
        ('TRUNCATE "s".parent CASCADE', {ALL}),
        ("truncate a, b restart identity cascade", {ALL}),
        ("TRUNCATE a RESTRICT", {"a"}),
        ("WITH x AS (SELECT 1) DELETE FROM products", {ALL}),
        ("SELECT * INTO backup FROM products", {ALL}),
        ("CALL refresh_everything()", {ALL}),
        ("CREATE TABLE t (a int)", {ALL}),
        ("ALTER TABLE products ADD COLUMN x int", {ALL}),
        ("DO $$ BEGIN END $$", {ALL}),
        ("EXPLAIN ANALYZE DELETE FROM products", {ALL}),
        ("VACUUM", {ALL}),
    ],
)
def test_text_writes_name_their_tables_or_the_whole_database(sql: str, tables: set[str]) -> None:
    """A textual write names the table it changes, or ALL when that cannot be known."""
    analysis = analyze_text(sql)
    assert analysis.kind == "write" and analysis.tables == tables


@pytest.mark.parametrize(
    "sql",
    ["SHOW work_mem", "EXPLAIN SELECT 1", "PRAGMA table_info(t)"],
)
def test_reads_of_settings_are_neither_reads_nor_writes(sql: str) -> None:
    """Statements that change no data and no session state are classified as other."""
    assert analyze_text(sql).kind == "other"


@pytest.mark.parametrize(
    "sql",
    [
        "SET search_path TO tenant_7",
        "set role reporting",
        "SET LOCAL statement_timeout = 5",
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "RESET ALL",
        "DISCARD ALL",
        "PRAGMA case_sensitive_like = 1",
    ],
)
def test_statements_changing_session_state_are_recognised(sql: str) -> None:
    """SET, RESET, DISCARD, PRAGMA assignments and isolation changes mark the connection."""
    assert analyze_text(sql).kind == "session"


@pytest.mark.parametrize(
    ("sql", "must_include"),
    [
        ("SELECT * FROM products", {"products"}),
        ("select p.name from shop.products p, categories c", {"products", "categories"}),
        ('SELECT 1 FROM "Orders" o JOIN items i ON i.o = o.id', {"orders", "items"}),
        ("SELECT (SELECT max(x) FROM t1) FROM t2", {"t1", "t2"}),
        ("WITH c AS (SELECT * FROM a) SELECT * FROM c UNION SELECT * FROM b", {"a", "b"}),
    ],
)
def test_text_reads_depend_on_every_table_they_name(sql: str, must_include: set[str]) -> None:
    """A textual SELECT depends (at least) on every table mentioned anywhere in it."""
    analysis = analyze_text(sql)
    assert analysis.kind == "read" and analysis.tables >= must_include


CORE_READS = [
    (sa.select(Product), {"products"}),
    (sa.select(Product.name).join(Category), {"products", "categories"}),
    (
        sa.select(Category.name).where(Category.id.in_(sa.select(Product.category_id))),
        {"products", "categories"},
    ),
    (sa.union(sa.select(Product.id), sa.select(Category.id)), {"products", "categories"}),
    (sa.select(sa.select(Product.id).cte("c")), {"products"}),
    (
        sa.select(Category).where(sa.exists().where(Product.category_id == Category.id)),
        {"products", "categories"},
    ),
    (sa.select(sa.literal_column("x")).select_from(sa.text("legacy_table")), {"legacy_table"}),
    (
        sa.select(Product.id, sa.literal_column("(SELECT count(*) FROM audit_log)")),
        {"products", "audit_log"},
    ),
    (
        sa.select(Product.id).suffix_with("UNION ALL SELECT id FROM shadow_table"),
        {"products", "shadow_table"},
    ),
]


@pytest.mark.parametrize(("stmt", "tables"), CORE_READS)
def test_core_reads_find_every_table(stmt: Any, tables: set[str]) -> None:
    """Joins, subqueries, unions, CTEs, EXISTS and embedded text all contribute their tables."""
    compiled = stmt.compile()
    analysis = analyze_compiled(compiled, str(compiled))
    assert analysis.kind == "read" and analysis.tables >= tables


@pytest.mark.parametrize(
    ("stmt", "tables"),
    [
        (sa.update(Product).values(name="x"), {"products"}),
        (sa.delete(Category), {"categories"}),
        (sa.insert(Product).from_select(["id"], sa.select(Category.id)), {"products"}),
        (
            sa.select(sa.update(Product).values(name="x").returning(Product.id).cte("u")),
            {"products"},
        ),
    ],
)
def test_core_writes_name_their_target(stmt: Any, tables: set[str]) -> None:
    """DML (and a SELECT over a data-modifying CTE) is a write of its target table."""
    compiled = stmt.compile()
    analysis = analyze_compiled(compiled, str(compiled))
    assert analysis.kind == "write" and analysis.tables == tables


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT now()",
        "SELECT NOW ()",
        "select pg_catalog.now()",
        "SELECT CURRENT_TIMESTAMP",
        "select current_date",
        "SELECT * FROM t ORDER BY random()",
        "SELECT nextval('s')",
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED",
        "SELECT * FROM t FOR SHARE",
        "SELECT * FROM t FOR KEY SHARE",
        "SELECT datetime('now')",
        "SELECT date('now', 'localtime')",
        "SELECT gen_random_uuid()",
        "SELECT * FROM t TABLESAMPLE SYSTEM (10)",
        "SELECT my_function(id) FROM t",
        'SELECT "MyFunc"(id) FROM t',
        "SELECT age(born) FROM people",
    ],
)
def test_volatile_or_unknown_sql_is_refused(sql: str) -> None:
    """Clock, randomness, sequences, row locks and unknown functions make a read uncacheable."""
    assert volatility(sql) is not None


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*), max(price) FROM products WHERE name IN (%(a)s, %(b)s)",
        "SELECT lower(name) AS n FROM t WHERE EXISTS (SELECT 1 FROM u) AND x = ANY (%(p)s)",
        "SELECT CAST(a AS TEXT), coalesce(b, 'now') FROM t",
        "SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t",
        "SELECT 'for update' FROM t",
    ],
)
def test_deterministic_sql_is_accepted(sql: str) -> None:
    """Known-deterministic functions and keywords before parentheses do not refuse a read."""
    if "'now'" in sql:
        assert volatility(sql) is not None  # a 'now' literal is refused even inside coalesce
    else:
        assert volatility(sql) is None


def test_deterministic_functions_can_be_declared() -> None:
    """A function the application declares deterministic is accepted."""
    assert volatility("SELECT slugify(name) FROM t") is not None
    assert volatility("SELECT slugify(name) FROM t", ["slugify"]) is None


PARAMS: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2**70,
    1.0,
    0.1,
    "",
    "1",
    "é",
    b"1",
    Decimal("1.0"),
    Decimal("1"),
    dt.datetime(2024, 1, 1),
    dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    dt.date(2024, 1, 1),
    dt.time(1, 2),
    dt.timedelta(seconds=1),
    dt.time(10),
    dt.timedelta(hours=10),  # str() is "10:00:00" for both
    [dt.time(10)],  # inside a list: the canonical encoding, not repr
    [dt.timedelta(hours=10)],
    uuid.UUID(int=1),
    [1, 2],
    (1, 2),
    [[1], 2],
    {"a": 1},
    {"a": "1"},
]


def test_distinct_parameters_give_distinct_keys() -> None:
    """Parameters that differ in value or type never share a key."""
    keys = {query_key("db", "pg", "SELECT %(p)s", {"p": p}) for p in PARAMS}
    assert len(keys) == len(PARAMS)


def test_keys_are_the_same_in_another_process() -> None:
    """A key does not depend on the hash seed or the process (dict order included)."""
    code = (
        "import datetime as dt, uuid; from decimal import Decimal;"
        "from stratacache.sql.keys import query_key;"
        "print(query_key('db','pg','S',{'b':[1,'x',b'y'],'a':{'z':1,'y':Decimal('2.5')},"
        "'c':dt.datetime(2024,1,1),'d':uuid.UUID(int=5)}))"
    )
    here = query_key(
        "db",
        "pg",
        "S",
        {
            "a": {"y": Decimal("2.5"), "z": 1},
            "c": dt.datetime(2024, 1, 1),
            "d": uuid.UUID(int=5),
            "b": [1, "x", b"y"],
        },
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PYTHONPATH": sys.path[0] if sys.path else ""},
        )
        assert out.stdout.strip() == here


def test_parameters_without_a_canonical_form_are_unkeyable() -> None:
    """An object of unknown type refuses to make a key rather than risk a collision."""
    with pytest.raises(Unkeyable):
        query_key("db", "pg", "S", {"p": object()})


@pytest.mark.parametrize(
    "name", ["groups", "rows", "range", "filter", "first", "last", "partition", "tuple", "values"]
)
def test_a_textual_read_of_a_table_named_like_a_keyword_depends_on_it(name: str) -> None:
    """Non-reserved words can name tables: a text read keeps them among its dependencies."""
    assert name in analyze_text(f"SELECT label FROM {name} WHERE id = :id").tables


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT set_config('search_path', %(p)s, false)",
        "SELECT pg_catalog.set_config(:name, :value, true)",
        "select SET_CONFIG('app.tenant', 'b', false), 1",
    ],
)
def test_set_config_changes_the_session(sql: str) -> None:
    """A read calling set_config() changes the connection's settings, as SET does."""
    assert changes_session(sql)
    assert not changes_session("SELECT 'set_config(' AS text_only")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT $$it's$$ AS a; UPDATE t SET v = v + 1; SELECT 'done'",
        "SELECT $q$it's$q$; DELETE FROM t; SELECT 'x'",
        "SELECT E'it\\'s'; UPDATE t SET v = 1; SELECT 'x'",
        "SELECT 'it''s'; UPDATE t SET v = 1",
        'SELECT 1 AS "a--b"; UPDATE t SET v = 1',
        "SELECT 'a\\'; UPDATE t SET v = 1; SELECT '",  # one string or two: databases disagree
        "SELECT $$unterminated; UPDATE t SET v = 1",
        "SELECT 'unterminated; UPDATE t SET v = 1",
        'SELECT "unterminated; UPDATE t SET v = 1',
        "SELECT 1 /* nested /* comment */ ; UPDATE t SET v = 1 */",
        "SELECT 1 /*! ; UPDATE t SET v = 1 */",
        "SELECT $ 1",
        "SELECT 1 \\; UPDATE t SET v = 1",
        "SELECT 1 --x'; UPDATE t SET v = 1",
        "SELECT 1 -- comment\r; UPDATE t SET v = 1",
        "SELECT 1 # $$\n; UPDATE t SET v = 1; SELECT $$",  # a comment in MySQL
        "SELECT [a'] FROM t; UPDATE t SET v = 1; SELECT [']",  # names in SQLite
        "SELECT 'x' # [ '\n; UPDATE t SET v = 1 '",
        'SELECT "a\\"" FROM t2 JOIN t3 ON "b\\"" = 1',  # MySQL: two strings, t2 and t3 read
    ],
)
def test_quotes_never_hide_a_second_statement(sql: str) -> None:
    """Dollar quotes, escape strings, quoted names and comments are read as the database
    reads them; text whose quotes databases read differently is never taken for a read."""
    analysis = analyze_text(sql)
    assert analysis.kind == "transaction" and analysis.action == "unknown"


@pytest.mark.parametrize(
    ("sql", "must_include"),
    [
        (
            "SELECT count(*) FROM t2 WHERE E'\\'' <> 'x' AND v IN (SELECT v FROM t3) AND 'a' = 'a'",
            {"t2", "t3"},
        ),
        ("SELECT $$x'$$, v FROM t2 WHERE v IN (SELECT v FROM t3) AND 'a' = 'a'", {"t2", "t3"}),
        ("SELECT $tag$ $$ ' $tag$ FROM t2 JOIN t3 ON true", {"t2", "t3"}),
        ('SELECT "a--b" FROM t2 JOIN t3 ON true', {"t2", "t3", "a--b"}),
        ("SELECT v FROM s.ärzte WHERE id = 1", {"ärzte"}),
        ("SELECT v FROM Ölmühle", {"ölmühle"}),
        ("SELECT v FROM t WHERE a = $1 AND b$c = 2", {"t", "b$c"}),
        ("SELECT data #>> '{a}' FROM t2 JOIN t3 ON true", {"t2", "t3"}),
        ("SELECT data['key'] FROM t2 JOIN t3 ON true", {"t2", "t3"}),
        ("SELECT x FROM ['orders'] JOIN t3 ON true", {"'orders'", "t3"}),
    ],
)
def test_quotes_never_hide_a_table(sql: str, must_include: set[str]) -> None:
    """The lexer ends each quote where the database does, and names may start with any letter."""
    analysis = analyze_text(sql)
    assert analysis.kind == "read" and analysis.tables >= must_include, analysis


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT E'\\'' AS a, now() FROM t",
        "SELECT $$'$$, now() FROM t",
        'SELECT "a--b", now() FROM t',
        "SELECT $$now$$::timestamp",
        "SELECT E'today'::date",
        "SELECT überzufall(x) FROM t",
        "SELECT now/**/() FROM t",
        "SELECT 'a\\' , now(), '' FROM t",
    ],
)
def test_quotes_never_hide_a_volatile_call(sql: str) -> None:
    """A quote the database ends elsewhere cannot hide now() from the volatility check."""
    assert volatility(sql) is not None
    assert volatility("SELECT $$x$$, E'y\\'', 'z''', \"now\" FROM t") is None


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT a FROM t WHERE a LIKE %(p)s ESCAPE '\\'",
        "SELECT a FROM t WHERE a LIKE ? ESCAPE '\\' AND b = 'x'",
        "SELECT 'C:\\dir' FROM t",
    ],
)
def test_a_backslash_one_reading_allows_is_read(sql: str) -> None:
    """A backslash in a string is read as PostgreSQL and SQLite do when the escaping
    reading is no valid SQL: LIKE … ESCAPE '\\' stays a cacheable read."""
    assert analyze_text(sql).kind == "read"
    assert volatility(sql) is None
    assert not changes_session(sql)


def test_declared_cascades_follow_the_foreign_keys_of_a_bare_name() -> None:
    """A write to ``parent`` also changes the tables whose declared keys cascade from it
    (transitively); a key that cannot be resolved makes it a write to every table."""
    metadata = sa.MetaData(schema="shop")
    sa.Table("Parent", metadata, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table(
        "child",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("p", sa.ForeignKey("shop.Parent.id", ondelete="SET NULL")),
    )
    sa.Table(
        "grandchild", metadata, sa.Column("c", sa.ForeignKey("shop.child.id", onupdate="CASCADE"))
    )
    sa.Table("plain", metadata, sa.Column("p", sa.ForeignKey("shop.Parent.id")))
    assert declared_cascades(frozenset({"parent"}), [metadata]) == {"child", "grandchild"}
    assert declared_cascades(frozenset({"plain"}), [metadata]) == set()
    broken = sa.MetaData()
    sa.Table("parent", broken, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("orphan", broken, sa.Column("x", sa.ForeignKey("missing.id", ondelete="CASCADE")))
    assert declared_cascades(frozenset({"parent"}), [broken]) == {ALL}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT id, lock FROM doors WHERE id = 1",
        "SELECT copy, call, merge, grant FROM t",
        'SELECT "update", "delete", `insert` FROM t',
        "SELECT count(id) FROM t WHERE updated > 1 AND deleted = false",
        "WITH recent AS (SELECT lock FROM doors) SELECT * FROM recent",
        "SELECT * FROM t FOR UPDATE",
    ],
)
def test_a_select_naming_a_dml_word_is_a_read(sql: str) -> None:
    """A column named like a DML word is no write: the read depends on its tables only."""
    assert analyze_text(sql).kind == "read"


@pytest.mark.parametrize(
    "sql",
    [
        "WITH gone AS (DELETE FROM t RETURNING id) SELECT * FROM gone",
        "WITH x AS MATERIALIZED ( update t SET a = 1 RETURNING a) SELECT 1",
        "WITH x AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM x",
        "WITH x AS (MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE) SELECT 1",
        "WITH x AS (/* c */ DELETE FROM t) SELECT 1",
        "WITH x AS (SELECT 1), y AS (SELECT 2) UPDATE t SET a = 1",
        "with recursive x(n) as (select 1) insert into t select n from x",
        "SELECT * INTO backup FROM products",
        "SELECT a FROM t INTO OUTFILE '/tmp/x'",
        "values (1) into t",
    ],
)
def test_a_select_that_writes_stays_a_write_to_every_table(sql: str) -> None:
    """Data-modifying CTEs and SELECT … INTO are writes whose tables are not guessed."""
    assert analyze_text(sql).tables == {ALL} and analyze_text(sql).kind == "write"


@pytest.mark.parametrize(
    ("sql", "private"),
    [
        ("CREATE TEMP TABLE products (id int)", True),
        ("create global temporary table t (id int)", True),
        ("SELECT * INTO TEMP copy FROM products", True),
        ("ATTACH DATABASE 'other.db' AS other", True),
        ("CREATE TABLE temporary_notes (id int)", False),
        ("INSERT INTO notes VALUES ('create temp table x')", False),
    ],
)
def test_statements_creating_connection_private_objects(sql: str, private: bool) -> None:
    """Temporary tables and attached databases are the connection's own (quoted text is not)."""
    assert creates_private_objects(sql) is private
