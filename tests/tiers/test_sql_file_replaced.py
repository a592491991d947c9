"""A SQLite file deleted or replaced under running processes: they follow the path.

A process keeps the file it opened even once deleted; a process started later creates a
new one at the same path. The old processes must notice (one ``stat`` per bus poll, or
every few reads without a bus), reopen on the path and drop their local tiers, so the
new process's writes reach them instead of their serving old values for as long as they run.
"""

from __future__ import annotations

import glob
import os
import uuid
from pathlib import Path
from typing import Any

from tests.tiers.test_sql_bus import Other

import stratacache as sc
from stratacache.tiers.sql._common import Row


def _delete(url: str) -> None:
    """Remove the database file and its WAL companions, as an operator's ``rm`` would."""
    for name in glob.glob(url.split("///", 1)[1] + "*"):
        os.remove(name)


def test_processes_follow_a_deleted_file_to_the_new_one(sqlite_url: str, wait_until: Any) -> None:
    """After the file is deleted, a new process's write reaches an old process's memory tier
    and the old cache in this process (within a few polls), instead of the deleted file's value."""
    namespace = f"rm{uuid.uuid4().hex[:8]}"

    def make() -> Any:
        return sc.Cache(tiers=[sc.MemoryTier(), sc.SQLTier(sqlite_url)], namespace=namespace)

    old = make()
    old.sync.set("k", "v1")
    other = Other(sqlite_url, namespace)
    new: Any = None
    try:
        assert other.get("k") == "v1"  # now in the other process's memory tier
        _delete(sqlite_url)
        new = make()  # started after the deletion: a fresh file
        new.sync.set("k", "v3")
        wait_until(lambda: other.get("k") == "v3", what="the other process on the new file")
        wait_until(lambda: old.sync.get("k") == "v3", what="the old cache on the new file")
        assert old.bus.reopens >= 1
        old.sync.set("k", "v4")  # and the old cache now writes where the others read
        wait_until(lambda: other.get("k") == "v4", what="the old cache's write")
        wait_until(lambda: new.sync.get("k") == "v4", what="the new cache hearing it on the bus")
    finally:
        other.close()
        old.sync.close()
        if new is not None:
            new.sync.close()


def test_a_sql_tier_without_a_bus_follows_on_its_own(sqlite_url: str, wait_until: Any) -> None:
    """A SQL tier alone (no local tier, no bus) looks at the path every few reads."""
    old = sc.Cache(tiers=[sc.SQLTier(sqlite_url)], namespace="solo", bus=False)
    old.sync.set("k", "v1")
    assert old.bus is None
    _delete(sqlite_url)
    new = sc.Cache(tiers=[sc.SQLTier(sqlite_url)], namespace="solo", bus=False)
    try:
        new.sync.set("k", "v3")
        wait_until(lambda: old.sync.get("k") == "v3", what="the tier on the new file")
    finally:
        old.sync.close()
        new.sync.close()


def test_a_lease_taken_on_the_replaced_file_is_refused(tmp_path: Path) -> None:
    """A load that began on the old file must not store its value in the new one: sequence
    numbers of two files are not comparable."""
    from stratacache.tiers.sql._sqlite import SQLiteStore

    path = str(tmp_path / "lease.db")
    store = SQLiteStore(path, "entries")
    store.setup("ns")
    lease = store.counter()
    os.remove(path)  # still open here, as in a running process
    fresh = SQLiteStore(path, "entries")  # another process's new file
    fresh.setup("ns")
    row = Row("k", b"v", None, ())
    assert store.follow_file()
    assert not store.put([row], 0.0, lease)
    assert store.put([row], 0.0, store.counter())
    assert fresh.raw_value("k") == b"v"
    store.close()
    fresh.close()


def test_a_relative_path_names_one_file_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Connections opened later (another thread, a reopen) reach the file the URL named when
    the tier was built, even after the process changed its working directory."""
    import threading

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    cache = sc.Cache(tiers=[sc.SQLTier("sqlite:///rel.db")], namespace="rel", bus=False)
    try:
        cache.sync.set("k", "v1")
        monkeypatch.chdir(tmp_path / "b")
        seen: list[Any] = []
        reader = threading.Thread(target=lambda: seen.append(cache.sync.get("k")))
        reader.start()
        reader.join(30)
        assert seen == ["v1"]
        assert not (tmp_path / "b" / "rel.db").exists()
    finally:
        cache.sync.close()
