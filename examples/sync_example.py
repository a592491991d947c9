"""stratacache from synchronous code: a decorated function and the ``cache.sync`` client.

python examples/sync_example.py                                      # memory + SQLite
REDIS_URL=redis://127.0.0.1:6379/0 python examples/sync_example.py   # memory + Redis + SQLite
"""

from __future__ import annotations

import os
import tempfile
import time

import stratacache as sc


def build_cache(sqlite_path: str) -> sc.Cache:
    """L1 in memory (short TTL), Redis when REDIS_URL is set, then SQLite."""
    tiers: list[sc.Tier] = [sc.MemoryTier(maxsize=1_000, ttl=30)]
    if os.environ.get("REDIS_URL"):
        tiers.append(sc.RedisTier(url=os.environ["REDIS_URL"]))
    tiers.append(sc.SQLTier(url=f"sqlite:///{sqlite_path}"))
    return sc.Cache(tiers=tiers, namespace=f"example-sync-{os.getpid()}", default_ttl=300)


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        cache = build_cache(os.path.join(workdir, "cache.db"))
        calls: list[int] = []

        @cache.cached(ttl=60, key="user:{user_id}", tags=["user:{user_id}"])
        def get_user(user_id: int) -> dict[str, object]:
            """Pretend this is a slow database query."""
            calls.append(user_id)
            time.sleep(0.01)
            return {"id": user_id, "name": f"user {user_id}"}

        client = cache.sync
        try:
            assert get_user(1) == {"id": 1, "name": "user 1"}  # miss: runs the function
            assert get_user(1) == {"id": 1, "name": "user 1"}  # hit: served from memory
            assert calls == [1]

            client.invalidate(tags=["user:1"])  # e.g. after the user was updated
            get_user(1)
            assert calls == [1, 1]

            client.set("greeting", "hello", ttl=60)
            assert client.get("greeting") == "hello"
            assert client.get_many(["greeting", "absent"]) == {"greeting": "hello"}
            assert client.get_or_set("answer", lambda: 42, ttl=60) == 42

            for name, tier in cache.stats()["tiers"].items():
                print(f"{name:<8} hits={tier['hits']} misses={tier['misses']}")
            client.clear()
        finally:
            client.close()
    print("sync example: ok")


if __name__ == "__main__":
    main()
