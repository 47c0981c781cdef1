"""The benchmark figures; each returns table rows ``(figure, measured, target, ok)``."""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from httpx_sse import connect_sse

from jobtail.config import Settings
from jobtail.logger import RunLogger
from jobtail.services import Services
from jobtail.store.base import LogLine, LogStore, RunStatus, utcnow
from jobtail.store.sqlite import SQLiteStore
from jobtail.tail import LinesEvent, Tailer
from jobtail.web.app import create_app
from tests.conftest import ServerThread

from .stats import rss_mb

Row = tuple[str, str, str, bool]


def _lines(start: int, count: int) -> list[LogLine]:
    now = utcnow()
    return [
        LogLine(seq, now, "INFO", f"line {seq} of the benchmark")
        for seq in range(start, start + count)
    ]


@contextmanager
def _postgres() -> Iterator[str | None]:
    """A fresh migrated database on the embedded server, or None if it cannot start here."""
    try:
        from jobtail.store.migrate import apply_migrations
        from tests.pg import PgCluster
    except ImportError:
        yield None
        return
    with PgCluster.temporary() as cluster:
        url = cluster.url(cluster.create_database())
        apply_migrations(url)
        yield url


def _batched_rate(store: LogStore, total: int = 200_000, batch: int = 1000) -> float:
    """Lines/s of store.append in batches (built beforehand: the caller's cost, not the
    store's); the best of three rounds, as timeit does, to see past a noisy neighbour."""
    rates = []
    for _ in range(3):
        run = store.create_run("bench", "batched")
        store.start_run(run.run_id)
        batches = [_lines(start, batch) for start in range(1, total + 1, batch)]
        started = time.perf_counter()
        for lines in batches:
            store.append(run.run_id, lines)
        rates.append(total / (time.perf_counter() - started))
        store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    return max(rates)


def _per_line_rate(
    store: LogStore, count: int = 10_000, write_behind: float | None = None
) -> float:
    """Lines/s of RunLogger.info, each committed before it returns (or, with write_behind,
    by the time close() returns); best of three rounds."""
    rates = []
    for _ in range(3):
        run = store.create_run("bench", "per-line")
        logger = RunLogger(store, run.run_id, write_behind=write_behind)
        started = time.perf_counter()
        for n in range(count):
            logger.info(f"line {n} of the benchmark")
        logger.close()
        rates.append(count / (time.perf_counter() - started))
        store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    return max(rates)


def append_rates(tmp: Path) -> list[Row]:
    """Per line beside the raw driver's INSERT + commit (``bench.writers``), then batched."""
    from . import writers

    rows = writers.append_rows(tmp)
    store = SQLiteStore(tmp / "s.db")
    behind = _per_line_rate(store, 100_000, write_behind=0.05)
    rows.append(("  (per line, RunLogger write_behind=0.05)", f"{behind:,.0f} lines/s", "", True))
    batched = _batched_rate(store)
    rows.append(
        (
            "durable append, batched, SQLite",
            f"{batched:,.0f} lines/s",
            ">= 200,000 lines/s",
            batched >= 200_000,
        )
    )
    store.close()
    with _postgres() as url:
        if url is None:
            rows.append(
                (
                    "durable append, batched, PostgreSQL",
                    "not available",
                    ">= 100,000 lines/s",
                    False,
                )
            )
        else:
            from jobtail.store.postgres import PostgresStore

            pg = PostgresStore.from_url(url)
            rate = _batched_rate(pg)
            pg.close()
            rows.append(
                (
                    "durable append, batched, PostgreSQL",
                    f"{rate:,.0f} lines/s",
                    ">= 100,000 lines/s",
                    rate >= 100_000,
                )
            )
    return rows


def _latencies(
    server_store: LogStore, writer_store: LogStore, tmp: Path, samples: int
) -> list[float]:
    """ms from log() starting to the SSE client holding the line, one line at a time."""
    services = Services.from_settings(Settings(data_dir=tmp), store=server_store)
    server = ServerThread(create_app(services=services)).start()
    run = writer_store.create_run("bench", "latency")
    writer_store.start_run(run.run_id)
    logger = RunLogger(writer_store, run.run_id)
    received = threading.Event()
    stamps: dict[int, int] = {}
    delays: list[float] = []

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            path = "/runs/bench/latency/logs"
            with connect_sse(http, "GET", path) as source:
                for event in source.iter_sse():
                    if event.event == "message" and event.data:
                        seq = json.loads(event.data)["seq"]
                        delays.append((time.perf_counter_ns() - stamps[seq]) / 1e6)
                        received.set()
                    elif event.event == "end":
                        return

    reader = threading.Thread(target=client)
    reader.start()
    while server_store.get_run(run.run_id) is None:
        pass
    time.sleep(0.5)  # benchmark warm-up (connection established), not synchronisation in a test
    for seq in range(1, samples + 1):
        received.clear()
        stamps[seq] = time.perf_counter_ns()
        logger.info(f"latency sample {seq}")
        if not received.wait(10):
            break
    writer_store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    reader.join(30)
    server.stop()
    return delays


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 2 else float("nan")


def sse_latency(tmp: Path) -> list[Row]:
    store = SQLiteStore(tmp / "s.db")
    embedded = _latencies(store, store, tmp, 1000)
    p50, p99 = _pct(embedded, 50), _pct(embedded, 99)
    rows: list[Row] = [
        (
            "log() to SSE client, embedded, p50 / p99",
            f"{p50:.2f} / {p99:.2f} ms",
            "<= 1 / <= 5 ms",
            p50 <= 1 and p99 <= 5,
        )
    ]
    other = SQLiteStore(tmp / "s.db")  # a writer in 'another process': only polling sees it
    polled = _latencies(SQLiteStore(tmp / "s.db"), other, tmp, 100)
    interval = store.poll_interval * 1000
    p99 = _pct(polled, 99)
    rows.append(
        (
            f"log() to SSE client, polling ({interval:.0f} ms), p99",
            f"{p99:.1f} ms",
            f"<= {interval + 10:.0f} ms",
            p99 <= interval + 10,
        )
    )
    with _postgres() as url:
        if url is not None:
            from jobtail.store.postgres import PostgresStore

            server_side, writer = PostgresStore.from_url(url), PostgresStore.from_url(url)
            notified = _latencies(server_side, writer, tmp, 500)
            p99 = _pct(notified, 99)
            rows.append(
                (
                    "log() to SSE client, PostgreSQL LISTEN/NOTIFY, p99",
                    f"{p99:.2f} ms",
                    "<= 10 ms",
                    p99 <= 10,
                )
            )
            writer.close()
            server_side.close()  # else its LISTEN thread outlives the database
    return rows


class _CountingStore(SQLiteStore):
    range_reads = 0

    def read(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.range_reads += 1
        return super().read(*args, **kwargs)


def many_viewers(tmp: Path, viewers: int = 1000, lines: int = 1000) -> list[Row]:
    store = _CountingStore(tmp / "s.db")
    run = store.create_run("bench", "viewers")
    logger = RunLogger(store, run.run_id)

    async def scenario() -> tuple[list[int], float]:
        tailer = Tailer(store)
        counts = [0] * viewers

        async def view(i: int) -> None:
            async for event in tailer.follow(run.run_id):
                if isinstance(event, LinesEvent):
                    counts[i] += len(event.lines)

        tasks = [asyncio.create_task(view(i)) for i in range(viewers)]
        while (
            tailer.follower_count == 0 or len(tailer._followers[run.run_id].subscribers) < viewers
        ):
            await asyncio.sleep(0.01)
        started = time.perf_counter()

        def write() -> None:
            for n in range(lines):
                logger.info(f"line {n}")
            store.finish_run(run.run_id, RunStatus.SUCCEEDED)

        await asyncio.to_thread(write)
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        return counts, time.perf_counter() - started

    counts, elapsed = asyncio.run(scenario())
    everyone = all(c == lines for c in counts)
    return [
        (
            f"{viewers:,} viewers of one run, one process",
            f"{'all' if everyone else 'NOT all'} lines; {store.range_reads} reads",
            f"every line; reads ~ lines ({lines})",
            everyone and store.range_reads <= 2 * lines,
        ),
        (f"  (fan-out of {lines:,} lines to {viewers:,} viewers)", f"{elapsed:.2f} s", "", True),
    ]


def late_replay(tmp: Path, total: int = 100_000) -> list[Row]:
    store = SQLiteStore(tmp / "s.db")
    run = store.create_run("bench", "replay")
    for start in range(1, total + 1, 5000):
        store.append(run.run_id, _lines(start, 5000))
    store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    server = ServerThread(
        create_app(services=Services.from_settings(Settings(data_dir=tmp), store=store))
    ).start()
    # a browser parses SSE natively; here a bytes-level split stands in for it, and the same
    # replay through httpx-sse (pure-Python parsing on the same 2 cores) is shown beside it
    started = time.perf_counter()
    count, tail = 0, b""
    with (
        httpx.Client(base_url=server.url, timeout=60) as http,
        http.stream("GET", "/runs/bench/replay/logs") as response,
    ):
        for chunk in response.iter_bytes():
            events = (tail + chunk).split(b"\n\n")
            tail = events.pop()
            count += sum(1 for e in events if e.startswith(b"id: ") and b"\nevent: " not in e)
    elapsed = time.perf_counter() - started
    parsed = 0
    started = time.perf_counter()
    with (
        httpx.Client(base_url=server.url, timeout=60) as http,
        connect_sse(http, "GET", "/runs/bench/replay/logs") as source,
    ):
        for event in source.iter_sse():
            if event.event == "message" and event.data:
                parsed += 1
            elif event.event == "end":
                break
    python_client = time.perf_counter() - started
    server.stop()
    ok = count == total and elapsed <= 2
    return [
        (
            f"late viewer replays a finished {total:,}-line run",
            f"{elapsed:.2f} s ({count:,} lines)",
            "<= 2 s",
            ok,
        ),
        (
            "  (same, parsed by httpx-sse in Python)",
            f"{python_client:.2f} s ({parsed:,} lines)",
            "",
            parsed == total,
        ),
    ]


def connect_churn(tmp: Path, cycles: int = 10_000) -> list[Row]:
    store = SQLiteStore(tmp / "s.db")
    run = store.create_run("bench", "churn")
    RunLogger(store, run.run_id).info("one line")
    services = Services.from_settings(Settings(data_dir=tmp), store=store)
    app = create_app(services=services)
    server = ServerThread(app).start()
    tailer: Tailer = app.state.tailer
    started = time.perf_counter()
    with httpx.Client(base_url=server.url, timeout=30) as http:

        def cycle() -> None:
            with connect_sse(http, "GET", "/runs/bench/churn/logs") as source:
                for event in source.iter_sse():
                    if event.event == "message":
                        break

        for _ in range(500):  # warm-up: allocator pools, caches
            cycle()
        gc.collect()
        before = rss_mb()
        loop = tailer._loop
        tasks_before = len(asyncio.all_tasks(loop)) if loop else -1
        for _ in range(cycles):
            cycle()
    deadline = time.monotonic() + 10
    while tailer.follower_count and time.monotonic() < deadline:
        time.sleep(0.01)
    gc.collect()
    growth = rss_mb() - before
    leftover = len(asyncio.all_tasks(loop)) - tasks_before if loop else -1
    elapsed = time.perf_counter() - started
    server.stop()
    ok = growth <= 10 and tailer.follower_count == 0 and leftover <= 0
    return [
        (
            f"{cycles:,} connect/disconnect cycles",
            f"RSS +{growth:.1f} MB, {tailer.follower_count} followers",
            "<= 10 MB, none leaked",
            ok,
        ),
        (f"  ({elapsed:.1f} s; server tasks: {leftover:+d} vs. before)", "", "", True),
    ]
