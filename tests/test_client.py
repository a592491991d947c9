"""``stratacache.Cache``: the engine's cache plus its front doors, attached by nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import blinker
import pytest

import stratacache as sc
from stratacache import client, config
from stratacache.engine.cache import Cache as CacheEngine
from stratacache.warming import WarmSummary

ROOT = Path(__file__).resolve().parent.parent
FRONT_DOORS = ("cached", "warm", "invalidate_on", "from_url", "from_env", "from_dict")


def test_the_engine_class_has_no_front_door_attributes() -> None:
    """Importing every front door (``import stratacache``) adds nothing to the engine's class."""
    for name in FRONT_DOORS:
        assert not hasattr(CacheEngine, name), name
    assert not [name for name in dir(CacheEngine) if name.endswith("_factory")]


def test_importing_the_engine_module_first_gives_the_bare_class() -> None:
    """A fresh process that imports ``stratacache.engine.cache`` sees no front-door attribute."""
    code = (
        "import stratacache.engine.cache as m\n"
        f"names = {FRONT_DOORS!r}\n"
        "found = [n for n in names if hasattr(m.Cache, n)]\n"
        "found += [n for n in dir(m.Cache) if n.endswith('_factory')]\n"
        "print(found)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]"


def test_the_public_class_is_the_engine_plus_front_doors() -> None:
    """``sc.Cache`` is ``client.Cache``, a subclass of the engine's, with every front door."""
    assert sc.Cache is client.Cache
    assert issubclass(sc.Cache, CacheEngine)
    for name in FRONT_DOORS:
        assert name in vars(sc.Cache), name


def test_builders_return_the_class_they_are_called_on() -> None:
    """``from_url``/``from_env``/``from_dict`` build ``cls`` (the public class, or a subclass)."""

    class Mine(sc.Cache):
        pass

    assert type(sc.Cache.from_url("memory://")) is sc.Cache
    assert type(Mine.from_url("memory://")) is Mine
    assert type(Mine.from_env({"STRATACACHE_URL": "memory://"})) is Mine
    assert type(Mine.from_dict({"tiers": "memory://"})) is Mine
    assert type(config.build_from_url(CacheEngine, "memory://")) is CacheEngine


def test_the_moved_config_functions_say_where_they_went() -> None:
    """``stratacache.config.from_url`` (gone) names ``Cache.from_url`` in its error."""
    with pytest.raises(AttributeError, match=r"stratacache\.Cache\.from_url"):
        config.from_url  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        config.nope  # noqa: B018


async def test_front_doors_work_through_the_methods_and_on_the_engine_class() -> None:
    """``cache.cached``/``warm``/``invalidate_on`` run; ``sc.cached`` takes an engine cache too."""
    cache = sc.Cache([sc.MemoryTier()], namespace="client")
    engine = CacheEngine([sc.MemoryTier()], namespace="engine")
    calls: list[int] = []

    @cache.cached(ttl=60, key="sq:{x}", warm=[1, 2])
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    @sc.cached(engine, ttl=60)
    def double(x: int) -> int:
        calls.append(-x)
        return 2 * x

    async with cache, engine:
        summary = await cache.warm()
        assert isinstance(summary, WarmSummary)
        assert summary.warmed == 2
        assert square(2) == 4
        assert calls == [1, 2]
        changed = blinker.Namespace().signal("changed")
        cache.invalidate_on(changed, keys="sq:{x}")
        await sc.events.send(changed, x=2)
        assert square(2) == 4
        assert calls == [1, 2, 2]
        assert double(3) == double(3) == 6
        assert calls == [1, 2, 2, -3]


def test_import_linter_contracts_pass() -> None:
    """The layers (``stratacache.client`` among the front doors) and engine contracts hold."""
    lint = Path(sys.executable).parent / "lint-imports"
    if not lint.exists():
        pytest.skip("import-linter is not installed")
    done = subprocess.run(
        [str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "broken" not in done.stdout.split("Contracts:")[-1].replace("0 broken", "")
