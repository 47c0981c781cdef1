"""Per-line writers beside their floors, measured in the same run.

``append``: RunLogger committing each line before ``log()`` returns, against the raw driver doing
one ``INSERT`` + commit per line into the same table (sqlite3 on a jobtail database with the
store's pragmas; psycopg on the migrated PostgreSQL schema). The floor builds the same row (a
fresh timestamp, the level's number) but checks nothing: jobtail's append also checks that the
writer still owns an open run and that the line is the run's next one, which is what fencing
needs. Rounds alternate floor and jobtail and the best of each is kept, so a noisy neighbour
hits both alike.

``inserver``: a RunLogger in a thread of a uvicorn server process that 100 SSE viewers are
watching, against the same RunLogger in a process of its own writing to the same SQLite file
while the same 100 viewers watch; committed lines/s of each.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobtail.logger import RunLogger
from jobtail.store.base import LogStore, RunStatus
from jobtail.store.sqlite import SQLiteStore

from .stats import process_stats

Row = tuple[str, str, str, bool]

MESSAGE = "line {} of the benchmark"


def _best_of(rounds: int, *measures: Callable[[], float]) -> list[float]:
    """Each measure's best rate over ``rounds``, the measures taking turns within a round."""
    best = [0.0] * len(measures)
    for _ in range(rounds):
        for i, measure in enumerate(measures):
            best[i] = max(best[i], measure())
    return best


def _logger_rate(store: LogStore, count: int) -> float:
    """Lines/s of RunLogger.info, each line committed before it returns."""
    run = store.create_run("bench", "per-line")
    store.start_run(run.run_id)
    logger = RunLogger(store, run.run_id, start_seq=0)
    started = time.perf_counter()
    for n in range(count):
        logger.info(MESSAGE.format(n))
    rate = count / (time.perf_counter() - started)
    store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    return rate


# -- SQLite -------------------------------------------------------------------------------------
SQLITE_INSERT = (
    "INSERT INTO runs_logs (run_id, seq, timestamp, log_level, level_no, message, fields,"
    " upload_id, service_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _sqlite_floor(store: SQLiteStore, count: int) -> float:
    """Lines/s of a bare sqlite3 INSERT per line, each its own (autocommit) transaction."""
    run = store.create_run("bench", "floor")
    db = sqlite3.connect(store.path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={store.synchronous}")
    started = time.perf_counter()
    for n in range(1, count + 1):
        now = datetime.now(UTC).isoformat()
        db.execute(
            SQLITE_INSERT,
            (run.run_id, n, now, "INFO", 20, MESSAGE.format(n), None, "bench", "floor"),
        )
    rate = count / (time.perf_counter() - started)
    db.close()
    store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    return rate


# -- PostgreSQL ---------------------------------------------------------------------------------
PG_INSERT = (
    "insert into runs_logs (run_id, seq, upload_id, service_name, timestamp, log_level,"
    " level_no, message, fields) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def _pg_floor(url: str, store: LogStore, count: int) -> float:
    """Lines/s of a bare psycopg INSERT per line, each committed (autocommit), prepared."""
    import psycopg

    run = store.create_run("bench", "floor")
    with psycopg.connect(url, autocommit=True, prepare_threshold=0) as conn:
        started = time.perf_counter()
        for n in range(1, count + 1):
            conn.execute(
                PG_INSERT,
                (
                    run.run_id,
                    n,
                    "bench",
                    "floor",
                    datetime.now(UTC),
                    "INFO",
                    20,
                    MESSAGE.format(n),
                    None,
                ),
            )
        rate = count / (time.perf_counter() - started)
    store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    return rate


@contextmanager
def pg_cluster(fsync: bool = True) -> Iterator[Any]:
    """The embedded PostgreSQL server with fsync on, as a user's server runs (the test
    fixture turns it off: ``fsync=False``), or None if it cannot start here."""
    try:
        from tests.pg import PgCluster
    except ImportError:
        yield None
        return
    with PgCluster.temporary() as cluster:
        with cluster.connect() as conn:
            conn.execute(f"alter system set fsync = {'on' if fsync else 'off'}")
            conn.execute(f"alter system set full_page_writes = {'on' if fsync else 'off'}")
            conn.execute("alter system set max_connections = 300")  # 100 writers + readers
        cluster.stop("fast")
        cluster.start()
        yield cluster


def pg_settings(url: str) -> str:
    """The settings that decide what a commit costs, as the server reports them."""
    import psycopg

    names = ("fsync", "synchronous_commit", "wal_sync_method", "max_connections")
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select name, setting from pg_settings where name = any(%s)", (list(names),)
        ).fetchall()
    got: dict[str, str] = {str(name): str(value) for name, value in rows}
    return ", ".join(f"{name}={got.get(name, '?')}" for name in names)


def _pg_append_rows(fsync: bool, count: int, rounds: int) -> list[Row]:
    """Per line on PostgreSQL beside psycopg's INSERT + commit; with fsync on (the default:
    each commit waits for the disk, which both pay alike) or off (the test fixture's setting:
    what is left is the cost of the append path itself)."""
    with pg_cluster(fsync) as cluster:
        if cluster is None:
            return [("durable append, per line, PostgreSQL", "not available", "", False)]
        from jobtail.store.migrate import apply_migrations
        from jobtail.store.postgres import PostgresStore

        url = cluster.url(cluster.create_database())
        apply_migrations(url)
        pg = PostgresStore(url, listen=False)
        floor, got = _best_of(
            rounds, lambda: _pg_floor(url, pg, count), lambda: _logger_rate(pg, count)
        )
        pg.close()
        ratio = floor / got
        return [
            (
                f"durable append, per line, PostgreSQL fsync={'on' if fsync else 'off'}"
                " (RunLogger.info)",
                f"{got:,.0f} lines/s, floor {ratio:.2f}x faster",
                "floor <= 2x",
                ratio <= 2,
            ),
            (
                f"  (floor: psycopg INSERT + commit per line; {pg_settings(url)})",
                f"{floor:,.0f} lines/s",
                "",
                True,
            ),
        ]


def append_rows(tmp: Path, count: int = 10_000, rounds: int = 3) -> list[Row]:
    store = SQLiteStore(tmp / "s.db")
    floor, got = _best_of(
        rounds, lambda: _sqlite_floor(store, count), lambda: _logger_rate(store, count)
    )
    store.close()
    ratio = floor / got
    rows: list[Row] = [
        (
            "durable append, per line, SQLite (RunLogger.info)",
            f"{got:,.0f} lines/s, floor {ratio:.2f}x faster",
            "floor <= 1.5x, >= 20,000/s",
            ratio <= 1.5 and got >= 20_000,
        ),
        (
            f"  (floor: sqlite3 INSERT + commit per line, synchronous={store.synchronous})",
            f"{floor:,.0f} lines/s",
            "",
            True,
        ),
    ]
    for fsync in (True, False):
        rows += _pg_append_rows(fsync, count // 10 if fsync else count // 5, rounds)
    return rows


# -- a writer inside the server, 100 viewers watching -----------------------------------------
RUN_KEY = ("bench", "fanout")  # the run bench.fanout's load clients view


def _write_for(store: LogStore, run_id: str, seconds: float) -> int:
    """Log per line, as fast as commits go, for ``seconds``; the lines committed."""
    logger = RunLogger(store, run_id)
    stop = time.monotonic() + seconds
    written = 0
    while time.monotonic() < stop:
        for _ in range(100):
            logger.info(f"t={time.time_ns()}")
        written += 100
    return written


def _answer(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def serve(data_dir: Path) -> None:
    """jobtail under uvicorn on ``data_dir/s.db`` with the run (started); stdin commands:
    ``subs`` (the run's subscribed viewers), ``write SECONDS`` (a RunLogger in a thread of this
    process), ``stats``, ``finish``."""
    import socket
    import threading

    import uvicorn

    from jobtail.config import Settings
    from jobtail.services import Services
    from jobtail.web.app import create_app

    store = SQLiteStore(data_dir / "s.db")
    run = store.create_run(*RUN_KEY)
    store.start_run(run.run_id)
    settings = Settings(data_dir=data_dir)
    app = create_app(services=Services.from_settings(settings, store=store))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", backlog=1024))

    def control() -> None:
        while not server.started:
            time.sleep(0.01)
        _answer({"port": sock.getsockname()[1], "run_id": run.run_id})
        for command in sys.stdin:
            words = command.split()
            if words[0] == "subs":
                follower = app.state.tailer._followers.get(run.run_id)
                _answer({"subs": len(follower.subscribers) if follower else 0})
            elif words[0] == "write":
                started = time.perf_counter()
                lines = _write_for(store, run.run_id, float(words[1]))
                _answer({"lines": lines, "seconds": time.perf_counter() - started})
            elif words[0] == "stats":
                _answer(process_stats())
            elif words[0] == "finish":
                store.finish_run(run.run_id, RunStatus.SUCCEEDED)
                _answer({"finished": True})
        server.should_exit = True

    threading.Thread(target=control, daemon=True).start()
    server.run(sockets=[sock])


def write(db: Path, run_id: str, seconds: float) -> None:
    """The same writer in a process of its own."""
    store = SQLiteStore(db)
    started = time.perf_counter()
    lines = _write_for(store, run_id, seconds)
    _answer({"lines": lines, "seconds": time.perf_counter() - started})
    store.close()


def _ask(proc: subprocess.Popen[str], command: str) -> dict[str, Any]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    return dict(json.loads(proc.stdout.readline()))


def _spawn(*args: str, stdin: bool = True) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["shared", "."])}
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        stdin=subprocess.PIPE if stdin else None,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def inserver_rows(
    tmp: Path, viewers: int = 100, seconds: float = 3.0, rounds: int = 2
) -> list[Row]:
    """Committed lines/s of a per-line writer in the server's process and in another, both
    while ``viewers`` SSE clients (raw sockets, another process) watch the run."""
    server = _spawn("bench.writers", "serve", str(tmp))
    clients: subprocess.Popen[str] | None = None
    inside = outside = 0.0
    try:
        assert server.stdout is not None
        hello = json.loads(server.stdout.readline())
        port, run_id = hello["port"], hello["run_id"]
        clients = _spawn("bench.fanout", "client", str(port), str(viewers), "300", stdin=False)
        assert clients.stdout is not None
        json.loads(clients.stdout.readline())  # every viewer has its status event
        while _ask(server, "subs")["subs"] < viewers:
            time.sleep(0.05)  # a benchmark's setup: the follower registers them
        for _ in range(rounds):
            got = _ask(server, f"write {seconds}")
            inside = max(inside, got["lines"] / got["seconds"])
            writer = _spawn("bench.writers", "write", str(tmp / "s.db"), run_id, str(seconds))
            assert writer.stdout is not None
            got = json.loads(writer.stdout.readline())
            writer.wait(30)
            outside = max(outside, got["lines"] / got["seconds"])
        _ask(server, "finish")
        report = json.loads(clients.stdout.readline())
        delays = sorted(report["latencies_us"])
        p99 = delays[int(len(delays) * 0.99)] / 1000 if delays else float("nan")
        seen = min(report["lines"]) if report["lines"] else 0
    finally:
        if clients is not None:
            try:
                clients.wait(30)
            except subprocess.TimeoutExpired:
                clients.kill()
                clients.wait()
        _stop(server)
    share = inside / outside if outside else 0.0
    return [
        (
            f"per-line writer in the server process, {viewers} viewers watching",
            f"{inside:,.0f} lines/s = {share:.0%} of out-of-process",
            ">= 50 % of out-of-process",
            share >= 0.5,
        ),
        (
            f"  (the same writer in another process, same SQLite file: {outside:,.0f} lines/s;"
            f" each viewer got {seen:,} lines, log->viewer p99 {p99:,.0f} ms)",
            "",
            "",
            True,
        ),
    ]


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "serve":
        serve(Path(sys.argv[2]))
    elif role == "write":
        write(Path(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            for name in sys.argv[1:]:
                figures: dict[str, Callable[[Path], list[Row]]] = {
                    "append": append_rows,
                    "inserver": inserver_rows,
                }
                for row in figures[name](Path(folder)):
                    print(row, flush=True)
