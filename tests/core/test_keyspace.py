"""Key spaces: a second, indistinguishable function on one key space is refused."""

from __future__ import annotations

import pytest

from stratacache.core.errors import ConfigError
from stratacache.core.keyspace import KeySpaces


def one(x: int) -> int:
    """A module-level function."""
    return x


def other(x: int) -> int:
    """Another module-level function with different code."""
    return x + 1


def test_module_level_functions_are_not_tracked() -> None:
    """A module-level name is unique in its module: redefinitions continue the key space."""
    spaces = KeySpaces()
    spaces.claim("m.f", b"", (), one, explicit=False)
    spaces.claim("m.f", b"", (), other, explicit=False)


@pytest.mark.parametrize("name", ["m.<lambda>", "m.make.<locals>.f"])
def test_local_names_with_other_code_are_refused(name: str) -> None:
    """Lambdas and nested functions sharing a name and captured values need name=/key=."""
    spaces = KeySpaces()
    spaces.claim(name, b"x=1", (), one, explicit=False)
    spaces.claim(name, b"x=1", (), one, explicit=False)  # the same function again
    spaces.claim(name, b"x=2", (), other, explicit=False)  # captured other values: own space
    with pytest.raises(ConfigError, match="name="):
        spaces.claim(name, b"x=1", (), other, explicit=False)


def test_explicit_names_are_tracked() -> None:
    """Two different functions given the same name= are refused."""
    spaces = KeySpaces()
    spaces.claim("shared", b"", (), one, explicit=True)
    with pytest.raises(ConfigError):
        spaces.claim("shared", b"", (), other, explicit=True)


def test_unkeyable_captured_objects_are_compared_by_identity() -> None:
    """The same captured object is the same function; another one, even dead, is refused."""
    spaces = KeySpaces()

    class Client:
        """No stable representation."""

    client = Client()
    spaces.claim("m.f", b"?", (client,), one, explicit=False)
    spaces.claim("m.f", b"?", (client,), one, explicit=False)
    with pytest.raises(ConfigError, match="Client"):
        spaces.claim("m.f", b"?", (Client(),), one, explicit=False)
