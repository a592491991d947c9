"""The public surface: ``stratacache.__all__``, the documented contract, import hygiene."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import stratacache as sc

ROOT = Path(__file__).resolve().parents[1]

#: the names DESIGN.md's public API contract and the quickstart rely on
CONTRACT = {
    "Cache",
    "MemoryTier",
    "RedisTier",
    "SQLTier",
    "Tier",
    "SyncTier",
    "TierContext",
    "SyncCache",
    "cached",
    "MISS",
    "StratacacheError",
    "ConfigError",
    "CacheKeyError",
    "SerializationError",
    "DeserializationError",
    "TierError",
    "MissingKeyError",
    "WrongTypeError",
    "Invalidation",
    "InvalidationBus",
    "ManualClock",
    "signals",
}


def run_isolated(code: str) -> str:
    """Run ``code`` in a fresh interpreter with only ``src`` on the path; return stdout."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""},
        timeout=60,
        check=True,
    )
    return proc.stdout


def test_all_holds_the_contract() -> None:
    """Every name the contract promises is exported in ``__all__``."""
    assert set(sc.__all__) >= CONTRACT


def test_all_names_resolve() -> None:
    """Each name in ``__all__`` is importable (lazy ones included) and listed once."""
    assert len(sc.__all__) == len(set(sc.__all__))
    for name in sc.__all__:
        assert getattr(sc, name) is not None, name


#: packages users import from besides ``stratacache`` itself (``demo`` is a runnable showcase)
FRONT_DOORS = ("middleware", "sql", "admin", "metrics")


def test_every_public_name_is_in_the_api_reference() -> None:
    """docs/api.md renders every name of ``__all__``, so the reference is complete."""
    api = (ROOT / "docs" / "api.md").read_text()
    missing = [name for name in sc.__all__ if f"stratacache.{name}" not in api]
    assert not missing, f"add to docs/api.md: {missing}"


@pytest.mark.parametrize("package", FRONT_DOORS)
def test_every_front_door_name_is_in_the_api_reference(package: str) -> None:
    """docs/api.md names every export of the front-door packages as ``stratacache.pkg.name``."""
    api = (ROOT / "docs" / "api.md").read_text()
    names = importlib.import_module(f"stratacache.{package}").__all__
    missing = [name for name in names if f"stratacache.{package}.{name}" not in api]
    assert not missing, f"add to docs/api.md: {missing}"


def _members(api: str, target: str) -> list[str]:
    """The ``members:`` list of the ``::: target`` block of docs/api.md."""
    block = api.split(f"::: {target}\n", 1)[1].split("\n\n", 1)[0]
    listed = block.split("members:", 1)[1].split("]", 1)[0]
    return [name.strip(" []\n") for name in listed.split(",")]


def test_the_reference_lists_no_internals_of_the_clients() -> None:
    """``Cache`` and ``SyncCache`` show their public operations only (members listed)."""
    api = (ROOT / "docs" / "api.md").read_text()
    internal = {"fetch", "load", "detach", "leases", "resolve_lock", "refresh_in_background",
                "full_key", "relative_key", "entry_policy", "settle_write", "register_function",
                "invalidation", "after_fork"}  # fmt: skip
    for target, cls in (
        ("stratacache.client.Cache", sc.Cache),
        ("stratacache.engine.sync.SyncCache", sc.SyncCache),
    ):
        members = _members(api, target)
        assert not internal & set(members)
        assert all(hasattr(cls, name) for name in members)


def test_contract_example_shapes() -> None:
    """The forms of DESIGN.md's example construct without I/O."""
    cache = sc.Cache(
        tiers=[sc.MemoryTier(maxsize=10_000, ttl=30), sc.RedisTier(url="redis://127.0.0.1:6379/0")],
        namespace="shop",
        default_ttl=300,
    )

    @cache.cached(ttl=60, key="user:{user_id}", tags=["user:{user_id}"])
    async def get_user(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    @cache.cached(ttl=60)
    def report(day: str) -> list[str]:
        return [day]

    assert callable(get_user.invalidate) and callable(report.invalidate)
    assert isinstance(cache.stats(), dict)


def test_import_is_light() -> None:
    """``import stratacache`` loads neither SQLAlchemy, Starlette nor click."""
    heavy = run_isolated(
        "import sys, json, stratacache\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules}"
        " & {'sqlalchemy', 'starlette', 'click', 'fastapi', 'flask', 'uvicorn'})))"
    )
    assert json.loads(heavy) == []


def test_import_does_no_io() -> None:
    """Importing opens no socket, starts no process or thread and writes no file."""
    code = """
import json, sys, threading
events = []
WATCH = {"socket.connect", "socket.bind", "socket.getaddrinfo", "subprocess.Popen",
         "os.system", "os.fork", "sqlite3.connect", "_thread.start_new_thread"}
def hook(event, args):
    if event in WATCH:
        events.append(event)
    elif event == "open" and len(args) > 1 and isinstance(args[1], str) and set(args[1]) & set("wax+"):
        events.append(f"open {args[0]} {args[1]}")
sys.addaudithook(hook)
before = threading.active_count()
import stratacache
print(json.dumps({"events": events, "threads": threading.active_count() - before}))
"""
    result = json.loads(run_isolated(code))
    assert result == {"events": [], "threads": 0}


def _private_imports(path: Path) -> list[str]:
    """``from .x import _name`` in ``path`` where ``_name`` is not a module of the package."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        base = path.parent
        for _ in range(node.level - 1):
            base = base.parent
        source = base.joinpath(*node.module.split(".")) if node.module else base
        for alias in node.names:
            name = alias.name
            private = name.startswith("_") and not name.startswith("__")
            if private and not (source / f"{name}.py").exists() and not (source / name).is_dir():
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    """What modules share is named publicly (a private name is its module's own business)."""
    package = ROOT / "src" / "stratacache"
    found = [hit for path in sorted(package.rglob("*.py")) for hit in _private_imports(path)]
    assert found == []
