"""The SQL query cache: SQLAlchemy 2.x models whose SELECTs are served from the cache.

python examples/query_cache.py                                      # memory tier
REDIS_URL=redis://127.0.0.1:6379/0 python examples/query_cache.py   # memory + Redis (+ the bus)

A SQLite file stands in for the application's database. Reads ask for the
cache with ``execution_options(stratacache=True)``; writes through the same
engine invalidate what they touch when their transaction commits.
"""

from __future__ import annotations

import asyncio
import os
import tempfile

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import stratacache as sc
from stratacache.sql import QueryCache, from_cache


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    category: Mapped[str]
    price: Mapped[int]


def build_cache(namespace: str) -> sc.Cache:
    """Memory, plus Redis and the invalidation bus when REDIS_URL is set."""
    tiers: list[sc.Tier] = [sc.MemoryTier(maxsize=10_000, ttl=30)]
    bus = None
    if os.environ.get("REDIS_URL"):
        tiers.append(sc.RedisTier(url=os.environ["REDIS_URL"]))
        bus = sc.RedisBus(os.environ["REDIS_URL"])
    return sc.Cache(tiers, namespace=namespace, default_ttl=300, bus=bus)


def sync_part(url: str) -> None:
    engine = sa.create_engine(url)
    Base.metadata.create_all(engine)
    statements: list[str] = []

    @sa.event.listens_for(engine, "after_cursor_execute")
    def count(conn, cursor, statement, params, context, many):  # type: ignore[no-untyped-def]
        if not from_cache(context):  # SQLAlchemy fires the event for cached statements too
            statements.append(statement)

    cache = build_cache(f"example-qc-{os.getpid()}")
    qc = QueryCache(cache, engine)

    with Session(engine) as session:
        session.add_all(
            [
                Product(name="atlas", category="books", price=30),
                Product(name="novel", category="books", price=12),
                Product(name="kite", category="toys", price=8),
            ]
        )
        session.commit()

    books = (
        sa.select(Product)
        .where(Product.category == "books")
        .order_by(Product.id)
        .execution_options(stratacache=True)
    )
    with Session(engine) as session:
        first = [p.name for p in session.scalars(books)]
    with Session(engine) as session:  # served from the cache: no statement reaches SQLite
        before = len(statements)
        again = [p.name for p in session.scalars(books)]
        assert again == first and len(statements) == before
    print("books:", again, "(second read from the cache)")

    with Session(engine) as session:  # an ORM write: invalidates when it commits
        session.scalars(sa.select(Product).where(Product.name == "novel")).one().price = 10
        session.add(Product(name="poems", category="books", price=9))
        session.commit()
    with Session(engine) as session:
        fresh = [(p.name, p.price) for p in session.scalars(books)]
    assert fresh == [("atlas", 30), ("novel", 10), ("poems", 9)], fresh
    print("after the write:", fresh)

    table = Product.__table__  # a Core SELECT of table columns, repeated in a Session: once
    cheap = (  # the cache has answered it, later ones need no connection from the pool at all
        sa.select(table.c.name, table.c.price)
        .where(table.c.price < 20)
        .order_by(table.c.id)
        .execution_options(stratacache=True)
    )
    for _ in range(3):
        with Session(engine) as session:
            cheap_rows = session.execute(cheap).all()
    print("cheap:", [tuple(row) for row in cheap_rows])

    totals = sa.select(Product.category, sa.func.count()).group_by(Product.category)
    with engine.connect() as conn:
        rows = conn.execute(totals.execution_options(stratacache={"ttl": 60})).all()
    print("per category:", sorted(map(tuple, rows)))
    print("stats:", qc.stats()["tables"]["products"])
    engine.dispose()
    cache.sync.close()


async def async_part(url: str) -> None:
    engine = create_async_engine(url)
    cache = build_cache(f"example-qca-{os.getpid()}")
    qc = QueryCache(cache, engine, cache_all=True)  # every eligible SELECT, no option needed
    table = Product.__table__
    by_id = sa.select(table.c.name, table.c.price).where(table.c.id == sa.bindparam("pk"))
    for pk in (1, 2, 1, 2):  # built once, executed with parameters: hits need no connection
        name, price = (await qc.aexecute(by_id, {"pk": pk})).one()
    print("by id, prebuilt statement:", name, price, "hits:", qc.stats()["tables"]["products"])
    cheap = sa.select(Product.name).where(Product.price < 20).order_by(Product.id)
    async with AsyncSession(engine) as session:
        first = list(await session.scalars(cheap))
        assert list(await session.scalars(cheap)) == first
    async with AsyncSession(engine) as session:
        await session.execute(sa.update(Product).where(Product.name == "kite").values(price=25))
        await session.commit()
    async with AsyncSession(engine) as session:
        fresh = list(await session.scalars(cheap))
    assert "kite" not in fresh, fresh
    print("async, cheap products after the price change:", fresh)
    await engine.dispose()
    await cache.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, "shop.db")
        sync_part(f"sqlite:///{path}")
        asyncio.run(async_part(f"sqlite+aiosqlite:///{path}"))


if __name__ == "__main__":
    main()
