"""PostgreSQL under many writers: 100 runs, each logging line by line (each line committed
before ``log()`` returns), from writer processes, while a viewer process tails every run.

Figures: committed lines/s in total, and log -> viewer latency (the viewer's clock at receipt
minus the writer's clock in the line, both CLOCK_REALTIME on one machine). ``notify`` picks how
the SQL functions announce appends: ``every`` (each append NOTIFYs, as migration 0004 does),
``coalesced`` (0006: at most one NOTIFY per run per window; the tail polls the window's trailing
edge) or ``off`` (no NOTIFY at all: polling only). ``floor``: the same writers (processes x
threads) without jobtail, each thread a psycopg connection doing ``INSERT`` + commit per line
into a plain table (no index, no run row, no viewer): what this machine's server commits at all.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARK = "t="


def writer(url: str, run_ids: list[str], seconds: float) -> None:
    """One thread per run, logging per line until ``seconds`` after "go" on stdin."""
    from jobtail.logger import RunLogger
    from jobtail.store.postgres import PostgresStore

    store = PostgresStore(url, max_size=len(run_ids) + 1, listen=False)
    counts = [0] * len(run_ids)
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    stop = time.monotonic() + seconds

    def log(i: int, run_id: str) -> None:
        logger = RunLogger(store, run_id)
        while time.monotonic() < stop:
            logger.info(f"{MARK}{time.time_ns()}")
            counts[i] += 1

    _each_run(log, run_ids)
    print(json.dumps({"lines": sum(counts)}), flush=True)
    store.close()


def _each_run(log: Callable[[int, str], None], run_ids: list[str]) -> None:
    """``log(i, run_id)`` in a thread per run, all at once; returns when every one is done."""
    threads = [threading.Thread(target=log, args=(i, r)) for i, r in enumerate(run_ids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


FLOOR_TABLE = "bench_floor"
FLOOR_INSERT = (
    f'insert into {FLOOR_TABLE} (run_id, seq, "timestamp", log_level, message)'
    " values (%s, %s, %s, %s, %s)"
)


def floor_writer(url: str, run_ids: list[str], seconds: float) -> None:
    """``writer``'s layout without jobtail: a connection per thread, INSERT + commit per line."""
    from datetime import UTC, datetime

    import psycopg

    conns = [psycopg.connect(url, autocommit=True, prepare_threshold=0) for _ in run_ids]
    counts = [0] * len(run_ids)
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    stop = time.monotonic() + seconds

    def log(i: int, run_id: str) -> None:
        conn, seq = conns[i], 0
        while time.monotonic() < stop:
            seq += 1
            stamp = datetime.now(UTC)
            conn.execute(FLOOR_INSERT, (run_id, seq, stamp, "INFO", f"{MARK}{time.time_ns()}"))
            counts[i] += 1

    _each_run(log, run_ids)
    print(json.dumps({"lines": sum(counts)}), flush=True)
    for conn in conns:
        conn.close()


def viewer(url: str, run_ids: list[str], seconds: float) -> None:
    """Tail every run through one Tailer (as one server process would); report latencies."""
    import faulthandler

    from jobtail.store.postgres import PostgresStore
    from jobtail.tail import EncodedLinesEvent, Tailer

    faulthandler.dump_traceback_later(seconds + 30, exit=True)  # never hang the benchmark
    store = PostgresStore(url, max_size=20)
    latencies: list[int] = []

    async def main() -> None:
        tailer = Tailer(store)

        async def follow(run_id: str) -> None:
            framing_ = _framing()
            async for event in tailer.follow(run_id, framing=framing_):
                if isinstance(event, EncodedLinesEvent):
                    now = time.time_ns()
                    data = event.data
                    at = data.find(b'"message":"t=')
                    while at >= 0:
                        start = at + 13
                        stamp = int(data[start : data.index(b'"', start)])
                        latencies.append((now - stamp) // 1000)
                        at = data.find(b'"message":"t=', start)

        tasks = [asyncio.create_task(follow(run_id)) for run_id in run_ids]
        assert len(tasks) == len(run_ids)  # referenced, so none is collected
        while tailer.follower_count < len(run_ids):
            await asyncio.sleep(0.05)  # waiting for the followers to start: a benchmark's setup
        print(json.dumps({"ready": True}), flush=True)
        await asyncio.sleep(seconds + 2)
        print(json.dumps({"latencies_us": latencies}), flush=True)
        os._exit(0)  # a benchmark process: no orderly close of 100 live tails needed

    asyncio.run(main())


def _framing() -> Any:
    from jobtail.store.base import Framing

    return Framing(None, "", "\n")


@dataclass
class Result:
    notify: str
    writers: int
    lines_per_s: float
    p50_ms: float
    p99_ms: float
    seen: int


def measure(
    url: str, notify: str, writers: int = 100, seconds: float = 5.0, procs: int = 4
) -> Result:
    from jobtail.store.postgres import PostgresStore

    if notify == "floor":
        return _measure_floor(url, writers, seconds, procs)
    store = PostgresStore(url, listen=False)
    with store._pool.connection() as conn:  # the bench's own switch, on this database only
        conn.execute("select set_config('jobtail.notify', %s, false)", (notify,))
        dbname = conn.execute("select current_database()").fetchone()[0]  # type: ignore[index]
        conn.execute(f"alter database {dbname} set jobtail.notify = '{notify}'")
    run_ids = []
    for n in range(writers):
        run = store.create_run("bench", f"w{n}")
        store.start_run(run.run_id)
        run_ids.append(run.run_id)
    store.close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["shared", "."])}
    python = sys.executable
    ids = ",".join(run_ids)
    watcher = subprocess.Popen(
        [python, "-m", "bench.pgwriters", "viewer", url, ids, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    shares = [run_ids[i::procs] for i in range(procs)]
    workers = _spawn_writers("writer", url, shares, seconds)
    try:
        assert watcher.stdout is not None
        json.loads(watcher.stdout.readline())
        total, elapsed = _run_writers(workers)
        latencies = json.loads(watcher.stdout.readline())["latencies_us"]
    finally:
        for proc in [*workers, watcher]:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    ms = sorted(value / 1000 for value in latencies)
    cut = statistics.quantiles(ms, n=100) if len(ms) > 2 else [float("nan")] * 99
    return Result(notify, writers, total / elapsed, cut[49], cut[98], len(ms))


def _spawn_writers(
    role: str, url: str, shares: list[list[str]], seconds: float
) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["shared", "."])}
    return [
        subprocess.Popen(
            [sys.executable, "-m", "bench.pgwriters", role, url, ",".join(share), str(seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for share in shares
    ]


def _run_writers(workers: list[subprocess.Popen[str]]) -> tuple[int, float]:
    """Wait for every writer to be ready, start them together: (lines written, seconds)."""
    for proc in workers:
        assert proc.stdout is not None
        json.loads(proc.stdout.readline())
    started = time.monotonic()
    for proc in workers:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    total = 0
    for proc in workers:
        assert proc.stdout is not None
        total += json.loads(proc.stdout.readline())["lines"]
    return total, time.monotonic() - started


def _measure_floor(url: str, writers: int, seconds: float, procs: int) -> Result:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"create table if not exists {FLOOR_TABLE} (run_id text, seq bigint,"
            ' "timestamp" timestamptz, log_level text, message text)'
        )
    run_ids = [f"floor{n}" for n in range(writers)]
    workers = _spawn_writers("floor", url, [run_ids[i::procs] for i in range(procs)], seconds)
    try:
        total, elapsed = _run_writers(workers)
    finally:
        for proc in workers:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    nan = float("nan")
    return Result("floor", writers, total / elapsed, nan, nan, 0)


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "writer":
        writer(sys.argv[2], sys.argv[3].split(","), float(sys.argv[4]))
    elif role == "floor":
        floor_writer(sys.argv[2], sys.argv[3].split(","), float(sys.argv[4]))
    elif role == "viewer":
        viewer(sys.argv[2], sys.argv[3].split(","), float(sys.argv[4]))
    else:
        sys.path[:0] = ["."]
        from jobtail.store.migrate import apply_migrations
        from tests.pg import PgCluster

        with PgCluster.temporary() as cluster:
            with cluster.connect() as conn:
                conn.execute("alter system set max_connections = 300")
            cluster.stop("fast")
            cluster.start()
            for mode in sys.argv[1:]:
                url = cluster.url(cluster.create_database())
                apply_migrations(url)
                print(measure(url, mode), flush=True)
    _ = Path
