"""Key building: validation, templates, and automatic keys stable across processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stratacache.core.errors import CacheKeyError
from stratacache.core.keys import CallKeyBuilder, KeyTemplate, validate_key


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
