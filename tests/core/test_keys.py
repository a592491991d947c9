"""Key building: validation, templates, and automatic keys stable across processes."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import functools
import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratacache.core.errors import CacheKeyError, ConfigError
from stratacache.core.keys import (
    CallKeyBuilder,
    KeyTemplate,
    function_identity,
    shorten,
    validate_key,
)


def fetch_user(user_id: int, verbose: bool = False) -> None:
    """A function to build keys for."""


def test_validate_key_refuses_bad_keys() -> None:
    """Non-strings, empty and overlong keys raise CacheKeyError."""
    for bad in (None, 12, b"k", "", "x" * 2000):
        with pytest.raises(CacheKeyError):
            validate_key(bad)
    assert validate_key("ok") == "ok"


def test_template_fills_from_arguments_and_defaults() -> None:
    """``user:{user_id}`` is filled from positional, keyword and default arguments."""
    builder = CallKeyBuilder(fetch_user, "user:{user_id}:{verbose}")
    args = builder.bind((7,), {})
    assert builder.key(args, (7,), {}) == "user:7:False"


def test_template_naming_unknown_argument_fails_at_decoration() -> None:
    """A template field the function does not take is refused when the builder is made."""
    with pytest.raises(CacheKeyError, match="uid"):
        CallKeyBuilder(fetch_user, "user:{uid}")


def test_template_needs_named_fields() -> None:
    """Positional ``{}`` fields are refused."""
    with pytest.raises(CacheKeyError):
        KeyTemplate("user:{}")


def test_auto_key_is_same_for_equivalent_calls() -> None:
    """f(7), f(user_id=7) and f(7, False) give the same automatic key."""
    builder = CallKeyBuilder(fetch_user)
    keys = {
        builder.key(builder.bind(a, kw), a, kw)
        for a, kw in [((7,), {}), ((), {"user_id": 7}), ((7, False), {})]
    }
    assert len(keys) == 1
    assert next(iter(keys)).startswith(f"{__name__}.fetch_user:")


def test_auto_key_differs_for_different_arguments() -> None:
    """Different arguments give different keys (and int 1 differs from str '1')."""
    builder = CallKeyBuilder(fetch_user)
    k1 = builder.key(builder.bind((1,), {}), (1,), {})
    k2 = builder.key(builder.bind(("1",), {}), ("1",), {})
    assert k1 != k2


def test_unserializable_argument_gives_clear_error() -> None:
    """An argument that cannot be encoded raises CacheKeyError naming the function."""
    builder = CallKeyBuilder(fetch_user)
    with pytest.raises(CacheKeyError, match="fetch_user"):
        builder.key(builder.bind((object(),), {}), (object(),), {})


def test_arguments_that_do_not_fit_give_clear_error() -> None:
    """Calling with arguments the signature rejects raises CacheKeyError."""
    builder = CallKeyBuilder(fetch_user)
    with pytest.raises(CacheKeyError):
        builder.bind((1, 2, 3), {})


def test_var_keyword_order_does_not_matter() -> None:
    """f(a=1, b=2) and f(b=2, a=1) share a key when the function takes **kwargs."""

    def report(**filters: object) -> None: ...

    builder = CallKeyBuilder(report)
    k1 = builder.key(builder.bind((), {"a": 1, "b": 2}), (), {"a": 1, "b": 2})
    k2 = builder.key(builder.bind((), {"b": 2, "a": 1}), (), {"b": 2, "a": 1})
    assert k1 == k2


def test_methods_key_self_or_refuse_it() -> None:
    """``self`` is part of the key: a plain instance is refused, ignore=("self",) leaves it out."""

    class Repo:
        def find(self, item_id: int) -> None: ...

    builder = CallKeyBuilder(Repo.find)
    with pytest.raises(CacheKeyError, match=r"__cache_key__|ignore=\(\"self\",\)"):
        builder.key(builder.bind((Repo(), 3), {}), (Repo(), 3), {})
    loose = CallKeyBuilder(Repo.find, ignore=("self",))
    k1 = loose.key(loose.bind((Repo(), 3), {}), (Repo(), 3), {})
    k2 = loose.key(loose.bind((Repo(), 3), {}), (Repo(), 3), {})
    assert k1 == k2


def test_auto_keys_are_stable_across_processes(tmp_path: Path) -> None:
    """Two fresh Python processes (different hash seeds) compute identical keys."""
    script = tmp_path / "keys_probe.py"
    script.write_text(
        textwrap.dedent(
            """
            import datetime, decimal
            from stratacache.core.keys import CallKeyBuilder
            def lookup(a, b=None, *rest, **kw): ...
            b = CallKeyBuilder(lookup)
            args = ("x", {"k": [1, 2.5, None]}, (1, 2), frozenset({"z"}))
            kw = {"when": datetime.date(2024, 1, 2), "amount": decimal.Decimal("3.10")}
            print(b.key(b.bind(args, kw), args, kw))
            """
        )
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    outputs = set()
    for seed in ("1", "2"):
        env = {"PYTHONHASHSEED": seed, "PYTHONPATH": src, "PATH": "/usr/bin:/bin"}
        result = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, env=env, check=True
        )
        outputs.add(result.stdout.strip())
    assert len(outputs) == 1 and next(iter(outputs)).startswith("__main__.lookup:")


def test_main_script_functions_key_alike_in_spawned_children(tmp_path: Path) -> None:
    """A function of the main script keys the same in a spawn child (there ``__mp_main__``)."""
    script = tmp_path / "spawn_probe.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing as mp
            from stratacache.core.keys import CallKeyBuilder

            def price(x): ...

            class Shop:
                def price(self, x): ...

            def probe(queue):
                b, m = CallKeyBuilder(price), CallKeyBuilder(Shop.price)
                queue.put((b.key(b.bind((1,), {}), (1,), {}), m.name))

            if __name__ == "__main__":
                ctx = mp.get_context("spawn")
                queue = ctx.Queue()
                probe(queue)
                child = ctx.Process(target=probe, args=(queue,))
                child.start()
                mine, theirs = queue.get(timeout=60), queue.get(timeout=60)
                child.join(60)
                print(mine == theirs, mine[0].startswith("__main__.price:"))
            """
        )
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {"PYTHONPATH": src, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.stdout.split() == ["True", "True"], result.stderr


# -- the whole kind: equal arguments give one key, different ones differ, the rest is refused --


class Point(NamedTuple):
    """A namedtuple: equal to the plain tuple of its fields."""

    x: int
    y: int


class Color(enum.Enum):
    """A plain enum: members equal only themselves."""

    RED = 1


class Shade(enum.Enum):
    """Another enum with the same values as ``Color``."""

    RED = 1


class Level(enum.IntEnum):
    """An IntEnum: members equal their int value."""

    HIGH = 3


class Mode(str, enum.Enum):
    """A str-valued enum: members equal their text."""

    FAST = "fast"


@dataclasses.dataclass(frozen=True)
class Money:
    """A dataclass: keyed by its compared fields."""

    amount: Decimal
    currency: str
    note: str = dataclasses.field(default="", compare=False)


class Customer(pydantic.BaseModel):
    """A pydantic model: keyed by its fields."""

    id: int
    name: str


class Profile(pydantic.BaseModel):
    """A pydantic model with cached properties: keyed by its fields, which its == compares."""

    id: int

    @functools.cached_property
    def label(self) -> str:
        return f"profile {self.id}"

    @functools.cached_property
    def session(self) -> Plain:
        return Plain()


class Account:
    """A class that gives its instances a cache identity."""

    def __init__(self, number: str, balance: int) -> None:
        self.number = number
        self.balance = balance

    def __cache_key__(self) -> str:
        return self.number


class Plain:
    """No stable identity: only repr/id, which differ between processes."""


def probe(value: object) -> None:
    """A function to key single arguments with."""


KEYED_TYPES = ("Point", "Color", "Shade", "Level", "Mode", "Money", "Customer", "Account", "UTC")


def _key(value: object, **options: Any) -> str:
    builder = CallKeyBuilder(probe, **options)
    return builder.key(builder.bind((value,), {}), (value,), {})


UTC = dt.timezone.utc
EQUAL_PAIRS = [
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
    ({"x": {"p": 1, "q": [1, {"r": 2, "s": 3}]}}, {"x": {"q": [1, {"s": 3, "r": 2}], "p": 1}}),
    (frozenset([1, 9]), frozenset([9, 1])),
    (frozenset(["alpha", "beta", "gamma"]), frozenset(["gamma", "beta", "alpha"])),
    ({1, 2, 3}, frozenset([3, 2, 1])),
    (1, True),
    (1, 1.0),
    (0, False),
    (0.0, -0.0),
    (1, Decimal("1.000")),
    (Decimal("3.10"), Decimal("3.1")),
    (Decimal("1e999999999"), Decimal("10.00e999999998")),
    (0.5, Fraction(1, 2)),
    (Decimal("0.25"), 0.25),
    (2, complex(2, 0)),
    ((1, 2), Point(1, 2)),
    (3, Level.HIGH),
    ("fast", Mode.FAST),
    (b"abc", bytearray(b"abc")),
    (collections.OrderedDict([("a", 1), ("b", 2)]), {"b": 2, "a": 1}),
    (collections.defaultdict(int, {"a": 1}), {"a": 1}),
    (
        dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    ),
    (Money(Decimal("1.50"), "EUR", note="a"), Money(Decimal("1.5"), "EUR", note="b")),
    (Customer(id=1, name="Ann"), Customer(name="Ann", id=1)),
    ({1: "a", "k": (1.0, True)}, {"k": (1, 1), 1.0: "a"}),
]


@pytest.mark.parametrize(("left", "right"), EQUAL_PAIRS, ids=lambda v: type(v).__name__)
def test_equal_arguments_give_one_key(left: object, right: object) -> None:
    """Arguments equal in Python's sense (dict order, set order, 1/1.0/True, ...) share a key."""
    assert left == right
    assert _key(left) == _key(right)


def test_a_pydantic_models_cached_properties_are_not_part_of_its_key() -> None:
    """A model keys by its fields: a computed ``cached_property`` (kept in ``__dict__``,
    not compared by ==) neither splits equal models nor makes one unkeyable."""
    read, fresh = Profile(id=1), Profile(id=1)
    assert (read.label, type(read.session)) == ("profile 1", Plain)
    assert read == fresh
    assert _key(read) == _key(fresh) != _key(Profile(id=2))


DIFFERENT = [
    1,
    "1",
    b"1",
    [1],
    (1,),
    frozenset([1]),
    {1: None},
    None,
    0.1,
    Decimal("0.1"),
    dt.date(2024, 1, 2),
    dt.datetime(2024, 1, 2),
    dt.datetime(2024, 1, 2, tzinfo=UTC),
    dt.time(1, 2),
    dt.timedelta(seconds=1),
    uuid.UUID(int=1),
    Color.RED,
    Shade.RED,
    Money(Decimal(1), "EUR"),
    Account("1", 0),
    Point,
    Account,
    probe,
    (),
    [],
    {},
    "",
    float("nan"),
    Decimal("NaN"),  # equal to nothing, a float NaN included
    Decimal("sNaN"),
    float("inf"),
    complex(0, 1),
]


def test_different_arguments_give_different_keys() -> None:
    """Values that are not equal never share a key (int 1 vs str '1', list vs tuple, enums...)."""
    keys = [_key(v) for v in DIFFERENT]
    assert len(set(keys)) == len(keys)


def _local_fn() -> Callable[[], None]:
    def inner() -> None: ...

    return inner


@pytest.mark.parametrize(
    "value",
    [
        object(),
        Plain(),
        [1, Plain()],
        {"nested": {"deep": Plain()}},
        lambda: None,
        _local_fn(),
        threading.Lock(),
        (x for x in ()),
        dataclasses.make_dataclass("Loose", ["a"], eq=False)(1),
    ],
    ids=lambda v: type(v).__name__,
)
def test_unkeyable_arguments_are_refused_with_how_to(value: object) -> None:
    """An argument with no stable representation is a CacheKeyError saying how to key it."""
    with pytest.raises(CacheKeyError) as info:
        _key(value)
    message = str(info.value)
    assert "probe" in message and "__cache_key__" in message
    assert 'ignore=("value",)' in message and "key=" in message


def test_self_referencing_argument_is_refused() -> None:
    """A list that contains itself is a CacheKeyError, not a RecursionError."""
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(CacheKeyError):
        _key(loop)


def test_instance_and_class_are_part_of_the_key() -> None:
    """Methods key ``self`` (via __cache_key__) and classmethods key ``cls`` by qualified name."""

    class Ledger:
        def total(self, units: int) -> None: ...

    builder = CallKeyBuilder(Ledger.total)

    def key(*args: object) -> str:
        return builder.key(builder.bind(args, {}), args, {})

    assert key(Account("A", 1), 5) == key(Account("A", 2), 5) != key(Account("B", 1), 5)
    assert key(Point, 5) != key(Account, 5)


def test_ignore_leaves_named_arguments_out() -> None:
    """ignore=("value",) keys without the argument; unknown names and key= are refused."""
    assert _key(Plain(), ignore=("value",)) == _key(object(), ignore=("value",))
    with pytest.raises(ConfigError):
        CallKeyBuilder(probe, ignore=("nope",))
    with pytest.raises(ConfigError):
        CallKeyBuilder(probe, key="p:{value}", ignore=("value",))


def test_closures_of_one_factory_get_their_own_keys() -> None:
    """Two closures of one factory differ in what they captured, so their keys differ."""

    def factory(factor: int) -> Callable[[int], int]:
        def scale(x: int) -> int:
            return x * factor

        return scale

    keys = {
        CallKeyBuilder(fn).key({"x": 7}, (7,), {}) for fn in (factory(2), factory(3), factory(2))
    }
    assert len(keys) == 2


@pytest.mark.parametrize("length", [1025, 5000, 100_000])
def test_long_template_keys_are_shortened_stably(length: int) -> None:
    """A template key over the limit is cut and suffixed with a digest of the whole key."""
    builder = CallKeyBuilder(probe, "p:{value}", max_length=200)
    long_a, long_b = "a" * length, "a" * (length - 1) + "b"
    key_a = builder.key({"value": long_a}, (long_a,), {})
    key_b = builder.key({"value": long_b}, (long_b,), {})
    assert len(key_a) <= 200 and key_a.startswith("p:aaa") and key_a != key_b
    assert key_a == builder.key({"value": long_a}, (long_a,), {})
    assert shorten("short", 200) == "short"


# -- the same keys in every process: a hypothesis property against two other interpreters --

_WORKER = """
import collections, datetime, json, sys, uuid, zoneinfo
from decimal import Decimal
from fractions import Fraction
from stratacache.core.keys import CallKeyBuilder

def probe(value): ...

builder = CallKeyBuilder(probe, name="probe")
names = {"datetime": datetime, "zoneinfo": zoneinfo, "Decimal": Decimal, "Fraction": Fraction,
         "UUID": uuid.UUID, "nan": float("nan"), "inf": float("inf")}
from tests.core import test_keys as types_module  # the keyed classes, importable by name
names.update({n: getattr(types_module, n) for n in types_module.KEYED_TYPES})
for line in sys.stdin:
    values = [eval(text, dict(names)) for text in json.loads(line)]
    print(json.dumps([builder.key({"value": v}, (v,), {}) for v in values]), flush=True)
"""

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.decimals(),
    st.fractions(),
    st.uuids(),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.dates(),
    st.times(),
    st.timedeltas(),
)
_hashables = st.one_of(st.integers(), st.text(max_size=8), st.booleans(), st.tuples(st.text()))
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(_hashables, inner, max_size=4),
        st.frozensets(_hashables, max_size=6),
        st.sets(_hashables, max_size=6),
    ),
    max_leaves=12,
)


def _twin(value: Any) -> Any:
    """An equal copy built in another order (mappings and sets reversed, ints as floats)."""
    if isinstance(value, dict):
        return {_twin(k): _twin(v) for k, v in reversed(list(value.items()))}
    if isinstance(value, (set, frozenset)):
        return type(value)(reversed([_twin(v) for v in value]))
    if isinstance(value, (list, tuple)):
        return type(value)(_twin(v) for v in value)
    if type(value) is int and abs(value) < 2**53:
        return float(value)
    return value


class _Worker:
    """A Python process with its own hash seed that keys the values it is sent."""

    def __init__(self, seed: str) -> None:
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": f"{_SRC}{os.pathsep}{_ROOT}"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def keys(self, texts: list[str]) -> list[str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(texts) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the key worker died"
        keys: list[str] = json.loads(line)
        return keys

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


_ROOT = str(Path(__file__).resolve().parents[2])
_SRC = str(Path(_ROOT) / "src")


@pytest.fixture(scope="module")
def key_workers() -> Iterator[list[_Worker]]:
    """Two interpreters with hash seeds different from each other (and from this one's)."""
    workers = [_Worker("0"), _Worker("4242")]
    yield workers
    for worker in workers:
        worker.close()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_values, min_size=1, max_size=20))
def test_equal_arguments_give_equal_keys_in_other_processes(
    key_workers: list[_Worker], batch: list[Any]
) -> None:
    """Each value and its reordered twin get one key, the same in processes of other seeds."""
    twins = [_twin(v) for v in batch]
    texts = [repr(v) for v in batch + twins]
    builder = CallKeyBuilder(probe, name="probe")
    here = [builder.key({"value": v}, (v,), {}) for v in batch + twins]
    assert here[: len(batch)] == here[len(batch) :]
    for worker in key_workers:
        assert worker.keys(texts) == here


def test_callables_that_share_a_name_are_told_apart() -> None:
    """Partials, bound methods and builtin methods differ by what they are bound to."""
    import functools

    def power(base: int, exp: int) -> int:
        return int(base**exp)

    def identity(fn: Callable[..., Any]) -> tuple[bytes, tuple[object, ...]]:
        return function_identity(fn)

    assert identity(functools.partial(power, 2)) != identity(functools.partial(power, 3))
    assert identity(Account("a", 1).__cache_key__) != identity(Account("b", 1).__cache_key__)
    first, second = {"k": 1}, {"k": 2}
    assert identity(first.get)[0] != identity(second.get)[0]
    lock = threading.Lock()
    assert identity(lock.acquire)[1] == (lock,)  # no stable form: compared by identity
    assert identity(Money(Decimal(1), "EUR"))[0] != identity(Money(Decimal(2), "EUR"))[0]


_TYPED_EXPRESSIONS = [
    "Color.RED",
    "Shade.RED",
    "Level.HIGH",
    "Mode.FAST",
    "Point(1, 2)",
    "Money(Decimal('1.50'), 'EUR')",
    "Customer(id=1, name='Ann')",
    "Account('NO-1', 5)",
    "frozenset({Mode.FAST, 'x', 'y', 'z'})",
    "{'b': [Point(1, 2), Color.RED], 'a': {Level.HIGH, 9}}",
    "Account",
    "Point",
    "datetime.datetime(2024, 5, 1, 12, tzinfo=UTC)",
    "datetime.datetime(2024, 5, 1, 12, tzinfo=zoneinfo.ZoneInfo('Europe/Oslo'))",
]


def test_keyed_types_give_the_same_keys_in_other_processes(key_workers: list[_Worker]) -> None:
    """Enums, namedtuples, dataclasses, pydantic models, __cache_key__ and classes key alike."""
    import zoneinfo

    names = {"datetime": dt, "zoneinfo": zoneinfo, "Decimal": Decimal}
    names.update({n: globals()[n] for n in KEYED_TYPES})
    values = [eval(text, dict(names)) for text in _TYPED_EXPRESSIONS]
    builder = CallKeyBuilder(probe, name="probe")
    here = [builder.key({"value": v}, (v,), {}) for v in values]
    assert len(set(here)) == len(here)
    for worker in key_workers:
        assert worker.keys(_TYPED_EXPRESSIONS) == here


def _f_plain(a, b=2, c=None):  # type: ignore[no-untyped-def]
    return a


def _f_posonly(a, /, b, c=3):  # type: ignore[no-untyped-def]
    return a


def _f_star(a, *rest, b=1):  # type: ignore[no-untyped-def]
    return a


def _f_kwonly(a, *, b):  # type: ignore[no-untyped-def]
    return a


def _f_varkw(a, **extra):  # type: ignore[no-untyped-def]
    return a


def _f_none():  # type: ignore[no-untyped-def]
    return 0


@pytest.mark.parametrize(
    ("fn", "args", "kwargs"),
    [
        (_f_plain, (1,), {}),
        (_f_plain, (1, 5), {}),
        (_f_plain, (1, 5, 6), {}),
        (_f_plain, (1,), {"c": 4}),
        (_f_posonly, (1, 2), {}),
        (_f_posonly, (1, 2, 9), {}),
        (_f_posonly, (1,), {"b": 2}),
        (_f_star, (1, 2, 3), {}),
        (_f_star, (1,), {"b": 5}),
        (_f_kwonly, (1,), {"b": 2}),
        (_f_varkw, (1,), {"z": 2}),
        (_f_varkw, (1,), {}),
        (_f_none, (), {}),
    ],
)
def test_bind_gives_what_signature_bind_gives(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Binding a call (positional fast path or not) names arguments as ``Signature.bind`` does."""
    import inspect

    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    got = CallKeyBuilder(fn).bind(args, kwargs)
    assert got == dict(bound.arguments)
    assert list(got) == list(bound.arguments)


@pytest.mark.parametrize(
    ("fn", "args"),
    [
        (_f_plain, ()),
        (_f_plain, (1, 2, 3, 4)),
        (_f_posonly, (1,)),
        (_f_none, (1,)),
        (_f_kwonly, (1,)),
    ],
)
def test_bind_refuses_calls_that_do_not_fit(fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Too few or too many positional arguments raise ``CacheKeyError``, fast path or not."""
    with pytest.raises(CacheKeyError, match="arguments do not match"):
        CallKeyBuilder(fn).bind(args, {})


@pytest.mark.parametrize("key", ["file:\udcff", "\ud800x", "a\x00b"])
def test_key_no_tier_can_store_is_refused(key: str) -> None:
    """A key with a lone surrogate (not encodable as UTF-8) or a NUL is a CacheKeyError."""
    with pytest.raises(CacheKeyError):
        validate_key(key)


def test_non_ascii_keys_are_accepted() -> None:
    """Valid Unicode beyond ASCII (accents, CJK, emoji) stays a usable key."""
    for key in ("héllo", "東京", "\U0001f600", "a\U0010ffff"):
        assert validate_key(key) == key


def test_template_tag_with_lone_surrogate_is_refused() -> None:
    """A decorator's tag template filled with an undecodable file name is refused at the call."""

    def read(name: str) -> str:
        return name

    builder = CallKeyBuilder(read, "f:{name}", ("file:{name}",))
    with pytest.raises(CacheKeyError):
        builder.tags(builder.bind(("\udcff",), {}))
