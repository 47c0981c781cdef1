"""Streams in PostgreSQL (psycopg 3), in the log store's database (``0004_streams.sql``).

Each write is one transaction that starts with ``SELECT ... FOR UPDATE`` on the stream's row,
which serializes appends per stream (so per ``(stream, producer)``) across every server process,
and commits producer state, data, tail and closed flag together. Readers in other processes
poll; writers in this process wake their waiters at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from ..store.postgres import PostgresStore
from .base import StreamError
from .sql import Cursor, SqlStreamStore, Tx


class _PgTx:
    """A psycopg connection inside a transaction, taking the engine's ``?`` placeholders."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self.conn.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]


class PostgresStreams(SqlStreamStore):
    lock_suffix = " FOR UPDATE"
    race_errors = (psycopg.errors.UniqueViolation,)
    poll_interval = 0.1

    def __init__(self, conninfo: str, *, max_size: int = 10, timeout: float = 5.0) -> None:
        super().__init__()
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            conninfo,
            kwargs={"autocommit": True},
            min_size=1,
            max_size=max_size,
            open=False,
            check=ConnectionPool.check_connection,
            timeout=timeout,
            name="jobtail-streams",
        )
        try:
            self._pool.open(wait=True, timeout=timeout * 2)
        except PoolTimeout as exc:
            self._pool.close()
            raise StreamError(f"PostgreSQL gave no connection for streams: {exc}") from exc

    @classmethod
    def from_store(cls, store: PostgresStore) -> PostgresStreams:
        return cls(store.conninfo, max_size=store.max_size)

    @contextmanager
    def _tx(self) -> Iterator[Tx]:
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield _PgTx(conn)
        except PoolTimeout as exc:
            raise StreamError(f"PostgreSQL gave no connection: {exc}") from exc
        except psycopg.errors.UniqueViolation:
            raise
        except psycopg.errors.UndefinedTable as exc:
            raise StreamError(
                "the streams tables are missing: run `jobtail migrate <url>` (0004_streams.sql)"
            ) from exc
        except psycopg.OperationalError as exc:
            raise StreamError(f"PostgreSQL failed: {exc}".strip()) from exc

    def close(self) -> None:
        self._pool.close()
