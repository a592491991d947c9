"""Key space: full keys, the reserved generation mark, and generations that only move forward."""

from __future__ import annotations

import pytest

from stratacache.core.errors import CacheKeyError
from stratacache.engine.keyspace import KeySpace, generation_prefix


def test_full_key_is_namespace_and_key() -> None:
    """A full key is ``namespace:key`` and ``relative_key`` gives the key back."""
    space = KeySpace("shop", 250)
    assert space.full_key("user:1") == "shop:user:1"
    assert space.relative_key(space.full_key("user:1")) == "user:1"


def test_user_keys_may_not_start_with_the_generation_mark() -> None:
    """``~g...`` is reserved: a user key there could collide with a later generation's keys."""
    with pytest.raises(CacheKeyError):
        KeySpace("shop", 250).full_key("~g1:k")


def test_a_new_generation_moves_every_full_key() -> None:
    """After ``advance`` full keys carry the generation; relative keys stay invalidatable."""
    space = KeySpace("shop", 250)
    assert space.advance(3) is True
    assert space.full_key("k") == generation_prefix("shop", 3) + "k" == "shop:~g3:k"
    assert space.invalidation_key(space.relative_key("shop:~g3:k")) == "shop:~g3:k"
    assert space.full_prefix("user:") == "shop:~g3:user:"


def test_generations_never_go_back() -> None:
    """An older or equal generation (a late bus message) leaves the key space as it is."""
    space = KeySpace("shop", 250)
    space.advance(2)
    assert space.advance(2) is False and space.advance(1) is False
    assert space.generation == 2 and space.prefix == "shop:~g2:"


@pytest.mark.parametrize("bad", ["", "~g3:k", "x" * 2000, 7])
def test_full_keys_checks_each_key_as_full_key_does(bad: object) -> None:
    """A batch refuses the key ``full_key`` refuses, with the same error, and maps the rest back."""
    space = KeySpace("ns", 1024)
    assert space.full_keys(["a", "b"]) == {"ns:a": "a", "ns:b": "b"}
    with pytest.raises(CacheKeyError) as single:
        space.full_key(bad)  # type: ignore[arg-type]
    with pytest.raises(CacheKeyError) as batch:
        space.full_keys(["a", bad])  # type: ignore[list-item]
    assert str(batch.value) == str(single.value)
