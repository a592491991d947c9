"""A second OS process: writes through its own QueryCache, then exits.

Usage: python writer_process.py DB_URL REDIS_URL (memory|redis)
"""

from __future__ import annotations

import sys

import sqlalchemy as sa

import stratacache as sc
from stratacache.sql import QueryCache


def main(db_url: str, redis_url: str, tiers: str) -> None:
    """Rename product 3 to "yoyo" in one committed transaction."""
    levels: list[sc.Tier] = [sc.MemoryTier()]
    if tiers == "redis":
        levels.append(sc.RedisTier(url=redis_url))
    cache = sc.Cache(levels, namespace="qcproc", bus=sc.RedisBus(redis_url))
    engine = sa.create_engine(db_url)
    QueryCache(cache, engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE products SET name = 'yoyo' WHERE id = 3"))
    engine.dispose()
    cache.sync.close()
    print("written", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
