"""The decorator's hit path, written once and compiled in the decorated function's shape.

Why: a ``def wrapper(*args, **kwargs)`` pays for packing a tuple and a dict on
every call, about a tenth of a memo hit. When every parameter of the function
is positional (no ``*args``, ``**kwargs`` or keyword-only parameter), the
wrapper is generated with the same parameter list instead, so Python binds the
call (keywords and defaults included) before the wrapper's body runs, and the
memo key is the tuple of bound values: ``f(1)``, ``f(x=1)`` and ``f(1, 2)``
with ``y=2`` by default are one call, as they are one cache key
(``CallKeyBuilder.bind`` applies defaults). With exactly one parameter the
memo key is the bare argument (``CallMemo(single=True)``): no tuple per hit.
Any other function gets the generic
``(*args, **kwargs)`` shape, whose memo key is ``core.memo.call_key``'s.

The hit path is the text below, for both shapes, sync and async; only the
parameter list and the key expression vary. Nothing from the caller is put in
the source: parameter names are checked identifiers, defaults are passed in as
objects.
"""

from __future__ import annotations

import inspect
import keyword
from collections.abc import Callable
from typing import Any

from .memo import KW

#: every name the generated code uses starts with this; a parameter may not
_PREFIX = "_sc_"
#: the builtins the generated code names; a parameter must not shadow them
_BUILTINS = frozenset({"KeyError", "ReferenceError", "TypeError"})

_SOURCE = """
def _sc_make(_sc_lookup, _sc_now, _sc_fstats, _sc_touch, _sc_slow, _sc_defaults, _sc_KW):
    {unpack_defaults}
    {async_}def _sc_wrapper({params}):
        _sc_ck = {key}
        try:
            _sc_found = _sc_lookup(_sc_ck)
        except (TypeError, ReferenceError):  # unhashable, or a weakly held argument died
            _sc_found = None
            _sc_ck = None
        if _sc_found is not None:
            _sc_entry = _sc_found[0]
            if _sc_entry.deadline > _sc_now():
                _sc_fstats.fast_hits += 1
                try:
                    _sc_touch(_sc_found[1])
                except KeyError:  # evicted by another thread since the deadline check
                    pass
                return _sc_entry.value
        return {await_}_sc_slow(_sc_ck, {args}, {kwargs})
    return _sc_wrapper
"""

#: the generic shape: any call, keyed inline as ``core.memo.call_key`` keys it
_GENERIC = {
    "params": "*_sc_args, **_sc_kwargs",
    "key": "_sc_args if not _sc_kwargs else (*_sc_args, _sc_KW, *_sc_kwargs, *_sc_kwargs.values())",
    "args": "_sc_args",
    "kwargs": "_sc_kwargs",
    "unpack_defaults": "pass",
}


def positional_parameters(fn: Callable[..., Any]) -> list[inspect.Parameter] | None:
    """``fn``'s parameters if a wrapper can copy them, else None: all positional, plain
    names, hashable defaults (an unhashable default would make every call unmemoizable)."""
    if not isinstance(getattr(fn, "__name__", None), str):
        return None
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    parameters = list(signature.parameters.values())
    for p in parameters:
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            return None
        name = p.name
        if not name.isidentifier() or keyword.iskeyword(name) or name.startswith(_PREFIX):
            return None
        if name in _BUILTINS:
            return None
        if p.default is not p.empty:
            try:
                hash(p.default)
            except TypeError:
                return None
    return parameters


def single_parameter(fn: Callable[..., Any]) -> bool:
    """Is ``fn`` compiled with one positional parameter (its memo keyed by the bare argument)?"""
    parameters = positional_parameters(fn)
    return parameters is not None and len(parameters) == 1


def compile_hit_path(
    fn: Callable[..., Any],
    *,
    lookup: Callable[[Any], Any],
    now: Callable[[], float],
    fstats: Any,
    touch: Callable[[Any], Any] | None,
    slow: Callable[..., Any],
    is_async: bool,
) -> tuple[Callable[..., Any], bool]:
    """A wrapper running the memo hit path, and whether it has ``fn``'s own parameters.

    A hit returns the memoized entry's value while its deadline is ahead of ``now()``,
    adding one to ``fstats.fast_hits`` and calling ``touch(full key)``. Otherwise
    ``slow(ck, args, kwargs)`` runs, with the memo key (None when the arguments are
    unhashable) and the call's arguments: in ``fn``'s own shape (second result True)
    the memo key is the tuple of bound values, which are all passed positionally;
    in the generic shape, the call as given.
    """
    parameters = positional_parameters(fn)
    shape = _GENERIC if parameters is None else _positional_shape(parameters)
    if len(parameters or ()) == 1:  # keyed by the bare argument, as single_parameter() says
        shape["key"] = parameters[0].name  # type: ignore[index]
    source = _SOURCE.format(
        async_="async " if is_async else "", await_="await " if is_async else "", **shape
    )
    namespace: dict[str, Any] = {}
    label = getattr(fn, "__qualname__", type(fn).__qualname__)
    exec(compile(source, f"<stratacache hit path of {label}>", "exec"), namespace)
    defaults = tuple(p.default for p in parameters or () if p.default is not p.empty)
    wrapper: Callable[..., Any] = namespace["_sc_make"](
        lookup, now, fstats, touch if touch is not None else _ignore, slow, defaults, KW
    )
    name = getattr(fn, "__name__", None)
    if isinstance(name, str):  # a bad call's TypeError names the function, not the wrapper
        qualname = getattr(fn, "__qualname__", name)
        names: dict[str, str] = {"co_name": name}
        if hasattr(wrapper.__code__, "co_qualname"):  # Python 3.11+
            names["co_qualname"] = qualname
        wrapper.__code__ = wrapper.__code__.replace(**names)  # type: ignore[arg-type]
        wrapper.__name__, wrapper.__qualname__ = name, qualname
    return wrapper, parameters is not None


def _positional_shape(parameters: list[inspect.Parameter]) -> dict[str, str]:
    """Parameter list, key tuple and slow-path arguments of a wrapper shaped like ``fn``."""
    params: list[str] = []
    defaults = 0
    for i, p in enumerate(parameters):
        if p.default is p.empty:
            params.append(p.name)
        else:
            params.append(f"{p.name}={_PREFIX}d{defaults}")
            defaults += 1
        if p.kind is p.POSITIONAL_ONLY and (
            i + 1 == len(parameters) or parameters[i + 1].kind is not p.POSITIONAL_ONLY
        ):
            params.append("/")
    names = [p.name for p in parameters]
    key = f"({', '.join(names)},)" if names else "()"
    unpack = ", ".join(f"{_PREFIX}d{i}" for i in range(defaults))
    return {
        "params": ", ".join(params),
        "key": key,
        "args": key,
        "kwargs": "{}",
        "unpack_defaults": f"({unpack},) = _sc_defaults" if defaults else "pass",
    }


def _ignore(_: Any) -> None:
    """The touch of a top tier that records no reads."""
