"""Values keep their type in every tier: dataclasses, enums, pydantic models, your own types.

python examples/typed_values.py                                      # memory + SQLite
REDIS_URL=redis://127.0.0.1:6379/0 python examples/typed_values.py   # memory + Redis + SQLite
"""

from __future__ import annotations

import datetime as dt
import enum
import os
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

import pydantic

import stratacache as sc


class Status(enum.Enum):
    OPEN = "open"
    PAID = "paid"


class Money:
    """A class of our own: stored through the functions registered below."""

    def __init__(self, amount: Decimal, currency: str) -> None:
        self.amount, self.currency = amount, currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (self.amount, self.currency) == (
            other.amount,
            other.currency,
        )

    __hash__ = None  # type: ignore[assignment]


sc.register_type(
    Money, name="money", encode=lambda m: [m.amount, m.currency], decode=lambda s: Money(*s)
)


@sc.register_type  # registered at import, so a process that only reads it hits at once
@dataclass(frozen=True)
class Order:
    id: int
    status: Status
    total: Money
    placed: dt.datetime


class Customer(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)  # Money is ours

    name: str
    orders: list[Order] = []


sc.register_type(Customer)


class Slug(str):
    """A str subclass nobody registered: refused, never silently turned into a str."""


def lower_tiers(sqlite_path: str) -> list[sc.Tier]:
    tiers: list[sc.Tier] = []
    if os.environ.get("REDIS_URL"):
        tiers.append(sc.RedisTier(url=os.environ["REDIS_URL"]))
    tiers.append(sc.SQLTier(url=f"sqlite:///{sqlite_path}"))
    return tiers


def main() -> None:
    namespace = f"example-types-{os.getpid()}"
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, "cache.db")
        cache = sc.Cache([sc.MemoryTier(), *lower_tiers(path)], namespace=namespace)
        # another process's view: no memory tier, so every read decodes stored bytes
        other = sc.Cache(lower_tiers(path), namespace=namespace)
        placed = dt.datetime(2024, 3, 31, 2, 30, tzinfo=ZoneInfo("Europe/Paris"))
        order = Order(7, Status.PAID, Money(Decimal("19.90"), "EUR"), placed)
        customer = Customer(name="Ada", orders=[order])
        with cache.sync as client, other.sync as elsewhere:
            client.set("customer:1", customer, ttl=60)
            for source in (client, elsewhere):
                back = source.get("customer:1")
                assert type(back) is Customer and back == customer
                assert type(back.orders[0].total) is Money
                assert back.orders[0].placed.tzinfo == ZoneInfo("Europe/Paris")
            try:
                client.set("slug", Slug("not-registered"))
            except sc.SerializationError as exc:
                print(f"refused: {exc}"[:100])
            assert client.get("slug") is None
            client.clear()
    print("typed values example: ok")


if __name__ == "__main__":
    main()
