"""Fuzzing the key builder: any arguments and templates give a valid key or CacheKeyError."""

from __future__ import annotations

import contextlib
import enum
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stratacache.core.errors import CacheKeyError
from stratacache.core.keys import MAX_KEY_LENGTH, CallKeyBuilder, KeyTemplate, validate_key

FUZZ = settings(
    max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


class Color(enum.Enum):
    RED = 1


class Opaque:
    """An object with no stable representation."""


atoms = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)  # past float range (":.0f" overflows)
    | st.floats()
    | st.text(max_size=30)
    | st.binary(max_size=30)
    | st.decimals()
    | st.uuids()
    | st.datetimes()
    | st.dates()
    | st.just(Color.RED)
    | st.builds(Opaque)
    | st.complex_numbers()
)
arguments = st.recursive(
    atoms,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.frozensets(st.integers() | st.text(max_size=5), max_size=4)
        | st.dictionaries(st.text(max_size=5) | st.integers(), children, max_size=4)
    ),
    max_leaves=12,
)
format_specs = st.sampled_from(
    ["", "!r", "!s", "!a", ":d", ":x", ":.2f", ":>10", ":,", ":%", ":e", ":.0f", ":s", ":=^8"]
)
fields = st.sampled_from(["a", "b", "a[0]", "a.real", "b[x]", "a.__class__"])
templates = st.lists(
    st.text(st.characters(exclude_characters="{}"), max_size=8)
    | st.builds(lambda f, spec: "{" + f + spec + "}", fields, format_specs),
    min_size=1,
    max_size=4,
).map("".join)


def f(a: Any, b: Any = None) -> None:
    """The function whose calls are keyed."""


def g(a: Any, *args: Any, **kwargs: Any) -> None:
    """A function taking anything."""


def _check(key: str) -> None:
    assert isinstance(key, str) and 0 < len(key) <= MAX_KEY_LENGTH


@FUZZ
@given(a=arguments, b=arguments)
def test_automatic_key_of_any_arguments_is_a_key_or_cache_key_error(a: Any, b: Any) -> None:
    """Automatic keys: any argument values give a valid key or CacheKeyError."""
    builder = CallKeyBuilder(f)
    with contextlib.suppress(CacheKeyError):
        _check(builder.key(builder.bind((a,), {"b": b}), (a,), {"b": b}))


@FUZZ
@given(args=st.lists(arguments, max_size=3), kwargs=st.dictionaries(st.text(), arguments))
def test_variadic_calls_are_a_key_or_cache_key_error(
    args: list[Any], kwargs: dict[str, Any]
) -> None:
    """Any positional and keyword arguments (odd names included) key or refuse cleanly."""
    builder = CallKeyBuilder(g)
    with contextlib.suppress(CacheKeyError):
        _check(builder.key(builder.bind((1, *args), kwargs), (1, *args), kwargs))


@FUZZ
@given(template=templates, a=arguments, b=arguments)
@example(template="{a:.0f}", a=10**400, b=None)
@example(template="{a}", a=10**5000, b=None)
def test_templates_filled_with_any_arguments_are_a_key_or_cache_key_error(
    template: str, a: Any, b: Any
) -> None:
    """Any template over ``a``/``b`` with any argument values: a key or CacheKeyError."""
    try:
        builder = CallKeyBuilder(f, key=template)
        _check(builder.key(builder.bind((a, b), {}), (a, b), {}))
    except CacheKeyError:
        pass


@FUZZ
@given(template=st.text(max_size=40))
def test_any_template_text_is_accepted_or_refused_with_cache_key_error(template: str) -> None:
    """Building a template from any text never raises anything but CacheKeyError."""
    with contextlib.suppress(CacheKeyError):
        KeyTemplate(template)


@FUZZ
@given(key=arguments | st.text(min_size=MAX_KEY_LENGTH - 2, max_size=MAX_KEY_LENGTH + 2))
def test_validate_key_accepts_a_key_or_raises_cache_key_error(key: Any) -> None:
    """validate_key on any object: the key itself, or CacheKeyError."""
    with contextlib.suppress(CacheKeyError):
        assert validate_key(key) is key
