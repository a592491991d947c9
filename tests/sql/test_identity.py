"""Database identities: every spelling of one database's URL invalidates together; no two share rows."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.sql.models import CACHED, Product, names, seed

import stratacache as sc
from stratacache.core.errors import ConfigError
from stratacache.sql import QueryCache
from stratacache.sql.identity import identities, result_identity, write_identity
from stratacache.sql.keys import database_id

SAME_DATABASE = [
    "postgresql+psycopg://postgres@127.0.0.1/shop",
    "postgresql+psycopg://postgres@127.0.0.1:5432/shop",
    "postgresql+asyncpg://postgres:pw@localhost:5432/shop",
    "postgresql://postgres@127.0.0.1/shop?application_name=writer",
    "postgresql+psycopg://postgres@127.0.0.1/shop?connect_timeout=5",
    "postgresql+psycopg://writer@db.internal:6432/shop",  # another role, through a pooler
]


@pytest.mark.parametrize("url", SAME_DATABASE)
def test_writes_to_one_database_are_announced_under_one_identity(url: str) -> None:
    """Port given or defaulted, host spelled differently, query args, role: one write identity."""
    assert write_identity(sa.make_url(url)) == write_identity(sa.make_url(SAME_DATABASE[0]))


def test_other_databases_and_families_are_told_apart() -> None:
    """Another database name, another backend: another write identity; MariaDB is MySQL's."""
    shop = write_identity(sa.make_url(SAME_DATABASE[0]))
    assert write_identity(sa.make_url("postgresql://postgres@127.0.0.1/stock")) != shop
    assert write_identity(sa.make_url("mysql+pymysql://u@h/shop")) != shop
    assert write_identity(sa.make_url("mariadb+pymysql://u@h/shop")) == write_identity(
        sa.make_url("mysql+mysqldb://v@k:3307/shop")
    )


def test_a_postgresql_url_without_a_database_names_the_users(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """libpq's default database is PGDATABASE, else the user's name."""
    monkeypatch.delenv("PGDATABASE", raising=False)
    named = write_identity(sa.make_url("postgresql://shop@h/shop"))
    assert write_identity(sa.make_url("postgresql://shop@h")) == named
    monkeypatch.setenv("PGDATABASE", "stock")
    assert write_identity(sa.make_url("postgresql://shop@h")) != named


def test_results_are_keyed_by_the_whole_url_but_never_the_password() -> None:
    """Result identity covers user, host, port, database and query; the password is left out."""
    one = sa.make_url("postgresql+psycopg://u:secret@h:5432/d?options=x")
    two = sa.make_url("postgresql+asyncpg://u:other@h:5432/d?options=x")
    assert "secret" not in result_identity(one)
    assert result_identity(one) == result_identity(two)
    for other in ("postgresql://v@h:5432/d?options=x", "postgresql://u@h:5432/d?options=y"):
        assert result_identity(sa.make_url(other)) != result_identity(one)
    assert len(database_id(result_identity(one))) == 12


def test_an_explicit_database_id_names_the_writes(engine: sa.Engine, cache: sc.Cache) -> None:
    """``database_id=`` is used as is in tags; a malformed one is refused."""
    qc = QueryCache(cache, engine, database_id="shop-eu.1")
    try:
        assert qc.database_id == "shop-eu.1"
        assert "sqltable:shop-eu.1:products" in qc.table_tags("products")
    finally:
        qc.detach()
    for bad in ("", "a:b", "x" * 65):
        with pytest.raises(ConfigError):
            QueryCache(cache, engine, database_id=bad)


@pytest.fixture
def second_spelling(postgres_url: str) -> Iterator[tuple[sa.Engine, sa.Engine]]:
    """Two engines on one PostgreSQL database: 127.0.0.1:5432, and localhost with no port."""
    url = sa.make_url(postgres_url)
    other = url.set(host="localhost", port=None).update_query_dict({"application_name": "w"})
    engines = (sa.create_engine(url), sa.create_engine(other))
    with engines[0].begin() as conn:
        seed(conn)
    yield engines
    for engine in engines:
        engine.dispose()


def test_a_write_through_another_spelling_of_the_url_invalidates(
    second_spelling: tuple[sa.Engine, sa.Engine], cache: sc.Cache
) -> None:
    """Two engines, one cache, one database: a write committed through either is seen by both."""
    reader, writer = second_spelling
    caches = [QueryCache(cache, engine) for engine in second_spelling]
    try:
        assert names(reader) == ["atlas", "novel", "kite"]
        with writer.begin() as conn:
            conn.execute(sa.update(Product).where(Product.id == 1).values(name="globe"))
        assert names(reader) == ["globe", "novel", "kite"]
        assert caches[0].result_id != caches[1].result_id  # results stay apart all the same
    finally:
        for qc in caches:
            qc.detach()


MEMORY_URLS = [
    "sqlite://",
    "sqlite:///:memory:",
    "sqlite:///file::memory:?uri=true",
    "sqlite:///file:appdb?mode=memory&uri=true",
    "sqlite+aiosqlite:///file:appdb?mode=memory&uri=true",
]


@pytest.mark.parametrize("url", MEMORY_URLS)
def test_a_private_in_memory_sqlite_database_is_unique_to_its_engine(url: str) -> None:
    """Each engine on a private in-memory database has its own identity, for writes and results."""
    first, second = identities(sa.make_url(url)), identities(sa.make_url(url))
    assert first[0] == first[1] and first != second


def test_a_shared_in_memory_sqlite_database_is_one_per_process_and_name() -> None:
    """``cache=shared`` (or memdb) databases: one identity per name in a process, another elsewhere."""
    url = "sqlite:///file:appdb?mode=memory&cache=shared&uri=true"
    mine = write_identity(sa.make_url(url))
    assert write_identity(sa.make_url(url)) == mine
    assert write_identity(sa.make_url("sqlite:///file:/appdb?vfs=memdb&uri=true")) != mine
    assert write_identity(sa.make_url(url.replace("appdb", "other"))) != mine
    code = (
        "import sqlalchemy as sa; from stratacache.sql.identity import write_identity;"
        f"print(write_identity(sa.make_url({url!r})))"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert child.stdout.strip() != mine


def test_a_sqlite_file_is_named_by_its_real_path(tmp_path: Path) -> None:
    """A relative path, an absolute one, a URI filename and a symlink name one file."""
    target = tmp_path / "app.db"
    target.touch()
    (tmp_path / "link.db").symlink_to(target)
    spellings = [
        f"sqlite:///{target}",
        f"sqlite+aiosqlite:///{target}",
        f"sqlite:///file:{target}?uri=true&mode=ro",
        f"sqlite:///{tmp_path / 'link.db'}",
    ]
    assert len({write_identity(sa.make_url(url)) for url in spellings}) == 1


def test_two_engines_on_one_shared_in_memory_database_invalidate_each_other(
    cache: sc.Cache,
) -> None:
    """A named shared-cache in-memory database, two engines in one process: one identity."""
    url = f"sqlite:///file:db{uuid.uuid4().hex}?mode=memory&cache=shared&uri=true"
    engines = [sa.create_engine(url, poolclass=sa.pool.QueuePool) for _ in range(2)]
    keep = engines[0].connect()  # the database lives while a connection holds it
    with engines[0].begin() as conn:
        seed(conn)
    caches = [QueryCache(cache, engine) for engine in engines]
    try:
        assert names(engines[0]) == ["atlas", "novel", "kite"]
        with engines[1].begin() as conn:
            conn.execute(sa.update(Product).where(Product.id == 1).values(name="globe"))
        assert names(engines[0], CACHED) == ["globe", "novel", "kite"]
    finally:
        for qc in caches:
            qc.detach()
        keep.close()
        for engine in engines:
            engine.dispose()


CHILD = """
import sys, sqlalchemy as sa, stratacache as sc
from stratacache.sql import QueryCache
url, redis_url, namespace, owner = sys.argv[1:]
engine = sa.create_engine(url, poolclass=sa.pool.QueuePool)
keep = engine.connect()
with engine.begin() as conn:
    conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, owner TEXT)"))
    conn.execute(sa.text("INSERT INTO t VALUES (1, :o)"), {"o": owner})
cache = sc.Cache([sc.MemoryTier(), sc.RedisTier(url=redis_url)], namespace=namespace)
qc = QueryCache(cache, engine)
with engine.connect() as conn:
    stmt = sa.text("SELECT owner FROM t WHERE id = 1").execution_options(stratacache=True)
    print(conn.execute(stmt).scalar())
cache.sync.close()
"""


@pytest.mark.slow
def test_processes_with_in_memory_databases_of_one_name_never_share_rows(redis_url: str) -> None:
    """Two processes, each its own ``mode=memory`` database named alike, one Redis cache."""
    url = "sqlite:///file:appdb?mode=memory&cache=shared&uri=true"
    namespace = f"mem{uuid.uuid4().hex[:8]}"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    seen = []
    for owner in ("A", "B"):
        child = subprocess.run(
            [sys.executable, "-c", CHILD, url, redis_url, namespace, owner],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        seen.append(child.stdout.strip())
    assert seen == ["A", "B"]
