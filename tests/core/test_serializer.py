"""The msgpack serializer: exact round trips of everyday values, clear errors, never pickle."""

from __future__ import annotations

import collections
import datetime as dt
import os
import subprocess
import sys
import uuid
import zoneinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.core.value_kinds import (
    REFUSED,
    ZONED,
    Box,
    Color,
    Level,
    Model,
    Outer,
    Point,
    Secretive,
    same,
    values,
)

from stratacache.core.errors import DeserializationError, SerializationError
from stratacache.core.registry import TypeRegistry
from stratacache.core.serializer import MsgpackSerializer

ser = MsgpackSerializer()


@settings(max_examples=300)
@given(values)
def test_round_trip_keeps_value_and_types(value: Any) -> None:
    """Every supported value decodes to an equal value of the same type, nested included."""
    assert same(ser.loads(ser.dumps(value)), value)


@pytest.mark.parametrize(("label", "make", "named"), REFUSED, ids=[r[0] for r in REFUSED])
def test_a_value_that_would_change_is_refused_naming_its_type(
    label: str, make: Any, named: str
) -> None:
    """Subclasses, foreign tzinfos, views, identity-equal classes: refused, never downgraded."""
    with pytest.raises(SerializationError, match=named):
        ser.dumps(make())


def _secretive() -> Secretive:
    model = Secretive(visible=3)
    model._token = "kept"
    return model


@pytest.mark.parametrize(
    "value",
    [
        Point(1, 2),
        Level.HIGH,
        Color.RED | Color.BLUE,
        collections.OrderedDict([("b", 1), ("a", 2)]),
        collections.defaultdict(list, {"a": [1]}),
        collections.Counter("abracadabra"),
        collections.deque([1, 2, 3], maxlen=3),
        bytearray(b"abc"),
        bytearray(),
        [bytearray(b"x"), {"k": bytearray(b"y"), "f": 1.5}, (bytearray(b"z"),)],
        ZONED,
        dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1), "CET")),
        dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
        dt.datetime(2024, 1, 1, fold=1),
        dt.time(12, 0, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
        Box("b", {Point(1, 2): [Level.LOW]}),
        Model(name="m", payload={"p": Point(0, 1)}, when=ZONED),
        Outer(inner=Model(name="i"), tags=["t"], extra_point=Point(1, 2)),  # type: ignore[call-arg]
        _secretive(),
        2**4000 * 7,
        -(2**64),
        1 + 2j,
    ],
    ids=repr,
)
def test_each_kind_round_trips_exactly(value: Any) -> None:
    """Namedtuple, enums, OrderedDict, defaultdict, Counter, deque, bytearray, zones, models."""
    assert same(ser.loads(ser.dumps(value)), value)


def test_pydantic_extras_and_private_attributes_are_kept() -> None:
    """A model's extra fields and private attributes come back too."""
    out = ser.loads(ser.dumps(Outer(inner=Model(name="i"), extra_point=Point(1, 2))))  # type: ignore[call-arg]
    assert type(out.model_extra["extra_point"]) is Point
    assert ser.loads(ser.dumps(_secretive()))._token == "kept"


def test_a_zoneinfo_datetime_keeps_its_zone_key_and_fold() -> None:
    """A ZoneInfo datetime comes back in the same zone (not a fixed offset), fold included."""
    out = ser.loads(ser.dumps(ZONED))
    assert out.tzinfo is zoneinfo.ZoneInfo("America/New_York") and out.fold == 1
    assert out.utcoffset() == ZONED.utcoffset()


def test_an_unregistered_name_is_a_miss_and_imports_nothing() -> None:
    """A stored value naming a type this process never registered decodes as a miss, no import."""
    writer = MsgpackSerializer(TypeRegistry())
    data = writer.dumps(Point(1, 2))
    with pytest.raises(DeserializationError, match="unregistered"):
        MsgpackSerializer(TypeRegistry()).loads(data)
    forged = msgpack.packb(
        msgpack.ExtType(20, msgpack.packb(["xml.dom.minidom.Document", {}])), use_bin_type=True
    )
    sys.modules.pop("xml.dom.minidom", None)
    with pytest.raises(DeserializationError):
        ser.loads(forged)
    assert "xml.dom.minidom" not in sys.modules


def test_stored_state_that_does_not_fit_the_class_is_a_miss() -> None:
    """A dataclass's stored state missing a field (another version of the class) is a miss."""
    data = ser.dumps(Box("b", 1))
    registry_name = ser.registry.name_of(Box)
    forged = msgpack.packb(
        msgpack.ExtType(20, msgpack.packb([registry_name, {"label": "b"}])), use_bin_type=True
    )
    assert same(ser.loads(data), Box("b", 1))
    with pytest.raises(DeserializationError):
        ser.loads(forged)


def test_values_written_in_the_first_format_still_decode() -> None:
    """Big ints stored as decimal text (the first format) still decode."""
    assert ser.loads(msgpack.packb(msgpack.ExtType(10, b"123456789012345678901234567890"))) == (
        123456789012345678901234567890
    )


@given(st.lists(st.floats(allow_nan=False) | st.binary(max_size=4), max_size=30))
def test_bin_lookalike_bytes_never_turn_bytes_into_bytearray(value: list[Any]) -> None:
    """Floats whose packed bytes look like bin headers do not disturb plain bytes."""
    assert same(ser.loads(ser.dumps(value)), value)


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


_DUMP_MODEL = """
from stratacache.core.serializer import MsgpackSerializer
from tests.core.value_kinds import Model, Box, Level
value = [Model(name="n", payload=[1], when=None), Box("b", {"k": Level.LOW})]
print(MsgpackSerializer().dumps(value).hex())
"""


def test_models_and_dataclasses_encode_to_the_same_bytes_under_any_hash_seed() -> None:
    """Equal models give equal bytes in every process (their set-of-fields is stored sorted)."""
    root = Path(__file__).resolve().parents[2]
    outputs = {
        subprocess.run(
            [sys.executable, "-c", _DUMP_MODEL],
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1
    model = ser.loads(bytes.fromhex(outputs.pop()))[0]
    assert model.model_fields_set == {"name", "payload", "when"}
