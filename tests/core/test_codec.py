"""Entry codec and envelopes: compression, signing, encryption; foreign bytes are refused."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from stratacache.core.codec import EntryCodec
from stratacache.core.entry import Entry
from stratacache.core.envelope import Compression, Envelope, FernetEncryption, HMACSigner
from stratacache.core.errors import ConfigError, DeserializationError, MovedValueError


def _entry(value: object) -> Entry:
    return Entry(
        value=value,
        created=10.0,
        expires=70.0,
        refresh_after=40.0,
        stale_until=100.0,
        cost=0.25,
        tags=("user:1",),
        tag_versions={"user:1": 3},
    )


def test_entry_round_trip_keeps_metadata() -> None:
    """Every metadata field survives encode/decode."""
    codec = EntryCodec()
    out = codec.decode(codec.encode(_entry({"a": (1, 2)})))
    assert out.value == {"a": (1, 2)}
    assert (out.created, out.expires, out.refresh_after, out.stale_until) == (10, 70, 40, 100)
    assert out.cost == 0.25 and out.tags == ("user:1",) and dict(out.tag_versions) == {"user:1": 3}


@pytest.mark.parametrize("algorithm", ["zlib", "zstd"])
def test_compression_shrinks_large_values(algorithm: str) -> None:
    """Values above the threshold are stored compressed and decode unchanged."""
    codec = EntryCodec(envelopes=[Compression(algorithm, threshold=100)])
    plain = EntryCodec()
    entry = _entry("x" * 10_000)
    data = codec.encode(entry)
    assert len(data) < len(plain.encode(entry)) // 10
    assert codec.decode(data).value == "x" * 10_000


def test_signed_bytes_from_another_key_are_refused() -> None:
    """A value signed with a different key is a DeserializationError (a miss)."""
    ours = EntryCodec(envelopes=[HMACSigner(b"k" * 32)])
    theirs = EntryCodec(envelopes=[HMACSigner(b"z" * 32)])
    with pytest.raises(DeserializationError):
        ours.decode(theirs.encode(_entry(1)))


def test_signing_key_rotation_accepts_old_signatures() -> None:
    """With [new, old] keys, values signed by the old key still decode."""
    old = EntryCodec(envelopes=[HMACSigner(b"o" * 32)])
    rotated = EntryCodec(envelopes=[HMACSigner([b"n" * 32, b"o" * 32])])
    assert rotated.decode(old.encode(_entry("v"))).value == "v"


def test_encrypted_bytes_hide_the_value() -> None:
    """Fernet-encrypted entries do not contain the plaintext and decode with the key."""
    key = Fernet.generate_key()
    codec = EntryCodec(envelopes=[FernetEncryption(key)])
    data = codec.encode(_entry("top-secret-value"))
    assert b"top-secret-value" not in data
    assert codec.decode(data).value == "top-secret-value"
    with pytest.raises(DeserializationError):
        EntryCodec(envelopes=[FernetEncryption(Fernet.generate_key())]).decode(data)


def test_short_signing_key_is_a_config_error() -> None:
    """Keys shorter than 16 bytes are refused at construction."""
    with pytest.raises(ConfigError):
        HMACSigner(b"short")


def test_truncated_entry_is_a_deserialization_error() -> None:
    """Half an entry is refused cleanly."""
    codec = EntryCodec()
    data = codec.encode(_entry([1, 2, 3]))
    with pytest.raises(DeserializationError):
        codec.decode(data[: len(data) // 2])


def test_msgpack_valid_foreign_entry_is_a_deserialization_error() -> None:
    """An entry-shaped array with wrong field types is refused, not a TypeError later."""
    import msgpack

    codec = EntryCodec()
    for fields in (
        [1, "x", None, None, None, 0.0, [], {}, b"\xa1v"],
        [1, 0.0, "later", None, None, 0.0, [], {}, b"\xa1v"],
        [1, 0.0, None, None, None, 0.0, "tags", {}, b"\xa1v"],
        [1, 0.0, None, None, None, 0.0, [1], {}, b"\xa1v"],
        [1, 0.0, None, None, None, True, [], {}, b"\xa1v"],
    ):
        with pytest.raises(DeserializationError):
            codec.decode(msgpack.packb(fields, use_bin_type=True))


@pytest.mark.parametrize(
    "envelopes",
    [[], [HMACSigner(b"k" * 16)], [FernetEncryption(Fernet.generate_key())]],
    ids=["plain", "signed", "encrypted"],
)
@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("a:role:alice", "a:role:bob"),
        ("a:role:alice", "b:role:alice"),
        ("a:k", "a:~g1:k"),
        ("a:k", "a:k "),
        ("a:k", ""),
    ],
)
def test_entry_read_under_another_key_is_refused_and_counted(
    envelopes: list[Envelope], written: str, read: str
) -> None:
    """Bytes encoded for one full key raise MovedValueError under any other, counted."""
    codec = EntryCodec(envelopes=envelopes)
    data = codec.encode(_entry("admin"), key=written)
    assert codec.decode(data, key=written).value == "admin"
    with pytest.raises(MovedValueError):
        codec.decode(data, key=read)
    assert codec.moved_values == 1


def test_unbound_entry_is_refused_under_a_key() -> None:
    """An entry encoded without a key is accepted only by a keyless decode."""
    codec = EntryCodec()
    data = codec.encode(_entry(1))
    assert codec.decode(data).value == 1
    with pytest.raises(MovedValueError):
        codec.decode(data, key="a:k")


def test_tag_tokens_are_keyed_digests_only_under_encryption() -> None:
    """Tags stay as they are without encryption and become stable keyed digests with it."""
    assert EntryCodec().tag_token("user:1") == "user:1"
    old, new = Fernet.generate_key(), Fernet.generate_key()
    codec = EntryCodec(envelopes=[FernetEncryption([new, old])])
    token = codec.tag_token("user:1")
    assert "user" not in token and token == codec.tag_token("user:1")
    assert token != codec.tag_token("user:2")
    assert codec.tag_tokens("user:1") == [
        token,
        EntryCodec(envelopes=[FernetEncryption(old)]).tag_token("user:1"),
    ]


_GOOD_FIELDS = [2, b"", 10.0, 70.0, None, 100.0, 0.25, ["t"], {"t": 3}]


@pytest.mark.parametrize(
    ("index", "bad"),
    [
        (2, None),  # created is required
        (2, True),  # a bool is not a time
        (2, "10"),
        (3, False),
        (3, [1]),
        (4, "soon"),
        (5, b"\x00"),
        (6, None),  # cost is required
        (6, True),
        (7, "t"),  # tags must be a list
        (7, [1]),
        (7, ["t", None]),
        (8, [["t", 3]]),  # versions must be a map
        (8, {"t": 3.0}),
        (8, {"t": True}),
        (8, {1: 3}),
        (8, {"t": "3"}),
    ],
)
def test_metadata_of_the_wrong_type_is_refused(index: int, bad: object) -> None:
    """Entry bytes whose metadata fields have the wrong types are a DeserializationError."""
    import msgpack

    fields: list[object] = [*_GOOD_FIELDS, EntryCodec().serializer.dumps("v")]
    codec = EntryCodec()
    assert codec.decode(msgpack.packb(fields, use_bin_type=True)).value == "v"
    fields[index] = bad
    with pytest.raises(DeserializationError, match="wrong types"):
        codec.decode(msgpack.packb(fields, use_bin_type=True))


@pytest.mark.parametrize("number", [0, 1, 10**15, 1.5, -3.0])
def test_int_and_float_times_decode(number: float) -> None:
    """Times stored as ints or floats (any msgpack number but a bool) decode as they were."""
    codec = EntryCodec()
    entry = Entry(value=1, created=number, expires=number, cost=number)
    out = codec.decode(codec.encode(entry))
    assert (out.created, out.expires, out.cost) == (number, number, number)


def test_the_stock_serializer_stores_the_value_inline() -> None:
    """With MsgpackSerializer the value is the entry's 10th msgpack item itself (one pass)."""
    import msgpack

    from stratacache.core.codec import FORMAT

    codec = EntryCodec()
    data = codec.encode(_entry({"a": [1, 2]}), key="ns:k")
    fields = msgpack.unpackb(data, raw=False, strict_map_key=False)
    assert fields[0] == FORMAT and fields[9] == {"a": [1, 2]}
    assert codec.decode(data, key="ns:k").value == {"a": [1, 2]}


def test_entries_of_the_bytes_format_still_decode() -> None:
    """An entry written with the value as msgpack bytes (format 2) decodes as before."""
    import msgpack

    from stratacache.core.codec import BYTES_FORMAT, key_binding

    codec = EntryCodec()
    value = codec.serializer.dumps((1, "x"))
    fields = [BYTES_FORMAT, key_binding("ns:k"), 10.0, 70.0, None, None, 0.0, [], {}, value]
    entry = codec.decode(msgpack.packb(fields, use_bin_type=True), key="ns:k")
    assert entry.value == (1, "x") and type(entry.value) is tuple


class _JsonSerializer:
    """A serializer that is not msgpack: its output is stored as bytes."""

    def dumps(self, value: object) -> bytes:
        import json

        return json.dumps(value).encode()

    def loads(self, data: bytes) -> object:
        import json

        return json.loads(data)


def test_another_serializer_stores_bytes_and_refuses_inline_entries() -> None:
    """A non-msgpack serializer round-trips through the bytes format; inline entries are a miss."""
    codec = EntryCodec(serializer=_JsonSerializer())
    assert codec.decode(codec.encode(_entry([1, 2]), key="ns:k"), key="ns:k").value == [1, 2]
    inline = EntryCodec().encode(_entry([1, 2]), key="ns:k")
    with pytest.raises(DeserializationError):
        codec.decode(inline, key="ns:k")


def test_bindings_are_memoized_within_a_bound() -> None:
    """Reading many keys keeps the binding memo bounded and the bindings right."""
    from stratacache.core import codec as codec_module

    codec = EntryCodec()
    for i in range(codec_module._BINDINGS_KEPT + 10):
        key = f"ns:k{i}"
        assert codec.decode(codec.encode(_entry(i), key=key), key=key).value == i
    assert len(codec._bindings) <= codec_module._BINDINGS_KEPT


def _decoded(entry: Entry | None) -> tuple[object, ...] | None:
    """Every field of a decoded entry, for comparing two decodes."""
    if entry is None:
        return None
    return (
        entry.value,
        entry.created,
        entry.expires,
        entry.refresh_after,
        entry.stale_until,
        entry.cost,
        entry.tags,
        dict(entry.tag_versions),
        entry.size,
        entry.deadline,
        entry.payload,
    )


def _batch(codec: EntryCodec) -> tuple[list[str], list[bytes]]:
    """Keys and stored bytes (after a 1-byte prefix): good, moved, foreign and odd entries."""
    import msgpack

    from stratacache.core.codec import BYTES_FORMAT, FORMAT, key_binding

    good = codec.encode(_entry({"a": [1, 2]}), key="ns:a")
    plain = codec.encode(Entry("v", created=1.0, expires=None, cost=0), key="ns:b")
    bytes_format = [BYTES_FORMAT, key_binding("ns:e"), 1.0, None, None, None, 0.0, [], {}]
    items = [
        ("ns:a", good),
        ("ns:b", plain),
        ("ns:c", good),  # sealed for ns:a: moved
        ("ns:d", good[: len(good) // 2]),  # truncated
        ("ns:e", msgpack.packb([*bytes_format, codec.serializer.dumps(7)], use_bin_type=True)),
        ("ns:f", msgpack.packb([FORMAT, key_binding("ns:f"), "x", None, None, None, 0, [], {}, 1])),
        ("ns:i", msgpack.packb([FORMAT, key_binding("ns:i"), 5, 9, None, None, 0, [], {}, 1])),
        ("ns:g", b""),
        ("ns:h", msgpack.packb([1, 2, 3])),
    ]
    return [k for k, _ in items], [b"\x00" + data for _, data in items]


@pytest.mark.parametrize("envelopes", [[], [HMACSigner(b"k" * 16)]], ids=["plain", "signed"])
def test_decode_many_decides_as_decode_does(envelopes: list[Envelope]) -> None:
    """A batch decode gives each key what ``decode`` gives it (None where it raises), moved
    values counted alike."""
    codec, single = EntryCodec(envelopes=envelopes), EntryCodec(envelopes=envelopes)
    keys, blobs = _batch(codec)
    expected = []
    for key, blob in zip(keys, blobs, strict=True):
        try:
            expected.append(_decoded(single.decode(blob[1:], key=key)))
        except DeserializationError:
            expected.append(None)
    got = [_decoded(e) for e in codec.decode_many(keys, blobs, 1)]
    assert got == expected
    assert got[0] is not None and got[2] is None and got[3] is None
    assert codec.moved_values == single.moved_values >= 1


def test_decode_many_keeps_tags_versions_and_types() -> None:
    """Tags come back as a tuple, versions as a dict, a tuple value as a tuple."""
    codec = EntryCodec()
    data = codec.encode(_entry((1, "x")), key="ns:k")
    (entry,) = codec.decode_many(["ns:k"], [data])
    assert entry is not None and entry.tags == ("user:1",) and entry.tag_versions == {"user:1": 3}
    assert type(entry.value) is tuple and entry.size == len(data)
