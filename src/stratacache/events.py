"""Event-driven invalidation: blinker signals → invalidations, tag cascades, and the audit trail.

Three front-door tools over the engine's public API:

- ``invalidate_on(cache, signal, keys=..., tags=..., prefix=...)`` (also
  ``cache.invalidate_on(signal, ...)``) wires an application's own blinker
  signal to an invalidation. Each of ``keys``/``tags``/``prefix`` is a template
  (or list of templates) filled from the signal's payload and ``sender``, or a
  callable ``(sender, **payload) -> str | Iterable[str] | None``.
- ``tag_rules(cache).implies("org:{org_id}", ["org-users:{org_id}"])``: a tag
  implies others; invalidating it invalidates them too. Rules that could loop
  are refused when added; generated tags are capped at run time.
- ``audit(cache, JSONLinesAuditLog("audit.jsonl"))``: every invalidation, with
  its time, origin, actor and reason, as one JSON object per line.

In async code, ``await events.send(signal, sender, **payload)`` sends a signal
and waits for the invalidations it triggers; a plain ``signal.send`` inside a
running loop schedules them and returns the tasks in blinker's result list.
Outside a loop the invalidation runs synchronously through ``cache.sync``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import string
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any

from blinker import ANY

from .core.errors import ConfigError
from .core.fleet import Invalidation
from .engine.cache import Cache

#: what ``invalidate_on`` accepts for keys/tags/prefix
Spec = str | Sequence[str] | Callable[..., Any] | None
#: what a rule may imply: templates, or a callable of the pattern's fields returning tags
Implied = str | Callable[..., Iterable[str]]


# -- signal → invalidation ---------------------------------------------------------------------
class InvalidationRule:
    """The blinker receiver ``invalidate_on`` connects; ``disconnect()`` removes it."""

    def __init__(
        self,
        cache: Cache,
        signal: Any,
        keys: Spec,
        tags: Spec,
        prefix: Spec,
        reason: str | None,
        actor: str | None,
        sender: Any,
    ) -> None:
        if keys is None and tags is None and prefix is None:
            raise ConfigError("invalidate_on needs keys=, tags= or prefix=")
        self.cache = cache
        self.signal = signal
        self.specs = (keys, tags, prefix)
        self.reason = reason or f"signal:{getattr(signal, 'name', None) or 'anonymous'}"
        self.actor = actor
        self.sender = sender
        signal.connect(self, sender=sender, weak=False)

    def disconnect(self) -> None:
        """Stop reacting to the signal."""
        self.signal.disconnect(self, sender=self.sender)

    def targets(self, sender: Any, payload: dict[str, Any]) -> tuple[list[str], ...]:
        """The keys, tags and prefixes a signal with this payload names."""
        return tuple(_resolve(spec, sender, payload) for spec in self.specs)

    def __call__(self, sender: Any, **payload: Any) -> Any:
        keys, tags, prefixes = self.targets(sender, payload)
        if not (keys or tags or prefixes):
            return None
        cache = self.cache
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread: invalidate synchronously
            cache.sync.invalidate(keys, tags, prefixes, reason=self.reason, actor=self.actor)
            return None
        coro = cache.invalidate(keys, tags, prefixes, reason=self.reason, actor=self.actor)
        return cache.spawn(coro)


def invalidate_on(
    cache: Cache,
    signal: Any,
    *,
    keys: Spec = None,
    tags: Spec = None,
    prefix: Spec = None,
    reason: str | None = None,
    actor: str | None = None,
    sender: Any = ANY,
) -> InvalidationRule:
    """Invalidate ``keys``/``tags``/``prefix`` of ``cache`` whenever ``signal`` is sent.

    Args:
        cache: the cache to invalidate.
        signal: a blinker signal of the application (e.g. ``user_updated``).
        keys / tags / prefix: a template such as ``"user:{id}"`` (filled from the payload;
            ``{sender}`` is the sender), a list of them, or a callable
            ``(sender, **payload)`` returning a string, strings, or None.
        reason: recorded with each invalidation (default ``"signal:<name>"``).
        actor: recorded with each invalidation.
        sender: react only to this sender (default: any).

    Returns:
        The connected rule; ``rule.disconnect()`` undoes it.
    """
    return InvalidationRule(cache, signal, keys, tags, prefix, reason, actor, sender)


async def send(signal: Any, sender: Any = None, **payload: Any) -> list[tuple[Any, Any]]:
    """Send ``signal`` and wait for every invalidation (or other awaitable) it triggered."""
    results: list[tuple[Any, Any]] = signal.send(sender, **payload)
    for _receiver, result in results:
        if inspect.isawaitable(result):
            await result
    return results


def _resolve(spec: Spec, sender: Any, payload: dict[str, Any]) -> list[str]:
    if spec is None:
        return []
    if callable(spec):
        produced = spec(sender, **payload)
        if produced is None:
            return []
        return [produced] if isinstance(produced, str) else [str(p) for p in produced]
    templates = [spec] if isinstance(spec, str) else list(spec)
    fields = {"sender": sender, **payload}
    try:
        return [t.format(**fields) for t in templates]
    except (KeyError, AttributeError, IndexError) as exc:
        raise ConfigError(
            f"invalidation template needs {exc} but the signal sent {sorted(fields)}"
        ) from exc


# -- tag cascades ------------------------------------------------------------------------------
class _Rule:
    """``pattern`` → implied tags, with the pattern compiled to a regex."""

    def __init__(self, pattern: str, implied: Sequence[Implied]) -> None:
        self.pattern = pattern
        self.regex, self.fields = _compile(pattern)
        self.implied = list(implied)
        for item in self.implied:
            if isinstance(item, str):
                unknown = _fields(item) - self.fields
                if unknown:
                    raise ConfigError(f"{item!r} uses {sorted(unknown)} not in {pattern!r}")
            elif not callable(item):
                raise ConfigError(f"implied tags are templates or callables, not {item!r}")

    def apply(self, tag: str) -> list[str]:
        match = self.regex.fullmatch(tag)
        if match is None:
            return []
        values = match.groupdict()
        out: list[str] = []
        for item in self.implied:
            if isinstance(item, str):
                out.append(item.format(**values))
            else:
                produced = item(**values)
                out.extend([produced] if isinstance(produced, str) else produced)
        return out


class TagRules:
    """Cascade rules: a tag implies other tags (``org:1`` → ``org-users:1``), without loops.

    Install on a cache with ``tag_rules(cache)``; ``cache.invalidate(tags=...)`` then
    invalidates every implied tag too, transitively. ``max_tags`` caps one expansion
    (a callable rule that keeps generating new tags raises ``ConfigError``).
    """

    def __init__(self, max_tags: int = 10_000) -> None:
        self.max_tags = max_tags
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()

    def implies(self, pattern: str, implied: Implied | Sequence[Implied]) -> TagRules:
        """Invalidating a tag matching ``pattern`` also invalidates ``implied``; returns self.

        ``pattern`` is a template such as ``"org:{org_id}"``; ``implied`` holds templates
        over its fields, or callables taking the fields as keyword arguments and returning
        tags. A rule that would close a loop between string templates is refused.
        """
        items: list[Implied] = (
            [implied] if isinstance(implied, str) or callable(implied) else list(implied)
        )
        rule = _Rule(pattern, items)
        with self._lock:
            cycle = _find_cycle([*self._rules, rule])
            if cycle:
                raise ConfigError("tag rules would loop: " + " → ".join(cycle))
            self._rules.append(rule)
        return self

    def expand(self, tags: Sequence[str]) -> tuple[str, ...]:
        """``tags`` followed by every tag they imply, transitively, each once."""
        seen = dict.fromkeys(tags)
        queue = list(seen)
        rules = self._rules
        while queue:
            tag = queue.pop()
            for rule in rules:
                for implied in rule.apply(tag):
                    if implied not in seen:
                        seen[implied] = None
                        queue.append(implied)
            if len(seen) > self.max_tags:
                raise ConfigError(
                    f"tag rules expanded {list(tags)[:3]} to over {self.max_tags} tags; "
                    "a callable rule probably loops"
                )
        return tuple(seen)

    __call__ = expand


def tag_rules(cache: Cache) -> TagRules:
    """The cascade rules of ``cache`` (installed on first use)."""
    current = cache.tag_rules
    if isinstance(current, TagRules):
        return current
    if current is not None:
        raise ConfigError("this cache already has a tag expander that is not TagRules")
    rules = TagRules()
    cache.tag_rules = rules
    return rules


def _fields(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ConfigError(f"invalid tag template {template!r}: {exc}") from exc


def _compile(pattern: str) -> tuple[re.Pattern[str], set[str]]:
    """A regex matching the tags ``pattern`` describes; a repeated field must repeat its value."""
    parts: list[str] = []
    seen: set[str] = set()
    for literal, name, spec, conversion in string.Formatter().parse(pattern):
        parts.append(re.escape(literal))
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ConfigError(f"tag pattern fields are plain names like {{org_id}}: {pattern!r}")
        parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.+?)")
        seen.add(name)
    return re.compile("".join(parts)), seen


def _find_cycle(rules: list[_Rule]) -> list[str]:
    """A loop among template rules (rule A implies a tag matching rule B …), as patterns."""
    edges: dict[int, list[int]] = {}
    for a, rule in enumerate(rules):
        probes = [
            t.format(**{f: f"\x00{f}\x00" for f in rule.fields})
            for t in rule.implied
            if isinstance(t, str)
        ]
        edges[a] = [
            b for b, other in enumerate(rules) if any(other.regex.fullmatch(p) for p in probes)
        ]
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    path: list[int] = []

    def visit(node: int) -> list[int]:
        state[node] = 1
        path.append(node)
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for start in range(len(rules)):
        if start not in state and (loop := visit(start)):
            return [rules[i].pattern for i in loop]
    return []


# -- audit trail -------------------------------------------------------------------------------
def audit_record(message: Invalidation) -> dict[str, Any]:
    """The JSON-ready audit record of one invalidation."""
    return {
        "time": message.at,
        "origin": message.origin,
        "actor": message.actor,
        "reason": message.reason,
        "keys": list(message.keys),
        "tags": list(message.tags),
        "prefixes": list(message.prefixes),
        "clear": message.clear,
        "generation": message.generation,
    }


class JSONLinesAuditLog:
    """Append-only audit log: one JSON object per invalidation per line.

    Args:
        path: the file, opened in append mode (created if missing).
        fsync: flush to disk on every record (durable, at the cost of a disk sync each).
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = os.fspath(path)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._file: IO[str] | None = None

    def __call__(self, message: Invalidation) -> None:
        line = json.dumps(audit_record(message), separators=(",", ":"), default=str) + "\n"
        with self._lock:
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            self._file.write(line)
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file (it is reopened on the next record)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def audit(
    cache: Cache, hook: Callable[[Invalidation], None], *, remote: bool = False
) -> Callable[[Invalidation], None]:
    """Send ``cache``'s invalidations to ``hook``; ``remote=True`` adds other processes' ones.

    Returns the installed callable (remove it from ``cache.audit_hooks`` to stop).
    """

    def filtered(message: Invalidation) -> None:
        if remote or message.origin == cache.origin:
            hook(message)

    installed = hook if remote else filtered
    cache.audit_hooks.append(installed)
    return installed


__all__ = [
    "InvalidationRule",
    "JSONLinesAuditLog",
    "TagRules",
    "audit",
    "audit_record",
    "invalidate_on",
    "send",
    "tag_rules",
]
