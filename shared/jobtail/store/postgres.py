"""PostgreSQL store on psycopg 3: connection pools for calls, a session connection for LISTEN.

Writers (job threads) use a thread-safe ``ConnectionPool``; tails read from the event loop
through an ``AsyncConnectionPool`` (``aget_run``/``aread``/``apoll``), one per loop, closed by
``aclose``. Every operation is one call of a ``jobtail_*`` SQL function (``supabase/
migrations``), so each is atomic and one round trip; an append batch travels as one jsonb array.
The exception is the common one-line append, a single statement of its own (``APPEND_NEXT``).
The functions NOTIFY ``jobtail`` with the run id on appends and status changes, and a background
thread LISTENs on a dedicated session connection, so this process's tails wake at once whichever
process wrote. It reconnects with backoff after a server restart (tails poll meanwhile); pool
connections are checked before use, so they recover too. Errors surface as StoreError; callers
retry, which is safe because every call is idempotent. PostgreSQL text cannot hold NUL, so NUL
becomes U+FFFD. Through a transaction pooler (Supabase's port 6543) pass ``listen=False,
prepare_threshold=None``. The pools and the errors are ``pg_connections``; the SQL text and
the rows' conversions, ``pg_sql``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from .base import (
    LEVELS,
    LogLine,
    LogStore,
    Run,
    RunActiveError,
    RunStatus,
    StoreError,
    dump_pg_json,
    level_number,
    new_run_id,
    utcnow,
)
from .matching import SearchHits, SearchQuery
from .pg_connections import RECONNECT_TIMEOUT as RECONNECT_TIMEOUT
from .pg_connections import PgConnections, describe
from .pg_listen import NOTIFY_WINDOW, Listener
from .pg_poll import MAX_BATCH, PollBatcher
from .pg_search import plan as search_plan
from .pg_search import search as pg_search
from .pg_sql import APPEND_NEXT as APPEND_NEXT
from .pg_sql import BATCH_SQL, FUNCTIONS, MISSING_SQL, READ_SQL, TABLES, _line, _run, _utc
from .pg_sql import NOTIFY_AFTER as NOTIFY_AFTER
from .pg_sql import RUN_COLUMNS as RUN_COLUMNS
from .pg_sql import RUN_WIDTH as RUN_WIDTH
from .pg_sql import lines_json as lines_json

log = logging.getLogger(__name__)


class PostgresStore(PgConnections, LogStore):
    """Runs and lines in PostgreSQL. ``conninfo`` is a ``postgresql://`` URL or a DSN."""

    poll_interval = 1.0  # NOTIFY wakes tails; polling only covers a lost LISTEN connection
    search_window = 100_000  # seqs per search statement
    poll_batch = MAX_BATCH  # polls of concurrent followers per statement at most
    _folds_unicode: bool | None = None  # whether lower() folds more than ASCII (the locale)

    def next_poll_interval(self, idle_polls: int) -> float:
        """Right after lines came, poll the NOTIFY window's trailing edge twice (appends within
        a window of the last NOTIFY do not send another: migration 0006); then wait for one."""
        return NOTIFY_WINDOW if idle_polls <= 1 else self.poll_interval

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        pool_timeout: float = 5.0,
        listen: bool = True,
        prepare_threshold: int | None = 5,
    ) -> None:
        super().__init__()
        self.conninfo = conninfo
        self.where = describe(conninfo)
        self.pool_timeout = pool_timeout
        self._unreachable = False  # the last call failed for want of the server
        self._used: dict[int, float] = {}  # id(pooled connection) -> when a call last succeeded
        self.max_size = max_size
        # the tail reads through an async pool of the event loop it runs on (one per loop)
        self._apools: dict[asyncio.AbstractEventLoop, AsyncConnectionPool[Any]] = {}
        self._batchers: dict[asyncio.AbstractEventLoop, PollBatcher] = {}  # apoll's, per loop
        self._connect_kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(2, round(connect_timeout)),
            "prepare_threshold": prepare_threshold,
        }
        first = self._connect()  # fails fast, and clearly, on a bad URL or unreachable server
        self._listener: Listener | None = None
        if listen:
            self._listener = Listener(self._connect, self.listeners.notify, first)
        else:
            first.close()
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            conninfo,
            kwargs=self._connect_kwargs,
            min_size=min_size,
            max_size=max_size,
            open=False,
            check=self._check_idle,
            timeout=pool_timeout,
            reconnect_timeout=RECONNECT_TIMEOUT,
            name="jobtail",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout + pool_timeout)
        except PoolTimeout as exc:
            self.close()
            raise StoreError(f"PostgreSQL at {self.where} gave no pool connection: {exc}") from exc

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        """Open ``url``; on Supabase's transaction pooler (port 6543) without session features."""
        try:
            port = urlsplit(url).port
        except ValueError:  # a bad port: let the connection attempt explain it
            port = None
        if port == 6543:
            return cls(url, listen=False, prepare_threshold=None)
        return cls(url)

    @property
    def listen_connects(self) -> int:
        """How many times the LISTEN connection (re)connected; 0 without LISTEN."""
        return self._listener.connects if self._listener else 0

    # -- plumbing ---------------------------------------------------------------------------
    async def aclose(self) -> None:
        batcher = self._batchers.pop(asyncio.get_running_loop(), None)
        if batcher is not None:
            await batcher.close()
        pool = self._apools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()

    def check(self) -> None:
        missing = self._value(MISSING_SQL, {"tables": list(TABLES), "functions": list(FUNCTIONS)})
        if missing:
            raise StoreError(f"{self._missing_hint()} (missing: {', '.join(missing)})")

    def close(self) -> None:
        self._apools.clear()  # each is closed by aclose() on its loop (Tailer.close)
        self._batchers.clear()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        self._pool.close()

    # -- runs -------------------------------------------------------------------------------
    def create_run(self, upload_id: str, service_name: str, run_id: str | None = None) -> Run:
        wanted = run_id or new_run_id()
        row = self._rows(
            f"select {RUN_COLUMNS} from jobtail_create_run(%s, %s, %s)",
            (wanted, upload_id, service_name),
        )[0]
        run = _run(row)
        if run.run_id != wanted:
            raise RunActiveError(run)
        self.listeners.notify(run.run_id)
        return run

    def get_run(self, run_id: str) -> Run | None:
        rows = self._rows(f"select {RUN_COLUMNS} from jobtail_get_run(%s)", (run_id,))
        return _run(rows[0]) if rows else None

    def list_runs(
        self, upload_id: str | None = None, service_name: str | None = None, limit: int = 100
    ) -> list[Run]:
        rows = self._rows(
            f"select {RUN_COLUMNS} from jobtail_list_runs(%s, %s, %s)",
            (upload_id, service_name, limit),
        )
        return [_run(row) for row in rows]

    def claim_run(
        self, run_id: str, *, takeover_stale_before: datetime | None = None
    ) -> Run | None:
        rows = self._rows(
            f"select {RUN_COLUMNS} from jobtail_claim_run(%s, %s, %s)",
            (run_id, utcnow(), takeover_stale_before),
        )
        if not rows:
            return None
        self.listeners.notify(run_id)
        return _run(rows[0])

    def heartbeat(self, run_id: str, *, epoch: int | None = None) -> None:
        self._value("select jobtail_heartbeat(%s, %s)", (run_id, epoch))

    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        error: str | None = None,
        *,
        lines: Sequence[LogLine] = (),
        epoch: int | None = None,
        if_stale_before: datetime | None = None,
        omitted: int = 0,
    ) -> bool:
        if status.active:
            raise ValueError(f"finish_run needs a final status, not {status}")
        closed = bool(
            self._value(
                "select jobtail_finish_run(%s, %s, %s, %s::jsonb, %s, %s, %s)",
                (run_id, status.value, error, lines_json(lines), epoch, if_stale_before, omitted),
            )
        )
        if closed:
            self.listeners.notify(run_id)
        return closed

    def stale_runs(
        self, heartbeat_before: datetime, queued_before: datetime | None = None, limit: int = 1000
    ) -> list[Run]:
        rows = self._rows(
            f"select {RUN_COLUMNS} from jobtail_stale_runs(%s, %s, %s)",
            (heartbeat_before, queued_before, limit),
        )
        return [_run(row) for row in rows]

    def restart_heartbeats(self, after: str = "", limit: int = 1000) -> list[str]:
        query = "select * from jobtail_restart_heartbeats(%s, %s)"
        return [row[0] for row in self._rows(query, (after, limit))]

    def clock(self) -> datetime:
        return _utc(self._value("select jobtail_clock()")) or utcnow()

    def queued_runs(
        self, after: tuple[datetime, str] | None = None, limit: int = 1000
    ) -> list[Run]:
        created, run_id = after if after else (None, "")
        rows = self._rows(
            f"select {RUN_COLUMNS} from jobtail_queued_runs(%s, %s, %s)", (created, run_id, limit)
        )
        return [_run(row) for row in rows]

    def purge(self, finished_before: datetime) -> int:
        return int(self._value("select jobtail_purge(%s)", (finished_before,)))

    # -- lines ------------------------------------------------------------------------------
    def append(self, run_id: str, lines: Sequence[LogLine], *, epoch: int | None = None) -> int:
        if len(lines) == 1 and lines[0].seq > 0:
            line = lines[0]
            message = line.message
            row = {
                "run_id": run_id,
                "seq": line.seq,
                "epoch": epoch,
                "timestamp": line.timestamp,
                "log_level": line.log_level,
                "level_no": LEVELS.get(line.log_level) or level_number(line.log_level),
                "message": message.replace("\x00", "\ufffd") if "\x00" in message else message,
                "fields": dump_pg_json(line.fields) if line.fields else None,
            }
            with self._connection() as conn:
                added, due = conn.execute(APPEND_NEXT, row).fetchone() or (0, False)
                if added and due:
                    conn.execute(NOTIFY_AFTER, (run_id,))
            if added:
                self.listeners.notify(run_id)
                return line.seq
        last = int(
            self._value(
                "select jobtail_append(%s, %s::jsonb, %s)", (run_id, lines_json(lines), epoch)
            )
        )
        self.listeners.notify(run_id)
        return last

    def read(
        self,
        run_id: str,
        after: int = 0,
        limit: int = 1000,
        min_level: str | None = None,
        before: int | None = None,
    ) -> list[LogLine]:
        rows = self._rows(READ_SQL, (run_id, after, limit, level_number(min_level), before))
        return [_line(r) for r in rows]

    def search(
        self, run_id: str, query: SearchQuery, *, after: int, upto: int, limit: int, deadline: float
    ) -> SearchHits:
        """In SQL (``jobtail_search``: ``strpos``/``ILIKE``/``~*``, each window under a statement
        timeout): ``jobtail.store.pg_search``; a pattern PostgreSQL cannot run the same way is
        matched in Python."""
        query.check()
        if self._folds_unicode is None:
            self._folds_unicode = bool(self._value("select jobtail_search_folds_unicode()"))
        how = search_plan(query, self._folds_unicode)
        if how is not None:
            bounds = {"after": after, "upto": upto, "limit": limit}
            with self._connection() as conn:
                hits = pg_search(
                    conn,
                    run_id,
                    query,
                    how,
                    **bounds,
                    deadline=deadline,
                    window=self.search_window,
                )
            if hits is not None:
                return hits
        return super().search(run_id, query, after=after, upto=upto, limit=limit, deadline=deadline)

    # -- async reads (the tail's) -------------------------------------------------------------
    async def aget_run(self, run_id: str) -> Run | None:
        rows = await self._arows(f"select {RUN_COLUMNS} from jobtail_get_run(%s)", (run_id,))
        return _run(rows[0]) if rows else None

    async def aread(
        self,
        run_id: str,
        after: int = 0,
        limit: int = 1000,
        min_level: str | None = None,
        before: int | None = None,
    ) -> list[LogLine]:
        rows = await self._arows(READ_SQL, (run_id, after, limit, level_number(min_level), before))
        return [_line(r) for r in rows]

    async def apoll(self, run_id: str, after: int, limit: int) -> tuple[Run | None, list[LogLine]]:
        """The run and its lines in one statement (one snapshot: the lines hold every one up
        to the run's last_seq); the concurrent polls of other runs share it (``pg_poll``), so
        a wake-up of many followers costs the server one round trip, not one each."""
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(loop)
        if batcher is None:
            batcher = self._batchers[loop] = PollBatcher(self._arows, BATCH_SQL, self.poll_batch)
        rows = await batcher.poll(run_id, after, limit)
        if not rows:
            return None, []
        return _run(rows[0]), [_line(r[RUN_WIDTH:]) for r in rows if r[RUN_WIDTH] is not None]
