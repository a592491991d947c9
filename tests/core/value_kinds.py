"""Shared by the value tests: every kind of value that must round-trip, those that must be
refused, and ``same`` (equal and of the same type all the way down)."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import math
import sys
import uuid
import zoneinfo
from collections.abc import Callable
from decimal import Decimal
from typing import Any, NamedTuple

import pydantic
from hypothesis import strategies as st

# -- user types, defined at module level so they get a stable name --------------------------------
Point = collections.namedtuple("Point", "x y")


class Pair(NamedTuple):
    """A typing.NamedTuple with a default."""

    left: Any
    right: Any = None


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Color(enum.Flag):
    RED = 1
    GREEN = 2
    BLUE = 4


class Shape(enum.Enum):
    SQUARE = ("square", 4)
    TRIANGLE = ("triangle", 3)


class Perm(enum.IntFlag):
    R = 4
    W = 2
    X = 1


MEMBERS: list[Any] = [Level.LOW, Level.HIGH, Color.RED, Color.RED | Color.BLUE, Color(0)]
MEMBERS += [Perm.R, Perm.R | Perm.W | Perm.X]
MEMBERS += [Shape.SQUARE, Shape.TRIANGLE]
if sys.version_info >= (3, 11):

    class Mood(enum.StrEnum):
        CALM = "calm"
        ANGRY = "angry"

    MEMBERS += [Mood.CALM, Mood.ANGRY]


@dataclasses.dataclass(frozen=True)
class Frozen:
    a: Any
    b: Any = 0


@dataclasses.dataclass
class Box:
    label: str
    content: Any
    items: list[Any] = dataclasses.field(default_factory=list)
    hidden: int = dataclasses.field(default=0, init=False)


@dataclasses.dataclass(slots=True)
class Slotted:
    x: Any
    y: Any


@dataclasses.dataclass
class Counted:
    """Usable as a defaultdict factory: callable without arguments."""

    n: int = 0


class Model(pydantic.BaseModel):
    name: str
    payload: Any = None
    when: dt.datetime | None = None


class Outer(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")

    inner: Model
    tags: list[str] = []


class Secretive(pydantic.BaseModel):
    """A model with a private attribute, kept like pickle keeps it."""

    visible: int = 0
    _token: str = pydantic.PrivateAttr(default="")


# -- values that must round-trip ---------------------------------------------------------------
fixed_offsets = st.builds(
    dt.timezone,
    st.timedeltas(min_value=dt.timedelta(hours=-23), max_value=dt.timedelta(hours=23)),
)
named_offsets = st.builds(
    dt.timezone,
    st.timedeltas(min_value=dt.timedelta(hours=-23), max_value=dt.timedelta(hours=23)),
    st.text(min_size=1, max_size=8),
)
zones = st.none() | fixed_offsets | named_offsets | st.timezones()

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**64, max_value=2**300) | st.integers(max_value=-(2**63) - 1),
    st.floats(allow_nan=False),
    st.complex_numbers(allow_nan=False),
    st.text(),
    st.binary(),
    st.binary().map(bytearray),
    st.decimals(allow_nan=False),
    st.uuids(),
    st.datetimes(timezones=zones),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.replace(fold=1)),
    st.dates(),
    st.times(timezones=st.none() | fixed_offsets | named_offsets),
    st.timedeltas(),
    st.sampled_from(MEMBERS),
)
hashables = st.one_of(
    st.integers(),
    st.text(max_size=5),
    st.booleans(),
    st.tuples(st.integers(), st.text(max_size=3)),
    st.frozensets(st.integers(), max_size=3),
    st.sampled_from(MEMBERS),
    st.builds(Point, st.integers(), st.integers()),
    st.builds(Frozen, st.integers(), st.text(max_size=3)),
    st.uuids(),
    st.dates(),
)
factories = st.sampled_from([None, list, dict, set, int, str, collections.Counter, Counted])


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    small = {"max_size": 4}
    return st.one_of(
        st.lists(inner, **small),
        st.lists(inner, **small).map(tuple),
        st.dictionaries(hashables, inner, **small),
        st.sets(hashables, **small),
        st.frozensets(hashables, **small),
        st.dictionaries(hashables, inner, **small).map(lambda d: collections.OrderedDict(d)),
        st.builds(collections.defaultdict, factories, st.dictionaries(hashables, inner, **small)),
        st.dictionaries(st.text(max_size=3), st.integers(), **small).map(collections.Counter),
        st.builds(collections.deque, st.lists(inner, **small), st.none() | st.integers(0, 5)),
        st.builds(Point, inner, inner),
        st.builds(Pair, inner, inner),
        st.builds(Frozen, inner, inner),
        st.builds(Box, st.text(max_size=5), inner, st.lists(inner, max_size=3)),
        st.builds(Slotted, inner, inner),
        st.builds(Model, name=st.text(max_size=5), payload=inner),
        st.builds(Outer, inner=st.builds(Model, name=st.text(max_size=3), payload=inner)),
    )


values = st.recursive(scalars, _containers, max_leaves=20)


# -- values that must be refused at set, each naming its type ------------------------------------
class Slug(str):
    pass


class Count(int):
    pass


class Ratio(float):
    pass


class Record(dict):  # type: ignore[type-arg]
    pass


class Rows(list):  # type: ignore[type-arg]
    pass


class Coords(tuple):  # type: ignore[type-arg]
    pass


class Blob(bytes):
    pass


class Stamp(dt.datetime):
    pass


class Money(Decimal):
    pass


class Ordered(collections.OrderedDict):  # type: ignore[type-arg]
    pass


@dataclasses.dataclass(eq=False)
class Identity:
    a: int = 1


class Plain:
    pass


class CustomZone(dt.tzinfo):
    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=1)

    def dst(self, when: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)

    def tzname(self, when: dt.datetime | None) -> str:
        return "CUSTOM"


def _local_dataclass() -> Any:
    @dataclasses.dataclass
    class Local:
        a: int = 1

    return Local()


#: (label, factory, a word the error must contain)
REFUSED: list[tuple[str, Callable[[], Any], str]] = [
    ("str subclass", lambda: Slug("x"), "Slug"),
    ("int subclass", lambda: Count(3), "Count"),
    ("float subclass", lambda: Ratio(0.5), "Ratio"),
    ("dict subclass", lambda: Record(a=1), "Record"),
    ("list subclass", lambda: Rows([1]), "Rows"),
    ("tuple subclass", lambda: Coords((1, 2)), "Coords"),
    ("bytes subclass", lambda: Blob(b"x"), "Blob"),
    ("datetime subclass", lambda: Stamp(2024, 1, 1), "Stamp"),
    ("Decimal subclass", lambda: Money("1.5"), "Money"),
    ("OrderedDict subclass", lambda: Ordered(a=1), "Ordered"),
    ("dataclass with eq=False", Identity, "eq=False"),
    ("plain object", Plain, "Plain"),
    ("class defined in a function", _local_dataclass, "Local"),
    ("defaultdict with a lambda", lambda: collections.defaultdict(lambda: 0), "default_factory"),
    ("memoryview", lambda: memoryview(b"abc"), "memoryview"),
    (
        "tzinfo other than zoneinfo",
        lambda: dt.datetime(2024, 1, 1, tzinfo=CustomZone()),
        "CustomZone",
    ),
    ("nested in a list", lambda: [1, {"a": Slug("x")}], "Slug"),
    ("nested in a tuple", lambda: (1, Count(2)), "Count"),
    ("nested in a dataclass", lambda: Box("b", Plain()), "Plain"),
    ("nested in a namedtuple", lambda: Point(1, Rows()), "Rows"),
    ("nested bytearray view", lambda: {"k": [memoryview(b"a")]}, "memoryview"),
    ("function", lambda: len, "builtin_function_or_method"),
]
try:
    from dateutil import tz as dateutil_tz

    REFUSED += [
        (
            "dateutil zone",
            lambda: dt.datetime(2024, 1, 1, tzinfo=dateutil_tz.gettz("Europe/Paris")),
            "dateutil",
        ),
        ("dateutil utc", lambda: dt.datetime(2024, 1, 1, tzinfo=dateutil_tz.tzutc()), "tzutc"),
    ]
except ImportError:  # optional: only checked where installed
    pass


# -- comparing -----------------------------------------------------------------------------------
def same(a: Any, b: Any) -> bool:
    """Equal and of exactly the same type all the way down (zones, folds, factories included)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, enum.Enum):
        return a is b
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, collections.deque) and a.maxlen != b.maxlen:
        return False
    if isinstance(a, (list, tuple, collections.deque)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, collections.defaultdict) and a.default_factory is not b.default_factory:
        return False
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(a[ka], b[kb]) for ka, kb in zip(a, b, strict=True)
        )
    if isinstance(a, (set, frozenset)):
        return a == b and all(any(same(x, y) for y in b if y == x) for x in a)
    if isinstance(a, (dt.datetime, dt.time)):
        return (
            a.replace(tzinfo=None) == b.replace(tzinfo=None)
            and a.fold == b.fold
            and _same_zone(a.tzinfo, b.tzinfo)
        )
    if dataclasses.is_dataclass(a):
        return a == b and all(
            same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    if isinstance(a, pydantic.BaseModel):
        return a == b and same(a.__dict__, b.__dict__) and same(a.model_extra, b.model_extra)
    if isinstance(a, Decimal):
        return str(a) == str(b)
    return bool(a == b)


def _same_zone(a: dt.tzinfo | None, b: dt.tzinfo | None) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, zoneinfo.ZoneInfo):
        return a.key == b.key  # type: ignore[union-attr]
    if isinstance(a, dt.timezone):
        return a.utcoffset(None) == b.utcoffset(None) and a.tzname(None) == b.tzname(None)  # type: ignore[union-attr]
    return a is b


ZONED = dt.datetime(2021, 11, 7, 1, 30, tzinfo=zoneinfo.ZoneInfo("America/New_York"), fold=1)
UUID = uuid.UUID(int=7)
