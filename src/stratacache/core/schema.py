"""Fingerprints of a dataclass's or pydantic model's fields, stored with its instances.

A stored instance carries the fingerprint of its class's fields (names, declared
types and, for models, which are required) as it was when written. A process whose
class differs (a field added, removed, renamed or retyped) reads the instance as a
miss, never as an object built for another layout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable
from typing import Any

#: the key under which a stored instance's state carries its layout's fingerprint
SCHEMA_KEY = "__schema__"
#: object addresses in reprs (a validator function in ``Annotated``): they differ per process
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _digest(parts: list[tuple[str, object]]) -> str:
    text = ";".join(f"{name}:{_ADDRESS.sub('', repr(kind))}" for name, kind in parts)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def dataclass_schema(cls: type) -> str:
    """The fingerprint of a dataclass's fields: names and declared types, in order."""
    return _digest([(f.name, f.type) for f in dataclasses.fields(cls)])


def model_schema(cls: Any) -> str:
    """The fingerprint of a pydantic model's fields: names, types and required-ness."""
    return _digest(
        [(name, (f.annotation, f.is_required())) for name, f in cls.model_fields.items()]
    )


def lazy(compute: Callable[[type], str], cls: type) -> Callable[[], str]:
    """``compute(cls)`` on first call, then remembered (a model may finish its definition,
    forward references and all, after it was registered)."""
    memo: list[str] = []

    def get() -> str:
        if not memo:
            memo.append(compute(cls))
        return memo[0]

    return get
