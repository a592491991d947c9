"""PostgreSQL connections of ``SQLTier``: a small sync pool and one async pool per event loop.

Why: pooling, the per-loop async connections (a cache used from a second loop never
touches the first loop's sockets), fork safety and the one retry of a read on a
connection the server dropped are one job, apart from the SQL the store sends.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

_IDLE = psycopg.pq.TransactionStatus.IDLE

#: one event loop's idle async connections and its limit on connections in use
_APool = tuple[list["psycopg.AsyncConnection[Any]"], asyncio.Semaphore]


def _finish(idle: list[psycopg.AsyncConnection[Any]]) -> None:
    """End idle connections of another (usually closed) event loop without awaiting."""
    for conn in idle:
        conn.pgconn.finish()


class PostgresPool:
    """Autocommit connections to ``conninfo``, at most ``pool_size`` in use per pool."""

    def __init__(self, conninfo: str, pool_size: int) -> None:
        self.conninfo = conninfo
        self.pool_size = pool_size
        self._idle: list[psycopg.Connection[Any]] = []
        self._out = 0
        self._cond = threading.Condition(threading.Lock())
        #: per event loop; a closed loop's connections are ended when the next loop comes
        self._apools: dict[asyncio.AbstractEventLoop, _APool] = {}

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self.conninfo, autocommit=True, prepare_threshold=0, connect_timeout=2
        )

    def checkout(self) -> psycopg.Connection[Any]:
        """A pooled connection; waits while ``pool_size`` connections are in use."""
        with self._cond:
            while not self._idle and self._out >= self.pool_size:
                self._cond.wait()
            self._out += 1
            if self._idle:
                return self._idle.pop()
        try:
            return self._connect()
        except BaseException:
            self.checkin(None)
            raise

    def checkin(self, conn: psycopg.Connection[Any] | None) -> None:
        """Give ``conn`` back (None: it failed and was dropped); a broken one is closed."""
        if conn is not None and (
            conn.closed or conn.pgconn.transaction_status != _IDLE  # pgconn: no info object
        ):
            conn.close()
            conn = None
        with self._cond:
            self._out -= 1
            if conn is not None:
                self._idle.append(conn)
            self._cond.notify()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection for the length of the block."""
        conn = self.checkout()
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        finally:
            self.checkin(conn)

    def _apool(self) -> tuple[asyncio.AbstractEventLoop, _APool]:
        """The running loop and its pool (made on first use; closed loops' pools are ended)."""
        loop = asyncio.get_running_loop()
        pool = self._apools.get(loop)
        if pool is None:
            for other in [x for x in self._apools if x.is_closed()]:
                _finish(self._apools.pop(other)[0])
            pool = self._apools[loop] = ([], asyncio.Semaphore(self.pool_size))
        return loop, pool

    def close(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    async def aclose(self) -> None:
        """Close the running loop's async connections; end those of other loops."""
        loop = asyncio.get_running_loop()
        pools, self._apools = self._apools, {}
        for owner, (idle, _) in list(pools.items()):
            if owner is loop:
                for conn in idle:
                    await conn.close()
            else:
                _finish(idle)

    def abandon(self) -> list[Any]:
        """After fork: forget the parent's connections without closing them."""
        inherited: list[Any] = [*self._idle]
        for idle, _ in self._apools.values():
            inherited.extend(idle)
        self._idle, self._apools = [], {}
        self._out = 0
        self._cond = threading.Condition(threading.Lock())
        return inherited

    def query(self, sql: str, params: tuple[Any, ...], many: bool) -> Any:
        """One read; a pooled connection the server dropped (restart, idle timeout) is
        replaced once, and the other idle ones are dropped with it."""
        for attempt in (1, 2):
            conn = self.checkout()
            try:
                cur = conn.execute(sql, params, binary=True)
                return cur.fetchall() if many else cur.fetchone()
            except psycopg.OperationalError:
                broken = conn.broken
                conn.close()
                if attempt == 2 or not broken:
                    raise
                with self._cond:
                    stale, self._idle = self._idle, []
                for other in stale:
                    other.close()
            except BaseException:
                conn.close()
                raise
            finally:
                self.checkin(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    async def aquery(self, sql: str, params: tuple[Any, ...], many: bool) -> Any:
        """``query`` on the running loop's async connections (each loop has its own pool of
        at most ``pool_size``); written out, not as a context manager: this is every read."""
        for attempt in (1, 2):
            loop, pool = self._apool()
            idle, slots = pool
            await slots.acquire()
            conn: psycopg.AsyncConnection[Any] | None = None
            try:
                conn = idle.pop() if idle else await self._aconnect()
                cur = await conn.execute(sql, params, binary=True)
                found = await (cur.fetchall() if many else cur.fetchone())
                if self._apools.get(loop) is pool and not conn.closed:
                    idle.append(conn)  # before the slot is freed: the pool stays bounded
                else:
                    await conn.close()
                return found
            except psycopg.OperationalError:
                broken = conn is not None and conn.broken
                if conn is not None:
                    await conn.close()
                if attempt == 2 or not broken:
                    raise
                stale, idle[:] = list(idle), []  # the server dropped them all (restart)
                for other in stale:
                    await other.close()
            except BaseException:
                if conn is not None:
                    await conn.close()
                raise
            finally:
                slots.release()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _aconnect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, prepare_threshold=0, connect_timeout=2
        )
