"""Class layouts stored with instances: a changed dataclass or pydantic model reads as a miss."""

from __future__ import annotations

import dataclasses
from typing import Any

import pydantic
import pytest

import stratacache as sc
from stratacache.core.errors import DeserializationError
from stratacache.core.registry import TypeRegistry
from stratacache.core.serializer import MsgpackSerializer


def _round(value: Any, reader_cls: type, name: str) -> Any:
    """Store ``value`` as ``name`` in one process, read it with ``reader_cls`` in another."""
    writer, reader = TypeRegistry(), TypeRegistry()
    sc.register_type(type(value), name=name, registry=writer)
    sc.register_type(reader_cls, name=name, registry=reader)
    return MsgpackSerializer(reader).loads(MsgpackSerializer(writer).dumps(value))


class UserV1(pydantic.BaseModel):
    id: int
    email: str


class UserNewRequired(pydantic.BaseModel):
    id: int
    email: str
    verified: bool


class UserRetyped(pydantic.BaseModel):
    id: int
    email: list[str]


class UserOptionalAdded(pydantic.BaseModel):
    id: int
    email: str
    nickname: str | None = None


@pytest.mark.parametrize("reader", [UserNewRequired, UserRetyped, UserOptionalAdded])
def test_changed_model_reads_as_a_miss(reader: type) -> None:
    """A model stored before a field was added, retyped or made optional is a miss, not half-built."""
    with pytest.raises(DeserializationError):
        _round(UserV1(id=1, email="a@b"), reader, "User")


def test_unchanged_model_still_round_trips() -> None:
    """The same layout in the reader (another class object, same fields) decodes equal."""

    class UserSame(pydantic.BaseModel):
        id: int
        email: str

    got = _round(UserV1(id=1, email="a@b"), UserSame, "User")
    assert type(got) is UserSame and got.model_dump() == {"id": 1, "email": "a@b"}


@dataclasses.dataclass(frozen=True)
class OrderV1:
    id: int
    total: int
    note: str = ""


@dataclasses.dataclass(frozen=True)
class OrderRetypedDropped:
    id: int
    total: str


@dataclasses.dataclass(frozen=True)
class OrderWithDefault:
    id: int
    total: int
    note: str = ""
    currency: str = "EUR"


@pytest.mark.parametrize("reader", [OrderRetypedDropped, OrderWithDefault])
def test_changed_dataclass_reads_as_a_miss(reader: type) -> None:
    """A dataclass stored before a field was retyped, removed or added is a miss."""
    with pytest.raises(DeserializationError):
        _round(OrderV1(1, 1999, "gift"), reader, "Order")


def test_state_without_a_fingerprint_is_a_miss() -> None:
    """State written before layouts were recorded (or forged) is a miss, not trusted."""
    registry = TypeRegistry()
    sc.register_type(OrderV1, name="Order", registry=registry)
    with pytest.raises(DeserializationError):
        registry.codec_for(OrderV1).decode({"id": 1, "total": 2, "note": ""})
    ser = MsgpackSerializer(registry)
    assert ser.loads(ser.dumps(OrderV1(1, 2))) == OrderV1(1, 2)
