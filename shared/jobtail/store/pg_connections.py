"""A PostgresStore's pooled connections: one statement on one, psycopg errors as StoreError.

The plumbing under every call, apart from what the calls do: the thread-safe pool the writers
use, the async pool per event loop the tails read through, when a pooled connection is checked
before use, how long a call waits for one while the server is down, and which StoreError each
psycopg error becomes. ``PostgresStore`` inherits it and sets its attributes in ``__init__``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from .base import StoreError, refusal

RECONNECT_TIMEOUT = 5.0
"""Seconds a pool's chain of reconnection attempts lasts. psycopg_pool doubles the delay
between attempts (1, 2, 4, 8… s) until this timeout (5 min by default), so after a minute's
outage its next attempt came up to a minute after the server was back, and the run's end and
the viewers waited that long. A short chain gives up instead, and the next call starts a new
one whose first attempt is immediate."""
DOWN_POOL_TIMEOUT = 0.5
"""Seconds a call waits for a pool connection while the server is known to be unreachable (the
last call failed for that), instead of ``pool_timeout``: a job logging through an outage is
held back this long per attempt, not 5 s (its lines wait in order either way)."""
CHECK_IDLE = 1.0
"""Seconds a pooled connection may sit unused and still be handed out unchecked. A check is a
round trip of its own, as long as a one-line append's; a connection that answered within the
last second is very likely alive, and if the server went away since, the call fails like any
call during an outage (callers retry: every call is idempotent) and the pool's explicit check
drops the other dead connections."""
REFUSALS = ("PT403", "PT409")
"""SQLSTATEs of the SQL functions' fencing refusals (RunFencedError, SeqGapError)."""


def describe(conninfo: str) -> str:
    """Where a URL points, without its password, for error messages."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        raise StoreError(f"bad PostgreSQL URL: {exc}".strip()) from exc
    host = params.get("host") or "localhost"
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or params.get('user', '')}"


class PgConnections:
    """Pooled connections and one statement on one; ``PostgresStore`` sets the attributes."""

    conninfo: str
    where: str  # the server, for error messages (``describe``)
    pool_timeout: float
    max_size: int
    _unreachable: bool  # the last call failed for want of the server
    _used: dict[int, float]  # id(pooled connection) -> when a call last succeeded
    _apools: dict[asyncio.AbstractEventLoop, AsyncConnectionPool[Any]]
    _connect_kwargs: dict[str, Any]
    _pool: ConnectionPool[psycopg.Connection[Any]]

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.conninfo, **self._connect_kwargs)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL at {self.where}: {exc}".strip()
            ) from exc

    def _check_idle(self, conn: psycopg.Connection[Any]) -> None:
        """The pool's check before handing out ``conn``: only after ``CHECK_IDLE`` unused."""
        used = self._used.get(id(conn))
        if used is None or time.monotonic() - used >= CHECK_IDLE:
            ConnectionPool.check_connection(conn)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; psycopg errors become StoreError."""
        wait = DOWN_POOL_TIMEOUT if self._unreachable else self.pool_timeout
        try:
            with self._pool.connection(timeout=wait) as conn:
                self._unreachable = False  # a checked connection: the server is there
                yield conn
                if len(self._used) > 10 * self.max_size:  # ids of connections closed since
                    self._used.clear()
                self._used[id(conn)] = time.monotonic()
        except PoolTimeout as exc:
            self._unreachable = True
            raise StoreError(
                f"PostgreSQL at {self.where} gave no connection within {wait:g}s"
            ) from exc
        except psycopg.OperationalError as exc:
            self._unreachable = True
            self._pool.check()  # drop the other dead connections now, not one by one
            raise StoreError(f"PostgreSQL at {self.where} failed: {exc}".strip()) from exc
        except (psycopg.errors.UndefinedFunction, psycopg.errors.UndefinedTable) as exc:
            raise StoreError(f"{self._missing_hint()}: {exc.diag.message_primary}") from exc
        except psycopg.Error as exc:
            refused = refusal(exc.diag.message_detail) if exc.sqlstate in REFUSALS else None
            raise (refused or StoreError(exc.diag.message_primary or str(exc))) from exc

    def _rows(self, query: Any, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        """Run one statement on a pooled connection; psycopg errors become StoreError."""
        with self._connection() as conn:
            return conn.execute(query, params).fetchall()

    async def _apool(self) -> AsyncConnectionPool[Any]:
        loop = asyncio.get_running_loop()
        pool = self._apools.get(loop)
        if pool is None:
            pool = self._apools[loop] = AsyncConnectionPool(
                self.conninfo,
                kwargs=self._connect_kwargs,
                min_size=1,
                max_size=self.max_size,
                open=False,
                check=AsyncConnectionPool.check_connection,
                timeout=self.pool_timeout,
                reconnect_timeout=RECONNECT_TIMEOUT,
                name="jobtail-async",
            )
        await pool.open()  # a no-op once open; safe when several tasks race here
        return pool

    async def _arows(self, query: Any, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        """``_rows`` on the async pool: the same errors, as StoreError."""
        pool = await self._apool()
        try:
            async with pool.connection() as conn:
                cursor = await conn.execute(query, params)
                rows: list[Any] = await cursor.fetchall()
                return rows
        except PoolTimeout as exc:
            raise StoreError(
                f"PostgreSQL at {self.where} gave no connection within {self.pool_timeout}s"
            ) from exc
        except psycopg.OperationalError as exc:
            await pool.check()
            raise StoreError(f"PostgreSQL at {self.where} failed: {exc}".strip()) from exc
        except psycopg.Error as exc:
            raise StoreError(exc.diag.message_primary or str(exc)) from exc

    def _value(self, query: Any, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        rows = self._rows(query, params)
        return rows[0][0] if rows else None

    def _missing_hint(self) -> str:
        return (
            f"PostgreSQL database {self.where} lacks jobtail's schema: run `jobtail migrate <url>`"
        )
