"""Cache keys: validation, templates filled from a call's arguments, and stable automatic keys.

An automatic key is ``module.qualname:`` plus a BLAKE2b digest of the whole
call: every argument by name (the instance and the class of a method
included) in its canonical encoding (see ``core.canonical``), and whatever
tells apart two functions that share a qualified name (the values their
closures captured). The same call yields the same key in every process and
every Python run; an argument with no stable encoding is a ``CacheKeyError``
at the call, never silently left out. Keys longer than the cache's limit are
shortened by a digest of the whole key.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import string
import types
from collections.abc import Callable, Mapping
from typing import Any

from .canonical import CACHE_KEY_METHOD, UnkeyableError, canonical_bytes, qualified_name
from .errors import CacheKeyError, ConfigError

MAX_KEY_LENGTH = 1024
#: set on decorated functions: the bytes that identify their key space (see ``key_space``)
KEY_SPACE_ATTRIBUTE = "__stratacache_key_space__"
_DIGEST_CHARS = 32
_MAX_WRAPPED = 16


def validate_key(key: object, max_length: int = MAX_KEY_LENGTH) -> str:
    """Return ``key`` if it is a usable key, else raise ``CacheKeyError`` saying why."""
    if not isinstance(key, str):
        raise CacheKeyError(f"cache keys are str, not {type(key).__name__}: {key!r}")
    if not key:
        raise CacheKeyError("cache key must not be empty")
    if len(key) > max_length:
        raise CacheKeyError(f"cache key is {len(key)} characters long; the limit is {max_length}")
    return check_text(key, "a cache key")


def check_text(text: str, what: str) -> str:
    """Return ``text`` if every tier can store it, else raise ``CacheKeyError``.

    Keys, tags and prefixes go to Redis and SQL as UTF-8: a lone surrogate (what
    ``os.fsdecode`` makes of undecodable bytes) cannot be encoded, and PostgreSQL text
    holds no NUL. Refused here, at the call, they never reach a tier as its failure.
    """
    if "\x00" in text:
        raise CacheKeyError(f"{what} must not contain NUL characters: {text!r}")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise CacheKeyError(
                f"{what} must be valid Unicode text (a lone surrogate at {exc.start}): {text!r}"
            ) from None
    return text


def digest(data: bytes) -> str:
    """A short, stable hex digest (BLAKE2b-128)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def shorten(key: str, max_length: int) -> str:
    """``key`` itself if it fits, else its head, ``~`` and a digest of the whole (same length)."""
    if len(key) <= max_length:
        return key
    head = max(0, max_length - _DIGEST_CHARS - 1)
    return f"{key[:head]}~{digest(key.encode('utf-8', 'surrogatepass'))}"[:max_length]


def function_name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a function: the stable prefix of its automatic keys."""
    if isinstance(fn, functools.partial):
        return function_name(fn.func)
    if hasattr(fn, "__qualname__"):
        return qualified_name(fn)
    return qualified_name(type(fn))


def function_identity(fn: Callable[..., Any]) -> tuple[bytes, tuple[object, ...]]:
    """What tells ``fn`` apart from other functions of the same name.

    Returns the canonical bytes of the values its closures (and those of the
    functions it wraps, partial arguments and bound instance) captured, and the
    captured objects that have no stable encoding, which a caller can only
    compare by identity.
    """
    out: list[bytes] = []
    unknown: list[object] = []
    _identity(fn, out, unknown, 0)
    return b"".join(out), tuple(unknown)


def _identity(fn: Any, out: list[bytes], unknown: list[object], depth: int) -> None:
    if depth > _MAX_WRAPPED:
        unknown.append(fn)
        return
    space = getattr(fn, KEY_SPACE_ATTRIBUTE, None)
    if isinstance(space, bytes):  # a cached function: its key space is already unique
        out.append(b"cached:" + space)
        return
    if isinstance(fn, functools.partial):
        _captured(("partial", fn.args, fn.keywords), out, unknown)
        _identity(fn.func, out, unknown, depth + 1)
        return
    if isinstance(fn, types.MethodType):
        _captured(fn.__self__, out, unknown)
        fn = fn.__func__
    if not isinstance(fn, types.FunctionType):
        bound = getattr(fn, "__self__", None)
        if not hasattr(fn, "__qualname__"):  # a callable object: keyed like an argument
            _captured(fn, out, unknown)
        elif bound is not None and not isinstance(bound, types.ModuleType):
            _captured(bound, out, unknown)  # a builtin method such as ``some_dict.get``
        return
    code = fn.__code__
    for name, cell in zip(code.co_freevars, fn.__closure__ or (), strict=False):
        out.append(name.encode() + b"=")
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            out.append(b"<empty>")
            continue
        if isinstance(value, types.FunctionType) and "<" in value.__qualname__:
            # a lambda or nested function: its name is not unique, so its code is keyed too
            out.append(qualified_name(value).encode() + b"(" + _code_bytes(value.__code__))
            _captured((value.__defaults__, value.__kwdefaults__), out, unknown)
            _identity(value, out, unknown, depth + 1)
            out.append(b")")
        else:
            _captured(value, out, unknown)
    wrapped = getattr(fn, "__wrapped__", None)
    if wrapped is not None:
        out.append(b"wraps:" + function_name(wrapped).encode())
        _identity(wrapped, out, unknown, depth + 1)


def _code_bytes(code: types.CodeType) -> bytes:
    """What a function's code does, stable across processes of one Python version."""
    parts = [code.co_code, repr((code.co_names, code.co_varnames, code.co_freevars)).encode()]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            parts.append(_code_bytes(const))
        else:
            try:
                parts.append(canonical_bytes(const, "constant"))
            except UnkeyableError:
                parts.append(repr(const).encode())  # Ellipsis and other singletons
    return digest(b"\x00".join(parts)).encode()


def _captured(value: object, out: list[bytes], unknown: list[object]) -> None:
    try:
        out.append(canonical_bytes(value, "captured value"))
    except UnkeyableError:
        out.append(b"?")
        unknown.append(value)


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


def _positional_layout(
    signature: inspect.Signature,
) -> tuple[tuple[str, ...], tuple[Any, ...], int] | None:
    """``(names, defaults, required count)`` when every parameter can be passed by position
    (no ``*args``, ``**kwargs`` or keyword-only ones): then a call without keywords binds
    in order, no ``Signature.bind`` needed. None otherwise."""
    names: list[str] = []
    defaults: list[Any] = []
    required = 0
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    for param in signature.parameters.values():
        if param.kind not in positional:
            return None
        if param.default is inspect.Parameter.empty:
            if required < len(names):  # after a default: not a valid order, leave it to ``bind``
                return None
            required += 1
        names.append(param.name)
        defaults.append(param.default)
    return tuple(names), tuple(defaults), required


class CallKeyBuilder:
    """Builds keys for calls of one function: from a template, a callable, or automatically.

    Args:
        fn: the decorated function.
        key: a template (``"user:{user_id}"``), a callable taking the function's
            arguments and returning the key, or None for an automatic key.
        tags: tag templates filled from the arguments.
        name: the key space of automatic keys (default: ``module.qualname``).
        ignore: parameter names an automatic key leaves out (e.g. ``("self",)``).
        max_length: longer keys are shortened by a digest (the cache's key limit).

    Raises:
        ConfigError: ``ignore`` names a parameter the function lacks, or comes with ``key``.
        CacheKeyError: a template names an argument the function does not take.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        key: str | Callable[..., str] | None = None,
        tags: tuple[str, ...] = (),
        *,
        name: str | None = None,
        ignore: tuple[str, ...] = (),
        max_length: int = MAX_KEY_LENGTH,
    ) -> None:
        self.signature = inspect.signature(fn)
        params = self.signature.parameters
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError(f"name must be a non-empty string, not {name!r}")
        self.name = name if name is not None else function_name(fn)
        self.max_length = max_length
        self.key_fn: Callable[..., str] | None = None
        self.template: KeyTemplate | None = None
        if callable(key):
            self.key_fn = key
        elif key is not None:
            self.template = KeyTemplate(key)
            self.template.check_against(params)
        if isinstance(ignore, str):
            raise ConfigError(f"ignore must be a tuple of parameter names, not {ignore!r}")
        self.ignore = frozenset(ignore)
        if self.ignore and key is not None:
            raise ConfigError("ignore= applies to automatic keys; a key= names what it uses")
        unknown = self.ignore - set(params)
        if unknown:
            raise ConfigError(
                f"ignore names {sorted(unknown)}, which {self.name} does not take "
                f"(it takes {list(params)})"
            )
        self.identity, self.captured_unknown = function_identity(fn)
        self.tag_templates = tuple(KeyTemplate(t) for t in tags)
        for tag in self.tag_templates:
            tag.check_against(params)
        self._positional = _positional_layout(self.signature)

    @property
    def key_space(self) -> bytes:
        """What identifies the keys this builder makes, for functions that capture it."""
        if self.template is not None:
            return b"template:" + self.template.template.encode("utf-8", "surrogatepass")
        if self.key_fn is not None:
            inner, unknown = function_identity(self.key_fn)
            if not unknown:
                return b"key-callable:" + function_name(self.key_fn).encode() + inner
        return b"auto:" + self.name.encode() + b"|" + self.identity

    @property
    def automatic(self) -> bool:
        """Whether keys are built from the arguments' canonical encoding."""
        return self.key_fn is None and self.template is None

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The call's arguments by name, defaults applied (``CacheKeyError`` if they don't fit)."""
        layout = self._positional
        if layout is not None and not kwargs:  # what ``Signature.bind`` gives, without it
            names, defaults, required = layout
            count = len(args)
            if required <= count <= len(names):
                arguments = dict(zip(names, args, strict=False))  # args may be fewer
                for i in range(count, len(names)):
                    arguments[names[i]] = defaults[i]
                return arguments
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise CacheKeyError(f"arguments do not match {self.name}: {exc}") from exc
        bound.apply_defaults()
        return dict(bound.arguments)

    def key(
        self, arguments: dict[str, Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> str:
        """The cache key of one call (not yet namespaced), shortened to the key limit."""
        if self.key_fn is not None:
            raw = validate_key(self.key_fn(*args, **kwargs), 1 << 62)
        elif self.template is not None:
            raw = validate_key(self.template.render(arguments), 1 << 62)
        else:
            raw = f"{self.name}:{self.args_digest(arguments)}"
        return shorten(raw, self.max_length)

    def tags(self, arguments: dict[str, Any]) -> tuple[str, ...]:
        """The call's tags, templates filled."""
        return tuple(check_text(t.render(arguments), "a tag") for t in self.tag_templates)

    def args_digest(self, arguments: dict[str, Any]) -> str:
        """Stable digest of the whole call: every argument not ignored, by name."""
        parts = [self.identity, b"|"]
        for name, value in arguments.items():
            if name in self.ignore:
                continue
            try:
                encoded = canonical_bytes(value, name)
            except UnkeyableError as exc:
                raise CacheKeyError(self._how_to_key(name, exc)) from None
            except RecursionError:
                raise CacheKeyError(
                    f"cannot build a cache key for {self.name}: argument {name!r} is nested "
                    "too deeply or contains itself"
                ) from None
            parts.append(name.encode() + b"=" + encoded)
        return digest(b"\x00".join(parts))

    def _how_to_key(self, name: str, exc: UnkeyableError) -> str:
        params = [p for p in self.signature.parameters if p not in self.ignore]
        fields = ":".join(f"{{{p}.id}}" if p == name else f"{{{p}}}" for p in params)
        short = self.name.rsplit(".", 1)[-1]
        kind = exc.value_type.__name__
        return (
            f"cannot build an automatic cache key for {self.name}: {exc}; its repr() and id() "
            "differ between processes, so it cannot identify the call. Key it one of these "
            f'ways: a key template naming what identifies it, e.g. key="{short}:{fields}"; '
            f"define {kind}.{CACHE_KEY_METHOD}(self) returning a stable value (str, int, "
            f"tuple, ...); or, if the result does not depend on it, leave it out with "
            f'ignore=("{name}",)'
        )
