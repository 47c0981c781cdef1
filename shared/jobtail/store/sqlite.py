"""The embedded default store: one SQLite file in WAL mode.

WAL lets readers run while a writer commits. ``synchronous=NORMAL`` (the default here) makes a
committed line survive a crash of the process; ``?synchronous=full`` in the URL also survives
power loss at the cost of an fsync per commit. Each thread gets its own connection
(``sqlite_connections``). The schema, the statements and the rows' conversions are
``sqlite_sql``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path

from .base import (
    JSON_LINES,
    LEVELS,
    FramedLines,
    Framing,
    LogLine,
    LogStore,
    Run,
    RunActiveError,
    RunFencedError,
    RunNotFoundError,
    RunStatus,
    StoreError,
    check_writer,
    dump_json,
    level_number,
    new_run_id,
    utcnow,
)
from .matching import SearchHits, SearchQuery
from .sqlite_connections import ThreadConnections
from .sqlite_search import search as sqlite_search
from .sqlite_sql import INSERT, LAST_SEQ, LINE_JSON, LINE_TEXT, RUN_COLUMNS, SCHEMA, _line, _run
from .sqlite_sql import INSERT_NEXT as INSERT_NEXT


class SQLiteStore(LogStore):
    """SQLite file store. ``path`` may be ``:memory:`` only for single-threaded use."""

    poll_interval = 0.1  # reads are cheap; only writers in other processes need polling
    search_window = 100_000  # seqs per search statement

    def __init__(self, path: str | Path, synchronous: str = "NORMAL") -> None:
        super().__init__()
        self.path = str(path)
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise StoreError(f"unknown SQLite synchronous mode {synchronous!r}")
        self.synchronous = synchronous.upper()
        self._connections = ThreadConnections(self.path, self.synchronous, foreign_keys=True)
        self._keys: dict[str, tuple[str, str]] = {}  # run_id -> (upload_id, service_name)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self._use() as db:
            db.executescript(SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
            for column in ("epoch", "omitted"):  # a database made before these existed
                if column not in columns:
                    db.execute(f"ALTER TABLE runs ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")

    # -- connections ----------------------------------------------------------------------
    def _use(self) -> AbstractContextManager[sqlite3.Connection]:
        """This thread's connection, held for one operation (see sqlite_connections)."""
        return self._connections.use()

    def _db(self) -> sqlite3.Connection:
        """This thread's connection, not held: for tests only."""
        return self._connections.get()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite's errors as StoreError, which callers (RunLogger, the web app) handle."""
        try:
            yield
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"refused by the database: {exc}") from exc
        except sqlite3.OperationalError as exc:
            raise StoreError(f"SQLite {self.path}: {exc}") from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._use() as db, self._errors():
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        self._connections.close()

    # -- runs -----------------------------------------------------------------------------
    def create_run(self, upload_id: str, service_name: str, run_id: str | None = None) -> Run:
        run = Run(
            run_id=run_id or new_run_id(),
            upload_id=upload_id,
            service_name=service_name,
            status=RunStatus.QUEUED,
            created_at=utcnow(),
        )
        with self._tx() as db:
            active = db.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE upload_id = ? AND service_name = ?"
                " AND status IN ('queued', 'running')",
                (upload_id, service_name),
            ).fetchone()
            if active is not None:
                raise RunActiveError(_run(active))
            db.execute(
                "INSERT INTO runs (run_id, upload_id, service_name, status, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (run.run_id, upload_id, service_name, run.status.value, run.created_at.isoformat()),
            )
        self.listeners.notify(run.run_id)
        return run

    def get_run(self, run_id: str) -> Run | None:
        with self._use() as db:
            query = f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?"
            found = db.execute(query, (run_id,)).fetchone()
        return _run(found) if found else None

    def list_runs(
        self, upload_id: str | None = None, service_name: str | None = None, limit: int = 100
    ) -> list[Run]:
        where, params = [], []
        if upload_id is not None:
            where.append("upload_id = ?")
            params.append(upload_id)
        if service_name is not None:
            where.append("service_name = ?")
            params.append(service_name)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._use() as db:
            rows = db.execute(
                f"SELECT {RUN_COLUMNS} FROM runs {clause} ORDER BY created_at DESC, run_id DESC"
                " LIMIT ?",
                (*params, limit),
            )
            return [_run(row) for row in rows]

    def claim_run(
        self, run_id: str, *, takeover_stale_before: datetime | None = None
    ) -> Run | None:
        now = utcnow().isoformat()
        bound = takeover_stale_before.isoformat() if takeover_stale_before else None
        with self._tx() as db:
            row = db.execute(
                "UPDATE runs SET status = 'running', started_at = ?, heartbeat_at = ?,"
                " epoch = epoch + 1 WHERE run_id = ? AND (status = 'queued' OR (? IS NOT NULL"
                " AND status = 'running' AND COALESCE(heartbeat_at, created_at) < ?))"
                f" RETURNING {RUN_COLUMNS}",
                (now, now, run_id, bound, bound),
            ).fetchone()
        if row is None:
            return None
        self.listeners.notify(run_id)
        return _run(row)

    def heartbeat(self, run_id: str, *, epoch: int | None = None) -> None:
        with self._tx() as db:
            beat = db.execute(
                "UPDATE runs SET heartbeat_at = ? WHERE run_id = ? AND status = 'running'"
                " AND (? IS NULL OR epoch = ?)",
                (utcnow().isoformat(), run_id, epoch, epoch),
            ).rowcount
            if not beat and epoch is not None:
                status, run_epoch, _ = self._state(db, run_id)
                reason = "stale_epoch" if run_epoch != epoch else "closed"
                if status is RunStatus.QUEUED:
                    reason = "unclaimed"
                raise RunFencedError(run_id, reason, epoch=run_epoch, status=status.value)

    def _state(self, db: sqlite3.Connection, run_id: str) -> tuple[RunStatus, int, int]:
        """(status, epoch, last_seq) of a run, read inside the caller's transaction."""
        row = db.execute(
            f"SELECT status, epoch, ({LAST_SEQ}) FROM runs WHERE run_id = ?", (run_id, run_id)
        ).fetchone()
        if row is None:
            raise RunNotFoundError(run_id)
        return RunStatus(row[0]), int(row[1]), int(row[2])

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
        with self._tx() as db:
            row = db.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                return False
            run = _run(row)
            if if_stale_before is not None and (
                not run.active or run.last_sign_of_life() >= if_stale_before
            ):
                return False  # alive after all (or already ended): nothing to explain
            fresh = check_writer(run_id, (run.status, run.epoch, run.last_seq), lines, epoch)
            if not run.active:
                return False  # a retried close: its lines are committed already
            self._insert(db, run_id, fresh)
            db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, error = ?, epoch = ?, omitted = ?"
                " WHERE run_id = ?",
                (
                    status.value,
                    utcnow().isoformat(),
                    error,
                    run.epoch if epoch is not None else run.epoch + 1,  # fence the old owner
                    omitted,
                    run_id,
                ),
            )
        self.listeners.notify(run_id)
        return True

    def stale_runs(
        self, heartbeat_before: datetime, queued_before: datetime | None = None, limit: int = 1000
    ) -> list[Run]:
        queued = (queued_before or heartbeat_before).isoformat()
        with self._use() as db:
            rows = db.execute(
                f"SELECT {RUN_COLUMNS} FROM runs"
                " WHERE (status = 'running' AND COALESCE(heartbeat_at, created_at) < ?)"
                " OR (status = 'queued' AND created_at < ?) ORDER BY created_at LIMIT ?",
                (heartbeat_before.isoformat(), queued, limit),
            )
            return [_run(row) for row in rows]

    def restart_heartbeats(self, after: str = "", limit: int = 1000) -> list[str]:
        with self._tx() as db:  # the page and its heartbeats in one write transaction
            rows = db.execute(
                "UPDATE runs SET heartbeat_at = ? WHERE run_id IN (SELECT run_id FROM runs"
                " WHERE status = 'running' AND run_id > ? ORDER BY run_id LIMIT ?)"
                " RETURNING run_id",
                (utcnow().isoformat(), after, limit),
            )
            return sorted(row[0] for row in rows)

    def queued_runs(
        self, after: tuple[datetime, str] | None = None, limit: int = 1000
    ) -> list[Run]:
        created, run_id = (after[0].isoformat(), after[1]) if after else ("", "")
        with self._use() as db:
            rows = db.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE status = 'queued'"
                " AND (created_at > ? OR (created_at = ? AND run_id > ?))"
                " ORDER BY created_at, run_id LIMIT ?",
                (created, created, run_id, limit),
            )
            return [_run(row) for row in rows]

    def purge(self, finished_before: datetime) -> int:
        with self._tx() as db:
            cursor = db.execute(
                "DELETE FROM runs WHERE status IN ('succeeded', 'failed') AND finished_at < ?",
                (finished_before.isoformat(),),
            )
        return cursor.rowcount

    # -- lines ----------------------------------------------------------------------------
    def append(self, run_id: str, lines: Sequence[LogLine], *, epoch: int | None = None) -> int:
        if not lines:  # nothing to write, but the writer is checked as for lines
            with self._use() as db, self._errors():
                state = self._state(db, run_id)
            check_writer(run_id, state, lines, epoch)
            return state[2]
        if len(lines) == 1 and lines[0].seq > 0:
            row = self._row(run_id, lines[0])
            try:
                with self._use() as db:
                    db.execute(INSERT_NEXT, (*row, epoch))
            except sqlite3.IntegrityError:
                pass  # not the next line, or not this writer's run: the checked path says why
            except sqlite3.OperationalError as exc:
                raise StoreError(f"SQLite {self.path}: {exc}") from exc
            else:
                self.listeners.notify(run_id)
                return lines[0].seq
        with self._tx() as db:
            state = self._state(db, run_id)
            fresh = check_writer(run_id, state, lines, epoch)
            self._insert(db, run_id, fresh)
        if fresh:
            self.listeners.notify(run_id)
            return fresh[-1].seq
        return state[2]

    def _key(self, run_id: str) -> tuple[str, str]:
        """The run's (upload_id, service_name), which each line row repeats; cached."""
        key = self._keys.get(run_id)
        if key is None:
            with self._use() as db:
                query = "SELECT upload_id, service_name FROM runs WHERE run_id = ?"
                found = db.execute(query, (run_id,)).fetchone()
            if found is None:
                raise RunNotFoundError(run_id)
            if len(self._keys) > 10_000:
                self._keys.clear()
            key = self._keys[run_id] = (found[0], found[1])
        return key

    def _row(self, run_id: str, line: LogLine) -> tuple[object, ...]:
        upload_id, service_name = self._key(run_id)
        return (
            run_id,
            line.seq,
            line.timestamp.isoformat(),
            line.log_level,
            LEVELS.get(line.log_level) or level_number(line.log_level),
            line.message,
            dump_json(line.fields) if line.fields else None,
            upload_id,
            service_name,
        )

    def _insert(self, db: sqlite3.Connection, run_id: str, lines: Sequence[LogLine]) -> None:
        if lines:
            db.executemany(INSERT, [self._row(run_id, line) for line in lines])

    def read(
        self,
        run_id: str,
        after: int = 0,
        limit: int = 1000,
        min_level: str | None = None,
        before: int | None = None,
    ) -> list[LogLine]:
        sql = "SELECT seq, timestamp, log_level, message, fields FROM runs_logs"
        sql += " WHERE run_id = ? AND seq > ?"
        params: list[object] = [run_id, after]
        if before is not None:
            sql += " AND seq < ?"
            params.append(before)
        if min_level is not None and level_number(min_level) > LEVELS["DEBUG"]:
            sql += " AND level_no >= ?"
            params.append(level_number(min_level))
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        with self._use() as db:
            return [_line(row) for row in db.execute(sql, params)]

    def search(
        self, run_id: str, query: SearchQuery, *, after: int, upto: int, limit: int, deadline: float
    ) -> SearchHits:
        """In SQL (``instr``/``LIKE``; a registered function for regexes and ANSI lines)."""
        window, bounds = self.search_window, {"after": after, "upto": upto, "limit": limit}
        with self._use() as db:
            return sqlite_search(db, run_id, query, **bounds, deadline=deadline, window=window)

    def read_framed(
        self,
        run_id: str,
        after: int = 0,
        limit: int = 1000,
        min_level: str | None = None,
        before: int | None = None,
        framing: Framing = JSON_LINES,
    ) -> FramedLines:
        params: list[object] = []
        frame = (LINE_TEXT if framing.text else LINE_JSON) + " || ?"
        if framing.head is not None:
            frame = "? || seq || ? || " + frame
            params += [framing.head, framing.mid]
        params += [framing.tail, run_id, after]
        sql = f"SELECT seq, {frame} AS frame FROM runs_logs WHERE run_id = ? AND seq > ?"
        if before is not None:
            sql += " AND seq < ?"
            params.append(before)
        if min_level is not None and level_number(min_level) > LEVELS["DEBUG"]:
            sql += " AND level_no >= ?"
            params.append(level_number(min_level))
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        page = "SELECT count(*), coalesce(max(seq), 0), coalesce(group_concat(frame, ''), '')"
        with self._use() as db, self._errors():
            count, last, text = db.execute(f"{page} FROM ({sql})", params).fetchone()
        return FramedLines(text.encode(), count, last)
