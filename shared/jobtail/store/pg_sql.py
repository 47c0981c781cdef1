"""The SQL a PostgresStore sends and the rows it gets back, apart from the store's logic.

The statements (the ``jobtail_*`` function calls' column list, the one-statement append, the
NOTIFY after it, the schema check) and the conversions between rows and Run/LogLine are text
and pure functions: kept here, ``postgres.py`` reads as what each operation does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .base import LEVELS, LogLine, Run, RunStatus, dump_pg_json, level_number
from .pg_poll import batch_sql

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
