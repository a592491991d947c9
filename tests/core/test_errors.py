"""The exception tree: one root, each error also the built-in callers expect."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import stratacache
import stratacache as sc
from stratacache.core import errors

#: control flow inside one module, turned into a response or a stratacache error at its edge
INTERNAL = {
    "stratacache.admin.problems.Problem": "becomes an RFC 9457 HTTP response",
    "stratacache.core.canonical.UnkeyableError": "becomes CacheKeyError in core.keys",
    "stratacache.sql.keys.Unkeyable": "the query cache then runs the statement uncached",
    "stratacache.sql.reads._NoRows": "private control flow: caught where it is raised",
    "stratacache.tiers.sql._lockwait.StillLocked": "a sqlite3 error; becomes FileLockedError",
}


def _defined_exceptions() -> list[type[BaseException]]:
    """Every exception class defined in a stratacache module that imports without extras."""
    found: list[type[BaseException]] = []
    for info in pkgutil.walk_packages(stratacache.__path__, "stratacache."):
        if info.name.endswith(".__main__"):  # importing it would run it
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional extra that is not installed
            continue
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == info.name:
                found.append(obj)
    return found


def test_every_stratacache_exception_is_a_stratacache_error() -> None:
    """No exception class defined by stratacache sits outside ``StratacacheError``."""
    outside = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in _defined_exceptions()
        if not issubclass(cls, sc.StratacacheError)
        and f"{cls.__module__}.{cls.__qualname__}" not in INTERNAL
    ]
    assert outside == []


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (errors.ConfigError, ValueError),
        (errors.CacheKeyError, ValueError),
        (errors.SerializationError, TypeError),
        (errors.MissingKeyError, KeyError),
        (errors.WrongTypeError, TypeError),
        (errors.NotStartedError, RuntimeError),
    ],
)
def test_errors_are_also_the_builtin_callers_expect(
    error: type[Exception], builtin: type[Exception]
) -> None:
    """``except ValueError`` (etc.) still catches stratacache's specific errors."""
    assert issubclass(error, sc.StratacacheError) and issubclass(error, builtin)


def test_exported_exceptions_are_in_the_tree() -> None:
    """Every exception class in ``stratacache.__all__`` derives from ``StratacacheError``."""
    exported = [getattr(sc, name) for name in sc.__all__]
    classes = [obj for obj in exported if isinstance(obj, type) and issubclass(obj, BaseException)]
    assert len(classes) >= 9
    assert all(issubclass(cls, sc.StratacacheError) for cls in classes)


async def test_incr_of_a_missing_key_without_initial_is_a_missing_key_error() -> None:
    """``incr(key, initial=None)`` on nothing raises ``MissingKeyError`` (a ``KeyError``)."""
    cache = sc.Cache(tiers=[sc.MemoryTier()], bus=False)
    async with cache:
        with pytest.raises(sc.MissingKeyError):
            await cache.incr("absent", initial=None)


async def test_incr_of_a_string_is_a_wrong_type_error() -> None:
    """``incr`` on a key holding a string raises ``WrongTypeError`` (a ``TypeError``)."""
    cache = sc.Cache(tiers=[sc.MemoryTier()], bus=False)
    async with cache:
        await cache.set("name", "x")
        with pytest.raises(sc.WrongTypeError, match="incr/decr need an int"):
            await cache.incr("name")
