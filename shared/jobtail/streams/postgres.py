"""Streams in PostgreSQL (psycopg 3), in the log store's database: each operation is one call
of a ``jobtail_stream_*`` function (``0007_stream_functions.sql``), the same functions Supabase
runs by rpc, so both backends share one implementation and the conformance suite on PostgreSQL
proves Supabase's SQL too.

Each write is one transaction that starts with ``SELECT ... FOR UPDATE`` on the stream's row,
which serializes appends per stream (so per ``(stream, producer)``) across every server process,
and commits producer state, data, tail and closed flag together. Each write also NOTIFYs
``jobtail_streams`` with the path (delivered at commit); a daemon thread LISTENs on a session
connection of its own and wakes this process's waiters, so long-polls and SSE answer at once
whichever process wrote. Polling (every second) only covers a lost LISTEN connection.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from ..store.pg_listen import FIRST_DELAY, reconnect_delay
from ..store.postgres import RECONNECT_TIMEOUT, PostgresStore
from .base import StreamError
from .functions import FunctionStreams, refused

log = logging.getLogger(__name__)


CHANNEL = "jobtail_streams"


class PostgresStreams(FunctionStreams):
    poll_interval = 1.0

    def __init__(
        self, conninfo: str, *, max_size: int = 10, timeout: float = 5.0, listen: bool = True
    ) -> None:
        super().__init__()
        self._stopping = threading.Event()
        self.listening = threading.Event()  # set while the LISTEN connection is up
        self.connects = 0  # how many times LISTEN (re)connected
        self._listener: threading.Thread | None = None
        if listen:
            self._listener = threading.Thread(
                target=self._listen, args=(conninfo,), name="jobtail-streams-listen", daemon=True
            )
            self._listener.start()
        else:
            self.poll_interval = 0.1
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            conninfo,
            kwargs={"autocommit": True},
            min_size=1,
            max_size=max_size,
            open=False,
            check=ConnectionPool.check_connection,
            timeout=timeout,
            reconnect_timeout=RECONNECT_TIMEOUT,  # see store/postgres.py
            name="jobtail-streams",
        )
        try:
            self._pool.open(wait=True, timeout=timeout * 2)
        except PoolTimeout as exc:
            self._pool.close()
            raise StreamError(f"PostgreSQL gave no connection for streams: {exc}") from exc

    @classmethod
    def from_store(cls, store: PostgresStore, *, listen: bool = True) -> PostgresStreams:
        """Beside ``store``; ``listen=False`` for a user that never waits for appends."""
        try:  # no LISTEN through Supabase's transaction pooler, as for the log store
            listen = listen and urlsplit(store.conninfo).port != 6543
        except ValueError:
            listen = False
        return cls(store.conninfo, max_size=store.max_size, listen=listen)

    def _listen(self, conninfo: str) -> None:
        """LISTEN until closed; reconnect with backoff when the connection drops (the backoff
        starts over only after a connection that held: no busy loop); waiters poll meanwhile."""
        delay, lost = FIRST_DELAY, 0
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    self.connects += 1
                    if lost:
                        log.warning("streams LISTEN back after %d tries", lost)
                    lost = 0
                    while not self._stopping.is_set():
                        for notice in conn.notifies(timeout=1.0):
                            self.listeners.notify(notice.payload)
            except psycopg.Error as exc:
                lost += 1
                if lost == 1:  # once per outage
                    log.warning("streams LISTEN lost, reconnecting: %s", exc)
            except Exception:  # never let the thread die: waiters would only poll from now on
                lost += 1
                log.exception("streams LISTEN thread failed; reconnecting")
            finally:
                self.listening.clear()
            wait, delay = reconnect_delay(delay, time.monotonic() - started)
            self._stopping.wait(wait)

    def _call(
        self, name: str, params: dict[str, Any], *, get: bool = False, retry: bool = True
    ) -> Any:
        """One ``select jobtail_stream_<name>(p_x => ...)`` on an autocommit connection: the
        function's transaction is the statement's."""
        args = {key: value for key, value in params.items() if value is not None}
        query = sql.SQL("select {}({})").format(
            sql.Identifier(f"jobtail_stream_{name}"),
            sql.SQL(", ").join(
                sql.SQL("{} => {}").format(sql.Identifier(key), sql.Placeholder(key))
                for key in args
            ),
        )
        try:
            with self._pool.connection() as conn:
                row = conn.execute(query, args).fetchone()
        except PoolTimeout as exc:
            raise StreamError(f"PostgreSQL gave no connection: {exc}") from exc
        except (psycopg.errors.UndefinedFunction, psycopg.errors.UndefinedTable) as exc:
            raise StreamError(
                "the streams functions are missing: run `jobtail migrate <url>`"
                " (0004_streams.sql, 0007_stream_functions.sql)"
            ) from exc
        except psycopg.OperationalError as exc:
            raise StreamError(f"PostgreSQL failed: {exc}".strip()) from exc
        except psycopg.Error as exc:
            message = exc.diag.message_primary or str(exc)
            raise (
                refused(exc.sqlstate, message, exc.diag.message_detail) or StreamError(message)
            ) from exc
        return None if row is None else row[0]

    def close(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            self._listener.join(timeout=10)  # a connect in progress takes up to 5 s
        self._pool.close()
