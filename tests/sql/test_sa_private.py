"""The SQLAlchemy internals the Core fast path uses: present, of the expected shape, on a tested version."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import stratacache as sc
from stratacache.core.errors import ConfigError
from stratacache.sql import QueryCache, sa_private


def test_the_installed_sqlalchemy_is_a_tested_version_with_the_expected_internals() -> None:
    """Fails loudly on a SQLAlchemy release this module was not checked against."""
    major_minor = tuple(int(part) for part in sa.__version__.split(".")[:2])
    assert major_minor in sa_private.TESTED, (
        f"SQLAlchemy {sa.__version__}: re-check stratacache.sql.sa_private against it, "
        "then add it to TESTED"
    )
    sa_private.check()


def test_a_missing_internal_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Attaching to a SQLAlchemy without the internals raises before installing anything."""
    monkeypatch.delattr(sa.engine.Connection, "_autobegin")
    with pytest.raises(ConfigError, match="_autobegin"):
        sa_private.check()
    engine = sa.create_engine("sqlite://")
    cache = sc.Cache([sc.MemoryTier()], namespace="qcp")
    with pytest.raises(ConfigError, match="does not support SQLAlchemy"):
        QueryCache(cache, engine)
    assert engine._connection_cls is sa.engine.Connection
    cache.sync.close()


def test_an_engine_whose_connection_class_is_replaced_elsewhere_is_left_alone() -> None:
    """Another library's Connection subclass stays; reads still use the cache (ordinary path)."""

    class Theirs(sa.engine.Connection):
        pass

    engine = sa.create_engine("sqlite://")
    engine._connection_cls = Theirs
    cache = sc.Cache([sc.MemoryTier()], namespace="qcp")
    qc = QueryCache(cache, engine)
    assert engine._connection_cls is Theirs
    stmt = sa.select(sa.literal(1).label("one")).execution_options(stratacache=True)
    with engine.connect() as conn:
        assert conn.execute(stmt).scalar() == 1
    qc.detach()
    assert engine._connection_cls is Theirs
    cache.sync.close()
