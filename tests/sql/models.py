"""The models and helpers the query cache tests share (also imported by the child process)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    """Declarative base of the test models."""


class Category(Base):
    """A product category."""

    __tablename__ = "categories"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    products: Mapped[list[Product]] = relationship(back_populates="category")


class Product(Base):
    """A product in one category."""

    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    price: Mapped[int]
    category_id: Mapped[int] = mapped_column(sa.ForeignKey("categories.id"))
    category: Mapped[Category] = relationship(back_populates="products")


def seed(conn: sa.Connection) -> None:
    """Create the tables and two categories with three products."""
    Base.metadata.create_all(conn)
    conn.execute(sa.insert(Category), [{"id": 1, "name": "books"}, {"id": 2, "name": "toys"}])
    conn.execute(
        sa.insert(Product),
        [
            {"id": 1, "name": "atlas", "price": 30, "category_id": 1},
            {"id": 2, "name": "novel", "price": 12, "category_id": 1},
            {"id": 3, "name": "kite", "price": 8, "category_id": 2},
        ],
    )
    if conn.dialect.name == "postgresql":  # generated keys continue after the seeded ones
        for table in ("products", "categories"):
            conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 3)"))


class ExecutionCounter:
    """Counts statements that really reach the database driver for one engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.count = 0
        dialect: Any = engine.dialect
        for name in ("do_execute", "do_execute_no_params", "do_executemany"):
            original = getattr(type(dialect), name)
            setattr(dialect, name, self._counting(dialect, original))

    def _counting(self, dialect: Any, original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any) -> Any:
            self.count += 1
            return original(dialect, *args)

        return counted

    def delta(self, fn: Callable[[], Any]) -> tuple[Any, int]:
        """``fn()``'s result and the number of statements it sent."""
        before = self.count
        result = fn()
        return result, self.count - before


def names(engine: sa.Engine, stmt: Any = None) -> list[Any]:
    """Run ``stmt`` (default ``CACHED``) on a fresh connection and return its first column."""
    with engine.connect() as conn:
        return list(conn.execute(CACHED if stmt is None else stmt).scalars().all())


def update_core(engine: sa.Engine) -> None:
    """Rename product 3 through a Core UPDATE, committed."""
    with engine.begin() as conn:
        conn.execute(sa.update(Product).where(Product.id == 3).values(name="yoyo"))


def update_orm_flush(engine: sa.Engine) -> None:
    """Rename product 3 through an ORM flush, committed."""
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        session.get_one(Product, 3).name = "yoyo"
        session.commit()


CACHED = sa.select(Product.name).order_by(Product.id).execution_options(stratacache=True)
