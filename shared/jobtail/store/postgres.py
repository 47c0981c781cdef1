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
prepare_threshold=None``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
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
    refusal,
    utcnow,
)
from .matching import SearchHits, SearchQuery
from .pg_listen import NOTIFY_WINDOW, Listener
from .pg_poll import MAX_BATCH, PollBatcher, batch_sql
from .pg_search import plan as search_plan
from .pg_search import search as pg_search

log = logging.getLogger(__name__)

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

RUN_COLUMNS = (
    "run_id, upload_id, service_name, status, created_at, started_at, finished_at,"
    " heartbeat_at, last_seq, error, epoch, omitted"
)
TABLES = ("runs", "runs_logs")
FUNCTIONS = (
    "jobtail_create_run", "jobtail_get_run", "jobtail_list_runs", "jobtail_claim_run",
    "jobtail_heartbeat", "jobtail_finish_run", "jobtail_append", "jobtail_read",
    "jobtail_stale_runs", "jobtail_purge", "jobtail_restart_heartbeats", "jobtail_clock",
)  # fmt: skip
REFUSALS = ("PT403", "PT409")
"""SQLSTATEs of the SQL functions' fencing refusals (RunFencedError, SeqGapError)."""
MISSING_SQL = """
select array(select t from unnest(%(tables)s::text[]) t where to_regclass(t) is null)
    || array(select f from unnest(%(functions)s::text[]) f where not exists (
        select 1 from pg_proc p where p.proname = f and pg_function_is_visible(p.oid)))
"""


# The common case of an append, the run's owner adding its next line, as one statement instead of
# a call of jobtail_append (whose PL/pgSQL, jsonb parsing and separate row lock made a one-line
# append cost about three INSERTs): the UPDATE moves last_seq only if the line is the next one
# and the writer still owns an open run (PostgreSQL re-checks that against the latest row once
# it holds the row's lock, so a claim that commits first fences it), and the line is inserted
# only if it did. It decides whether to NOTIFY as migration 0006 does (jobtail__announce): at
# most once per window (notified_at set to the clock, so a later one than this statement's start
# means it just was), or on every append, or never; the NOTIFY itself goes out after the commit
# (NOTIFY_AFTER). No row: not the common case, so jobtail_append says why.
APPEND_NEXT = """
with moved as (
    update runs set last_seq = %(seq)s,
           notified_at = case
               when coalesce(nullif(current_setting('jobtail.notify', true), ''), 'coalesced')
                        = 'off' then notified_at
               when current_setting('jobtail.notify', true) = 'every' or notified_at is null
                    or notified_at <= clock_timestamp() - make_interval(secs => coalesce(nullif(
                        current_setting('jobtail.notify_window_ms', true), '')::double precision,
                        5) / 1000)
               then clock_timestamp() else notified_at end
     where run_id = %(run_id)s and last_seq = %(seq)s - 1 and status in ('queued', 'running')
       and (%(epoch)s::bigint is null or (epoch = %(epoch)s::bigint and status = 'running'))
    returning upload_id, service_name, notified_at >= statement_timestamp() as due
), added as (
    insert into runs_logs (run_id, seq, upload_id, service_name, "timestamp", log_level,
                           level_no, message, fields)
    select %(run_id)s, %(seq)s, upload_id, service_name, %(timestamp)s, %(log_level)s,
           %(level_no)s, %(message)s, %(fields)s::jsonb
      from moved
    returning seq
)
select (select count(*) from added), (select bool_or(due) from moved)
"""
# A transaction that notifies holds PostgreSQL's global notify lock until its commit is on disk,
# so with fsync on, appends that each carried their NOTIFY committed one disk flush at a time
# (50 writer threads inserting per line: 230 lines/s with a NOTIFY in each transaction, 2,300
# without, where concurrent commits share a flush). So the line is committed first, durably,
# and the NOTIFY is a transaction of its own that writes no data and need not wait for the disk
# (synchronous_commit off for it alone; 1,400 lines/s in the same test): a NOTIFY lost in a
# crash costs a listener one poll interval, and polling stays the fallback.
NOTIFY_AFTER = "select set_config('synchronous_commit', 'off', true), pg_notify('jobtail', %s)"


def lines_json(lines: Sequence[LogLine]) -> str:
    """An append batch as the jsonb array jobtail_append takes; NUL (unstorable) -> U+FFFD."""
    numbers = LEVELS
    rows = [
        {
            "seq": line.seq,
            "timestamp": line.timestamp,  # msgspec writes RFC 3339, which timestamptz reads
            "log_level": line.log_level,
            "level_no": numbers.get(line.log_level) or level_number(line.log_level),
            "message": line.message,
            "fields": line.fields or None,
        }
        for line in lines
    ]
    return dump_pg_json(rows)


def describe(conninfo: str) -> str:
    """Where a URL points, without its password, for error messages."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        raise StoreError(f"bad PostgreSQL URL: {exc}".strip()) from exc
    host = params.get("host") or "localhost"
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or params.get('user', '')}"


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def _run(r: Sequence[Any]) -> Run:
    """A row of RUN_COLUMNS, in that order."""
    started, finished, beat = (_utc(value) for value in r[5:8])
    return Run(
        r[0],
        r[1],
        r[2],
        RunStatus(r[3]),
        r[4].astimezone(UTC),
        started,
        finished,
        beat,
        r[8],
        r[9],
        r[10],
        r[11],
    )


READ_SQL = (
    'select seq, "timestamp", log_level, message, fields from jobtail_read(%s, %s, %s, %s, %s)'
)


RUN_WIDTH = len(RUN_COLUMNS.split(","))
BATCH_SQL = batch_sql(RUN_COLUMNS)
"""Followers' polls in one statement: per run its columns, then a line's (null for a run with
none new), each row led by the poll's ordinal (``pg_poll``)."""


def _line(r: Sequence[Any]) -> LogLine:
    return LogLine(r[0], r[1].astimezone(UTC), r[2], r[3], r[4])


class PostgresStore(LogStore):
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

    async def aclose(self) -> None:
        batcher = self._batchers.pop(asyncio.get_running_loop(), None)
        if batcher is not None:
            await batcher.close()
        pool = self._apools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()

    def _value(self, query: Any, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        rows = self._rows(query, params)
        return rows[0][0] if rows else None

    def _missing_hint(self) -> str:
        return (
            f"PostgreSQL database {self.where} lacks jobtail's schema: run `jobtail migrate <url>`"
        )

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
