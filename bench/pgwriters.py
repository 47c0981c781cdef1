"""PostgreSQL under many writers: 100 runs, each logging line by line (each line committed
before ``log()`` returns), from writer processes, while a viewer process tails every run.

Figures: committed lines/s in total, and log -> viewer latency (the viewer's clock at receipt
minus the writer's clock in the line, both CLOCK_REALTIME on one machine). ``notify`` picks how
the SQL functions announce appends: ``every`` (each append NOTIFYs, as migration 0004 does),
``coalesced`` (0006: at most one NOTIFY per run per window; the tail polls the window's trailing
edge) or ``off`` (no NOTIFY at all: polling only). ``floor``: the same writers (processes x
threads) without jobtail, each thread a psycopg connection doing ``INSERT`` + commit per line
into a plain table (no index, no run row, no viewer): what this machine's server commits at all.
``rate`` paces each writer at that many lines/s (0: flat out), so latency is measured below
saturation: flat out, the machine's CPU is the queue every line waits in.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARK = "t="


def writer(url: str, run_ids: list[str], seconds: float, rate: float = 0.0) -> None:
    """One thread per run, logging per line (``rate`` lines/s each, 0: flat out) until
    ``seconds`` after "go" on stdin."""
    from jobtail.logger import RunLogger
    from jobtail.store.postgres import PostgresStore

    store = PostgresStore(url, max_size=len(run_ids) + 1, listen=False)
    loggers = [RunLogger(store, run_id) for run_id in run_ids]

    def prime(i: int) -> None:
        # Unmeasured (no MARK, the viewer skips it): the pool opens this thread's connection
        # now, not in the first second of the figure.
        loggers[i].info("warm")

    commits: list[int] = []  # how long each log() took, µs: the commit's share of the latency

    def log(i: int, stop: float) -> int:
        count = 0
        for _ in _ticks(stop, rate, random.Random(run_ids[i]).random()):
            sent = time.time_ns()
            loggers[i].info(f"{MARK}{sent}")
            commits.append((time.time_ns() - sent) // 1000)
            count += 1
        return count

    total = _each_run(prime, log, len(run_ids), seconds)
    print(json.dumps({"lines": total, "commit_us": commits}), flush=True)
    store.close()


def _ticks(stop: float, rate: float, phase: float) -> Iterator[None]:
    """Yields until ``stop``: at once each time (``rate`` 0), or every 1/``rate`` s from
    ``phase`` (0-1) of the first interval, so 100 runs do not log in lockstep. A line that
    falls late is not made up in a burst: the next is due one interval after it."""
    if rate <= 0:
        while time.monotonic() < stop:
            yield
        return
    period = 1.0 / rate
    due = time.monotonic() + phase * period
    while due < stop:
        # The workload's pace (a job logging `rate` lines/s), not synchronisation.
        time.sleep(max(0.0, due - time.monotonic()))
        yield
        due = max(due + period, time.monotonic())


def _each_run(
    prime: Callable[[int], None], log: Callable[[int, float], int], runs: int, seconds: float
) -> int:
    """A thread per run: ``prime(i)``; once all have, "ready" on stdout; on "go" from stdin,
    ``log(i, stop)`` in all at once until ``seconds`` later. Returns the lines they logged."""
    primed, go = threading.Barrier(runs + 1), threading.Event()
    stop: list[float] = []
    counts = [0] * runs

    def run(i: int) -> None:
        prime(i)
        primed.wait(60)
        go.wait(120)
        counts[i] = log(i, stop[0])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(runs)]
    for thread in threads:
        thread.start()
    primed.wait(60)
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    stop.append(time.monotonic() + seconds)
    go.set()
    for thread in threads:
        thread.join()
    return sum(counts)


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

    def log(i: int, stop: float) -> int:
        conn, seq = conns[i], 0
        while time.monotonic() < stop:
            seq += 1
            stamp = datetime.now(UTC)
            conn.execute(FLOOR_INSERT, (run_ids[i], seq, stamp, "INFO", f"{MARK}{time.time_ns()}"))
        return seq

    total = _each_run(lambda i: None, log, len(run_ids), seconds)
    print(json.dumps({"lines": total}), flush=True)
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
    lines: int = 0
    max_ms: float = float("nan")
    cores: float = float("nan")  # CPU the bench's processes and the server used, in cores
    commit_p50_ms: float = float("nan")  # log() until it returned (the line committed)
    commit_p99_ms: float = float("nan")


def measure(
    url: str,
    notify: str,
    writers: int = 100,
    seconds: float = 5.0,
    procs: int = 4,
    rate: float = 0.0,
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
    workers = _spawn_writers("writer", url, shares, seconds, rate)
    try:
        assert watcher.stdout is not None
        json.loads(watcher.stdout.readline())
        total, elapsed, cores, commits = _run_writers(workers, [watcher.pid, _server_pid(url)])
        latencies = json.loads(watcher.stdout.readline())["latencies_us"]
    finally:
        for proc in [*workers, watcher]:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    ms = sorted(value / 1000 for value in latencies)
    cut, commit = _percentiles(ms), _percentiles(sorted(us / 1000 for us in commits))
    top = max(ms, default=float("nan"))
    result = Result(notify, writers, total / elapsed, cut[49], cut[98], len(ms), total, top, cores)
    result.commit_p50_ms, result.commit_p99_ms = commit[49], commit[98]
    return result


def _percentiles(ms: list[float]) -> list[float]:
    return statistics.quantiles(ms, n=100) if len(ms) > 2 else [float("nan")] * 99


def _cpu_seconds(roots: list[int]) -> float:
    """CPU time of these processes and their descendants, live or reaped (Linux's /proc; 0
    elsewhere): the writers, the viewer and the PostgreSQL server with its backends."""
    parents: dict[int, int] = {}
    times: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        pid = int(entry.parent.name)
        parents[pid] = int(fields[1])
        times[pid] = sum(int(n) for n in fields[11:15])  # utime stime cutime cstime
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    total, todo, seen = 0, [pid for pid in roots if pid in times], set(roots)
    while todo:
        pid = todo.pop()
        total += times[pid]
        todo += [child for child in children.get(pid, []) if child not in seen]
        seen.update(children.get(pid, []))
    return total / os.sysconf("SC_CLK_TCK")


def _server_pid(url: str) -> int:
    """The PostgreSQL server's process: the parent of a backend's."""
    import psycopg

    with psycopg.connect(url) as conn:  # the backend lives as long as the connection
        backend = conn.execute("select pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        try:
            return int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            return 0


def _spawn_writers(
    role: str, url: str, shares: list[list[str]], seconds: float, rate: float = 0.0
) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["shared", "."])}
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.pgwriters",
                role,
                url,
                ",".join(share),
                str(seconds),
                str(rate),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for share in shares
    ]


def _run_writers(
    workers: list[subprocess.Popen[str]], others: list[int]
) -> tuple[int, float, float, list[int]]:
    """Wait for every writer to be ready, start them together: (lines written, seconds, cores
    the writers and the ``others`` processes used meanwhile, how long each log() took in µs)."""
    roots = [proc.pid for proc in workers] + others
    for proc in workers:
        assert proc.stdout is not None
        json.loads(proc.stdout.readline())
    started, before = time.monotonic(), _cpu_seconds(roots)
    for proc in workers:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    total, commits = 0, list[int]()
    for proc in workers:
        assert proc.stdout is not None
        got = json.loads(proc.stdout.readline())
        total += got["lines"]
        commits += got.get("commit_us", [])
    elapsed = time.monotonic() - started
    return total, elapsed, (_cpu_seconds(roots) - before) / elapsed, commits


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
        total, elapsed, cores, _commits = _run_writers(workers, [_server_pid(url)])
    finally:
        for proc in workers:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    nan = float("nan")
    return Result("floor", writers, total / elapsed, nan, nan, 0, total, nan, cores)


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "writer":
        writer(sys.argv[2], sys.argv[3].split(","), float(sys.argv[4]), float(sys.argv[5]))
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
            for mode in sys.argv[1:]:  # e.g. floor coalesced coalesced:10 (10 lines/s per run)
                url = cluster.url(cluster.create_database())
                apply_migrations(url)
                notify, _sep, rate = mode.partition(":")
                print(measure(url, notify, rate=float(rate or 0)), flush=True)
