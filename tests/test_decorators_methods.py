"""Helpers of a cached method reached through an instance or class bind it, as the call does."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pydantic
import pytest

import stratacache as sc


def _cache() -> sc.Cache:
    return sc.Cache(tiers=[sc.MemoryTier(maxsize=100)], namespace="m")


def _repo_class(cache: sc.Cache, loads: list[tuple[str, int]]) -> Any:
    @dataclasses.dataclass(frozen=True)
    class Repo:
        """A repository keyed by its name."""

        name: str

        @cache.cached(ttl=60)
        def find(self, item: int) -> str:
            loads.append((self.name, item))
            return f"{self.name}:{item}:{len(loads)}"

        @cache.cached(ttl=60)
        async def afind(self, item: int) -> str:
            loads.append((self.name, item))
            return f"{self.name}:{item}:{len(loads)}"

        @classmethod
        @cache.cached(ttl=60)
        def build(cls, item: int) -> str:
            loads.append((cls.__name__, item))
            return f"{cls.__name__}:{item}:{len(loads)}"

        @staticmethod
        @cache.cached(ttl=60)
        def plain(item: int) -> str:
            loads.append(("static", item))
            return f"static:{item}:{len(loads)}"

    Repo.__qualname__ = Repo.__name__ = "Repo"
    Repo.__module__ = __name__
    return Repo


def test_invalidate_through_an_instance_drops_its_own_entry_only() -> None:
    """``a.find.invalidate(1)`` drops ``a.find(1)`` and keeps ``b.find(1)``."""
    cache = _cache()
    loads: list[tuple[str, int]] = []
    repo = _repo_class(cache, loads)
    a, b = repo("a"), repo("b")
    first_a, first_b = a.find(1), b.find(1)
    assert (a.find(1), b.find(1)) == (first_a, first_b)
    a.find.invalidate(1)
    assert b.find(1) == first_b
    assert a.find(1) != first_a and loads[-1] == ("a", 1)
    assert a.find.key(1) == repo.find.key(a, 1) != b.find.key(1)
    refreshed = b.find.refresh(1)
    assert refreshed != first_b and b.find(1) == refreshed and loads[-1] == ("b", 1)


async def test_async_helpers_bind_the_instance_too() -> None:
    """The async method's ``invalidate``/``refresh``/``key`` bind ``self`` as well."""
    cache = _cache()
    loads: list[tuple[str, int]] = []
    repo = _repo_class(cache, loads)
    a, b = repo("a"), repo("b")
    async with cache:
        first_a, first_b = await a.afind(1), await b.afind(1)
        await a.afind.invalidate(1)
        assert await b.afind(1) == first_b
        assert await a.afind(1) != first_a and loads[-1] == ("a", 1)
        assert await b.afind.refresh(1) != first_b and loads[-1] == ("b", 1)
        assert a.afind.key(1) != b.afind.key(1)


def test_classmethod_and_staticmethod_helpers_bind_like_their_calls() -> None:
    """A cached classmethod binds the class for its helpers; a staticmethod binds nothing."""
    cache = _cache()
    loads: list[tuple[str, int]] = []
    repo = _repo_class(cache, loads)
    first = repo.build(1)
    assert repo("x").build(1) == first
    repo.build.invalidate(1)
    assert repo.build(1) != first
    assert repo.build.key(1) == repo("x").build.key(1)
    first = repo.plain(2)
    assert repo("x").plain(2) == first
    repo("x").plain.invalidate(2)
    assert repo.plain(2) != first


def test_the_unbound_helpers_still_take_the_instance_first() -> None:
    """Through the class, ``Repo.find.invalidate(a, 1)`` names the instance itself."""
    cache = _cache()
    loads: list[tuple[str, int]] = []
    repo = _repo_class(cache, loads)
    a = repo("a")
    first = a.find(1)
    repo.find.invalidate(a, 1)
    assert a.find(1) != first


@pytest.mark.parametrize("attribute", ["stats", "refresh_hot", "__wrapped__", "__name__"])
def test_other_attributes_are_the_functions(attribute: str) -> None:
    """Attributes that are not per call are the same through an instance."""
    cache = _cache()
    repo = _repo_class(cache, [])
    assert getattr(repo("a").find, attribute) == getattr(repo.find, attribute)


def test_cached_above_classmethod_binds_the_class() -> None:
    """``@cache.cached`` written above ``@classmethod`` binds the class for calls and helpers."""
    cache = _cache()
    loads: list[int] = []

    class Catalog:
        @cache.cached(ttl=60)
        @classmethod
        def count(cls, shelf: int) -> int:
            loads.append(shelf)
            return len(loads)

        @cache.cached(ttl=60)
        @staticmethod
        def label(shelf: int) -> str:
            loads.append(shelf)
            return f"shelf {shelf}:{len(loads)}"

    Catalog.__qualname__ = "Catalog"
    first = Catalog.count(1)
    assert Catalog().count(1) == first
    Catalog().count.invalidate(1)
    assert Catalog.count(1) != first
    label = Catalog.label(2)
    assert Catalog().label(2) == label
    Catalog.label.invalidate(2)
    assert Catalog.label(2) != label


def _model_classes(cache: sc.Cache, loads: list[Any]) -> tuple[Any, Any]:
    """A mutable and a frozen pydantic model with cached methods, defined as users write them."""

    class Product(pydantic.BaseModel):
        sku: int
        _token: str = pydantic.PrivateAttr(default="")

        @cache.cached(ttl=60)
        def price(self, units: int) -> str:
            loads.append(("price", self.sku, units))
            return f"{self.sku}x{units}:{len(loads)}"

        @cache.cached(ttl=60)
        async def stock(self) -> str:
            loads.append(("stock", self.sku))
            return f"stock {self.sku}:{len(loads)}"

        @cache.cached(ttl=60)
        def _internal(self) -> str:
            loads.append(("internal", self.sku))
            return f"internal {self.sku}:{len(loads)}"

        @cache.cached(ttl=60)
        @classmethod
        def catalog(cls, page: int) -> str:
            loads.append(("catalog", page))
            return f"{cls.__name__} page {page}:{len(loads)}"

    class Frozen(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(frozen=True)
        sku: int

        @cache.cached(ttl=60)
        def price(self, units: int) -> str:
            loads.append(("frozen", self.sku, units))
            return f"frozen {self.sku}x{units}:{len(loads)}"

    for model in (Product, Frozen):
        model.__qualname__ = model.__name__
        model.__module__ = __name__
    return Product, Frozen


def test_a_pydantic_model_defines_cached_methods_without_config() -> None:
    """A pydantic model's cached methods are methods, not fields or private attributes."""
    cache = _cache()
    loads: list[Any] = []
    product, frozen = _model_classes(cache, loads)
    assert list(product.model_fields) == ["sku"] and list(frozen.model_fields) == ["sku"]
    assert list(product.__private_attributes__) == ["_token"]
    item = product(sku=1)
    assert item.model_dump() == {"sku": 1}
    assert item.price(2) == item.price(2) == "1x2:1"
    assert item._internal() == item._internal() == "internal 1:2"
    assert asyncio.run(item.stock()) == "stock 1:3"
    assert product.catalog(1) == item.catalog(1) == "Product page 1:4"
    assert frozen(sku=1).price(2) == frozen(sku=1).price(2) == "frozen 1x2:5"


def test_pydantic_instances_share_results_only_when_equal() -> None:
    """Models key by class and fields (private attributes too): unequal ones never share."""
    cache = _cache()
    loads: list[Any] = []
    product, frozen = _model_classes(cache, loads)
    one, two, other_one = product(sku=1), product(sku=2), product(sku=1)
    first = one.price(3)
    assert two.price(3) != first and other_one.price(3) == first
    secret = product(sku=1)
    secret._token = "t"
    assert secret.price(3) != first
    one.sku = 2  # a mutable model is keyed anew per call: it now equals ``two``
    assert one.price(3) == two.price(3)
    assert frozen(sku=1).price(3) != frozen(sku=2).price(3)
    assert frozen(sku=1).price(3) != first  # another class, another key
    assert len(loads) == 5


def test_a_pydantic_models_helpers_bind_the_instance() -> None:
    """``model.price.invalidate(3)`` drops that model's entry and no other's."""
    cache = _cache()
    loads: list[Any] = []
    _, frozen = _model_classes(cache, loads)
    a, b = frozen(sku=1), frozen(sku=2)
    first_a, first_b = a.price(3), b.price(3)
    a.price.invalidate(3)
    assert b.price(3) == first_b
    assert a.price(3) != first_a and loads[-1] == ("frozen", 1, 3)
    assert a.price.key(3) == frozen.price.key(a, 3) != b.price.key(3)
