"""The msgpack serializer: exact round trips of everyday values, clear errors, never pickle."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stratacache.core.errors import DeserializationError, SerializationError
from stratacache.core.serializer import MsgpackSerializer

ser = MsgpackSerializer()

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.uuids(),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.dates(),
    st.times(),
    st.timedeltas(),
)
hashables = st.one_of(st.integers(), st.text(), st.booleans())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=5).map(tuple),
        st.dictionaries(hashables, inner, max_size=5),
        st.sets(hashables, max_size=5),
        st.frozensets(hashables, max_size=5),
    ),
    max_leaves=25,
)


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type all the way down (tuple is not list, set is not frozenset)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, dt.datetime):
        return (a == b and a.tzinfo == b.tzinfo) or a.utcoffset() == b.utcoffset()
    return bool(a == b)


@given(values)
def test_round_trip_keeps_value_and_types(value: Any) -> None:
    """Every supported value decodes to an equal value of the same type, nested included."""
    assert _same(ser.loads(ser.dumps(value)), value)


def test_tuple_and_list_stay_apart() -> None:
    """A tuple comes back a tuple and a list a list."""
    out = ser.loads(ser.dumps({"t": (1, [2, (3,)])}))
    assert type(out["t"]) is tuple and type(out["t"][1]) is list and type(out["t"][1][1]) is tuple


def test_big_ints_and_aware_datetimes() -> None:
    """Ints beyond 64 bits and tz-aware datetimes survive exactly."""
    moment = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    value = [2**100, -(2**90), moment, Decimal("1.10"), uuid.UUID(int=7)]
    out = ser.loads(ser.dumps(value))
    assert out == value and out[2].utcoffset() == dt.timedelta(hours=2)
    assert str(out[3]) == "1.10"


def test_unknown_type_names_the_type() -> None:
    """An unsupported object raises SerializationError naming its type."""

    class Widget:
        pass

    with pytest.raises(SerializationError, match="Widget"):
        ser.dumps({"w": Widget()})


def test_garbage_bytes_raise_deserialization_error() -> None:
    """Bytes that are not ours raise DeserializationError, not a random exception."""
    with pytest.raises(DeserializationError):
        ser.loads(b"\xc1\xff\x00garbage")


def test_pickle_payload_is_not_executed() -> None:
    """A pickle planted as a value is rejected as foreign bytes and nothing runs."""
    import pickle

    class Boom:
        def __reduce__(self) -> Any:
            return (exec, ("raise SystemExit('executed')",))

    payload = pickle.dumps(Boom())
    with pytest.raises(DeserializationError):
        ser.loads(payload)
