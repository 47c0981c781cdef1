"""The SQL an SQLiteStore runs and the rows it reads back, apart from the store's logic.

The schema, the statements whose form is chosen for speed (the one-statement append, a page of
lines framed as JSON or text by SQLite itself; each says why) and the conversions from rows to
Run/LogLine are text and pure functions: kept here, ``sqlite.py`` reads as what each operation
does.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from .base import LogLine, Run, RunStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id       TEXT PRIMARY KEY,
    upload_id    TEXT NOT NULL,
    service_name TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    started_at   TEXT,
    finished_at  TEXT,
    heartbeat_at TEXT,
    error        TEXT,
    epoch        INTEGER NOT NULL DEFAULT 0,
    omitted      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_key ON runs (upload_id, service_name, created_at);
CREATE UNIQUE INDEX IF NOT EXISTS runs_one_active ON runs (upload_id, service_name)
    WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS runs_running ON runs (run_id) WHERE status = 'running';
CREATE TABLE IF NOT EXISTS runs_logs (
    run_id       TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    upload_id    TEXT NOT NULL,
    service_name TEXT NOT NULL,
    timestamp    TEXT NOT NULL,
    log_level    TEXT NOT NULL,
    level_no     INTEGER NOT NULL,
    message      TEXT NOT NULL,
    fields       TEXT,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
"""

# last_seq is derived, not stored: max(seq) is one probe of the (run_id, seq) key, and an append
# is then a single INSERT (one implicit transaction per line), about 1.5x faster per line than
# INSERT + UPDATE runs in an explicit transaction, and never out of step with the lines.
RUN_COLUMNS = (
    "run_id, upload_id, service_name, status, created_at, started_at, finished_at,"
    " heartbeat_at,"
    " (SELECT coalesce(max(seq), 0) FROM runs_logs l WHERE l.run_id = runs.run_id), error, epoch,"
    " omitted"
)
LAST_SEQ = "SELECT coalesce(max(seq), 0) FROM runs_logs WHERE run_id = ?"
INSERT = (
    "INSERT INTO runs_logs (run_id, seq, timestamp, log_level, level_no, message, fields,"
    " upload_id, service_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The common case, one next line from the run's owner, is one statement (its own transaction,
# holding the write lock from its start): its seq is NULL, which the NOT NULL key refuses, unless
# the line is the next one and the writer still owns an open run. Anything else (a retry, a gap,
# a fenced writer, an epoch named on a queued run) takes the checked path in a transaction,
# which says which. A single-row VALUES, not INSERT ... SELECT: reading runs_logs in the SELECT
# made SQLite copy the row through a temporary table first (to guard against reading its own
# insert), a fifth of the append's cost.
INSERT_NEXT = (
    "INSERT INTO runs_logs (run_id, seq, timestamp, log_level, level_no, message, fields,"
    " upload_id, service_name) VALUES (?1, CASE WHEN"
    " ?2 = (SELECT coalesce(max(seq), 0) + 1 FROM runs_logs WHERE run_id = ?1)"
    " AND EXISTS (SELECT 1 FROM runs WHERE run_id = ?1 AND status IN ('queued', 'running')"
    " AND (?10 IS NULL OR (epoch = ?10 AND status = 'running'))) THEN ?2 END,"
    " ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
)

# A line's JSON built by SQLite itself, the same bytes as msgspec makes of LogLine.to_json():
# json_quote escapes exactly as msgspec does, timestamps are stored in isoformat (nothing to
# escape) and fields as the compact JSON dump_json wrote. group_concat turns a page into one
# string: no Python object per line.
LINE_JSON = (
    """'{"seq":' || seq || ',"timestamp":"' || timestamp || '"'"""
    """ || ',"log_level":' || json_quote(log_level) || ',"message":' || json_quote(message)"""
    """ || coalesce(',"fields":' || fields, '') || '}'"""
)

# A line as base.line_text writes it, from the stored isoformat timestamp: cut to milliseconds
# (Python's isoformat leaves out a zero fraction: then ".000"), the level padded to 8.
LINE_TEXT = (
    "CASE WHEN substr(timestamp, 20, 1) = '.'"
    " THEN substr(timestamp, 1, 23) || substr(timestamp, 27)"
    " ELSE substr(timestamp, 1, 19) || '.000' || substr(timestamp, 20) END"
    " || ' ' || log_level || substr('        ', 1, max(0, 8 - length(log_level)))"
    " || ' ' || message"
)


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _run(row: sqlite3.Row) -> Run:
    return Run(
        run_id=row[0],
        upload_id=row[1],
        service_name=row[2],
        status=RunStatus(row[3]),
        created_at=datetime.fromisoformat(row[4]),
        started_at=_dt(row[5]),
        finished_at=_dt(row[6]),
        heartbeat_at=_dt(row[7]),
        last_seq=row[8],
        error=row[9],
        epoch=row[10],
        omitted=row[11],
    )


def _line(row: sqlite3.Row) -> LogLine:
    return LogLine(
        seq=row[0],
        timestamp=datetime.fromisoformat(row[1]),
        log_level=row[2],
        message=row[3],
        fields=json.loads(row[4]) if row[4] else None,
    )
