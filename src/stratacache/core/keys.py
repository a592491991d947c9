"""Cache keys: validation, templates filled from a call's arguments, and stable automatic keys.

Automatic keys are ``module.qualname:`` plus a BLAKE2b digest of the
msgpack-encoded arguments, so the same call yields the same key in every
process and every Python run (``hash()`` is salted per process; never used).
"""

from __future__ import annotations

import hashlib
import inspect
import string
from collections.abc import Callable, Mapping
from typing import Any

from .errors import CacheKeyError, SerializationError
from .serializer import MsgpackSerializer

MAX_KEY_LENGTH = 1024
_SKIPPED_FIRST = ("self", "cls")
_serializer = MsgpackSerializer()


def validate_key(key: object, max_length: int = MAX_KEY_LENGTH) -> str:
    """Return ``key`` if it is a usable key, else raise ``CacheKeyError`` saying why."""
    if not isinstance(key, str):
        raise CacheKeyError(f"cache keys are str, not {type(key).__name__}: {key!r}")
    if not key:
        raise CacheKeyError("cache key must not be empty")
    if len(key) > max_length:
        raise CacheKeyError(f"cache key is {len(key)} characters long; the limit is {max_length}")
    return key


def digest(data: bytes) -> str:
    """A short, stable hex digest (BLAKE2b-128)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def function_name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a function: the stable prefix of its automatic keys."""
    return f"{fn.__module__}.{fn.__qualname__}"


class KeyTemplate:
    """A ``str.format`` template such as ``"user:{user_id}"`` filled from bound arguments."""

    def __init__(self, template: str) -> None:
        if not isinstance(template, str) or not template:
            raise CacheKeyError("a key template must be a non-empty string")
        try:
            self.fields = {
                (name or "").split(".")[0].split("[")[0]
                for _, name, _, _ in string.Formatter().parse(template)
                if name is not None
            }
        except ValueError as exc:
            raise CacheKeyError(f"invalid key template {template!r}: {exc}") from exc
        if "" in self.fields:
            raise CacheKeyError(f"key template {template!r} needs named fields, e.g. {{user_id}}")
        self.template = template

    def check_against(self, parameters: Mapping[str, inspect.Parameter]) -> None:
        """Raise ``CacheKeyError`` if the template names an argument the function lacks."""
        missing = self.fields - set(parameters)
        if missing:
            raise CacheKeyError(
                f"key template {self.template!r} names {sorted(missing)}, which the function "
                f"does not take (it takes {list(parameters)})"
            )

    def render(self, arguments: Mapping[str, Any]) -> str:
        """Fill the template; ``CacheKeyError`` when a field cannot be formatted."""
        try:
            return self.template.format_map(arguments)
        except (KeyError, AttributeError, IndexError, ValueError, TypeError, OverflowError) as exc:
            raise CacheKeyError(f"cannot fill key template {self.template!r}: {exc!r}") from exc


class CallKeyBuilder:
    """Builds keys for calls of one function: from a template, a callable, or automatically."""

    def __init__(
        self,
        fn: Callable[..., Any],
        key: str | Callable[..., str] | None = None,
        tags: tuple[str, ...] = (),
    ) -> None:
        self.signature = inspect.signature(fn)
        params = self.signature.parameters
        self.name = function_name(fn)
        first = next(iter(params), None)
        self.skip_first = first in _SKIPPED_FIRST
        self.var_keyword = next(
            (n for n, p in params.items() if p.kind is inspect.Parameter.VAR_KEYWORD), None
        )
        self.key_fn: Callable[..., str] | None = None
        self.template: KeyTemplate | None = None
        if callable(key):
            self.key_fn = key
        elif key is not None:
            self.template = KeyTemplate(key)
            self.template.check_against(params)
        self.tag_templates = tuple(KeyTemplate(t) for t in tags)
        for tag in self.tag_templates:
            tag.check_against(params)

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The call's arguments by name, defaults applied (``CacheKeyError`` if they don't fit)."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise CacheKeyError(f"arguments do not match {self.name}: {exc}") from exc
        bound.apply_defaults()
        return dict(bound.arguments)

    def key(
        self, arguments: dict[str, Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> str:
        """The cache key of one call (not yet namespaced)."""
        if self.key_fn is not None:
            return validate_key(self.key_fn(*args, **kwargs))
        if self.template is not None:
            return validate_key(self.template.render(arguments))
        return validate_key(f"{self.name}:{self.args_digest(arguments)}")

    def tags(self, arguments: dict[str, Any]) -> tuple[str, ...]:
        """The call's tags, templates filled."""
        return tuple(t.render(arguments) for t in self.tag_templates)

    def args_digest(self, arguments: dict[str, Any]) -> str:
        """Stable digest of the arguments, skipping ``self``/``cls``."""
        items = list(arguments.items())
        if self.skip_first and items:
            items = items[1:]
        if self.var_keyword is not None:
            # f(a=1, b=2) and f(b=2, a=1) are the same call
            items = [(n, sorted(v.items()) if n == self.var_keyword else v) for n, v in items]
        try:
            packed = _serializer.dumps(items)
        except SerializationError as exc:
            names = ", ".join(name for name, _ in items)
            raise CacheKeyError(
                f"cannot build a cache key for {self.name} from its arguments ({names}): {exc}. "
                "Pass key='...{arg}...' or a key callable."
            ) from exc
        return digest(packed)
