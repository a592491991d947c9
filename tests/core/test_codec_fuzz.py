"""Fuzzing the entry decoder and the serializer: arbitrary bytes give an entry or the documented error."""

from __future__ import annotations

import contextlib
import datetime
import zlib
from typing import Any

import msgpack
import pytest
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratacache.core.codec import FORMAT, EntryCodec
from stratacache.core.entry import Entry
from stratacache.core.envelope import Compression, FernetEncryption, HMACSigner
from stratacache.core.errors import DeserializationError
from stratacache.core.serializer import MsgpackSerializer

FUZZ = settings(
    max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
CODECS = {
    "plain": EntryCodec(),
    "compressed": EntryCodec(envelopes=[Compression(threshold=0)]),
    "zstd": EntryCodec(envelopes=[Compression("zstd", threshold=0)]),
    "signed": EntryCodec(envelopes=[HMACSigner(b"k" * 32)]),
    "encrypted": EntryCodec(envelopes=[FernetEncryption(Fernet.generate_key())]),
}

# msgpack values of every kind, nested: what a foreign writer could put in a stored array
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.text(max_size=5) | st.integers(-(2**63), 2**63 - 1), children, max_size=5
        )
    ),
    max_leaves=20,
)


def _decode_or_refuse(codec: EntryCodec, data: bytes, key: str | None = None) -> Entry | None:
    try:
        entry = codec.decode(data, key=key)
    except DeserializationError:
        return None
    assert isinstance(entry, Entry)
    return entry


@pytest.mark.parametrize("name", sorted(CODECS))
@FUZZ
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_decode_to_an_entry_or_deserialization_error(
    name: str, data: bytes
) -> None:
    """Any bytes under any envelope chain: an Entry or DeserializationError, nothing else."""
    _decode_or_refuse(CODECS[name], data, key="ns:k")


@FUZZ
@given(fields=st.lists(msgpack_values, min_size=0, max_size=12), key=st.none() | st.text())
def test_arbitrary_msgpack_arrays_decode_to_an_entry_or_deserialization_error(
    fields: list[Any], key: str | None
) -> None:
    """Well-formed msgpack of the wrong shape or types is refused with DeserializationError."""
    _decode_or_refuse(CODECS["plain"], msgpack.packb(fields, use_bin_type=True), key)


@FUZZ
@given(fields=st.lists(msgpack_values, min_size=10, max_size=10))
def test_entry_shaped_arrays_with_arbitrary_fields_are_checked(fields: list[Any]) -> None:
    """An array with the current format number and any field values never escapes the codec."""
    fields[0] = FORMAT
    _decode_or_refuse(CODECS["plain"], msgpack.packb(fields, use_bin_type=True))


@FUZZ
@given(data=st.binary(max_size=2048))
def test_serializer_loads_arbitrary_bytes_or_raises_deserialization_error(data: bytes) -> None:
    """MsgpackSerializer.loads on any bytes: a value or DeserializationError."""
    with contextlib.suppress(DeserializationError):
        MsgpackSerializer().loads(data)


@FUZZ
@given(value=msgpack_values)
def test_serializer_loads_arbitrary_msgpack_or_raises_deserialization_error(value: Any) -> None:
    """Any msgpack document, extension types included, loads or is refused cleanly."""
    packed = msgpack.packb(value, use_bin_type=True)
    with contextlib.suppress(DeserializationError):
        MsgpackSerializer().loads(packed)


@FUZZ
@given(code=st.integers(min_value=0, max_value=127), body=st.binary(max_size=200))
def test_serializer_loads_arbitrary_extension_types(code: int, body: bytes) -> None:
    """A msgpack extension of any code and payload loads or is refused cleanly."""
    packed = msgpack.packb([msgpack.ExtType(code, body)], use_bin_type=True)
    with contextlib.suppress(DeserializationError):
        MsgpackSerializer().loads(packed)


def test_decompression_bomb_is_refused() -> None:
    """A small stored value that inflates past the compression bound is refused, not inflated."""
    codec = EntryCodec(envelopes=[Compression(threshold=0, max_size=1 << 20)])
    bomb = b"Z" + zlib.compress(b"\0" * (64 << 20), 9)
    assert len(bomb) < 100_000
    with pytest.raises(DeserializationError, match="larger than"):
        codec.decode(bomb)


@pytest.mark.parametrize(
    "value",
    [
        datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(microseconds=1))),
        datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone(-datetime.timedelta(seconds=1.5))),
        datetime.time(1, 2, tzinfo=datetime.timezone(datetime.timedelta(microseconds=999))),
        datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=5))),
    ],
)
def test_sub_second_utc_offsets_round_trip_exactly(
    value: datetime.datetime | datetime.time,
) -> None:
    """A UTC offset with microseconds comes back with them (isoformat alone loses them)."""
    ser = MsgpackSerializer()
    out = ser.loads(ser.dumps(value))
    assert out == value and out.utcoffset() == value.utcoffset() and out.tzinfo == value.tzinfo
