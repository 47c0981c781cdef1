"""Tailer: replay from a cursor, then follow; shared followers; nothing leaks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
import pytest

from jobtail.logger import RunLogger
from jobtail.store.base import RunStatus
from jobtail.store.sqlite import SQLiteStore
from jobtail.tail import EndEvent, LinesEvent, StatusEvent, Tailer, TailEvent, WindowEndEvent

from .waiting import wait_for_async as wait_until

pytestmark = pytest.mark.anyio


class CountingStore(SQLiteStore):
    """A real SQLite store that counts the range reads made of it."""

    range_reads = 0

    def read(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def, override]
        self.range_reads += 1
        return super().read(*args, **kwargs)  # type: ignore[arg-type]


async def collect(events: AsyncIterator[TailEvent]) -> list[TailEvent]:
    with anyio.fail_after(10):
        return [event async for event in events]


def seqs(events: list[TailEvent]) -> list[int]:
    return [line.seq for e in events if isinstance(e, LinesEvent) for line in e.lines]


async def write(logger: RunLogger, *messages: str, level: str = "INFO") -> None:
    for message in messages:
        await anyio.to_thread.run_sync(logger.log, level, message)


async def test_live_viewer_gets_every_line_then_the_end(sqlite_store: SQLiteStore) -> None:
    run = sqlite_store.create_run("up", "svc")
    tailer = Tailer(sqlite_store)
    logger = RunLogger(sqlite_store, run.run_id)
    events: list[TailEvent] = []

    async def view() -> None:
        events.extend(await collect(tailer.follow(run.run_id)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(view)
        await wait_until(lambda: tailer.followers == 1)
        sqlite_store.start_run(run.run_id)
        await write(logger, *(f"line {n}" for n in range(1, 201)))
        await anyio.to_thread.run_sync(sqlite_store.finish_run, run.run_id, RunStatus.SUCCEEDED)
    assert isinstance(events[0], StatusEvent) and events[0].run.status is RunStatus.QUEUED
    assert [e.run.status for e in events if isinstance(e, StatusEvent)][1:] == [
        RunStatus.RUNNING,
        RunStatus.SUCCEEDED,
    ]
    assert seqs(events) == list(range(1, 201))
    assert isinstance(events[-1], EndEvent) and events[-1].run.last_seq == 200
    assert tailer.followers == 0


async def test_late_viewer_replays_a_finished_run_without_a_follower(
    sqlite_store: SQLiteStore,
) -> None:
    run = sqlite_store.create_run("up", "svc")
    logger = RunLogger(sqlite_store, run.run_id)
    for n in range(2500):
        logger.info(f"n{n}")
    sqlite_store.finish_run(run.run_id, RunStatus.FAILED, error="boom")
    tailer = Tailer(sqlite_store, batch=1000)
    events = await collect(tailer.follow(run.run_id))
    assert seqs(events) == list(range(1, 2501))
    assert isinstance(events[-1], EndEvent) and events[-1].run.error == "boom"
    resumed = await collect(tailer.follow(run.run_id, after=2400))
    assert seqs(resumed) == list(range(2401, 2501))
    assert tailer.followers == 0


async def test_level_filter_keeps_the_global_seq(sqlite_store: SQLiteStore) -> None:
    run = sqlite_store.create_run("up", "svc")
    logger = RunLogger(sqlite_store, run.run_id)
    tailer = Tailer(sqlite_store)
    events: list[TailEvent] = []

    async def view() -> None:
        events.extend(await collect(tailer.follow(run.run_id, min_level="WARNING")))

    logger.debug("replayed debug")
    logger.error("replayed error")
    async with anyio.create_task_group() as tg:
        tg.start_soon(view)
        await wait_until(lambda: tailer.followers == 1)
        await write(logger, "live info")
        await write(logger, "live warning", level="WARNING")
        await anyio.to_thread.run_sync(sqlite_store.finish_run, run.run_id, RunStatus.SUCCEEDED)
    assert seqs(events) == [2, 4]
    assert isinstance(events[-1], EndEvent) and events[-1].run.last_seq == 4


async def test_ten_viewers_share_one_follower_and_its_reads(tmp_path: object) -> None:
    async def run_with(viewers: int) -> tuple[list[list[int]], int]:
        store = CountingStore(tmp_path / f"s{viewers}.db")  # type: ignore[operator]
        store.poll_interval = 60  # only wake-ups, so reads are comparable
        run = store.create_run("up", "svc")
        tailer = Tailer(store)
        logger = RunLogger(store, run.run_id)
        got: list[list[TailEvent]] = [[] for _ in range(viewers)]

        async def view(i: int) -> None:
            async for event in tailer.follow(run):
                got[i].append(event)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for i in range(viewers):
                    tg.start_soon(view, i)
                await wait_until(
                    lambda: (
                        tailer.followers == 1
                        and len(tailer._followers[run.run_id].subscribers) == viewers
                    )
                )
                for n in range(1, 51):
                    await write(logger, f"line {n}")
                    await wait_until(lambda n=n: all(seqs(g)[-1:] == [n] for g in got))
                await anyio.to_thread.run_sync(store.finish_run, run.run_id, RunStatus.SUCCEEDED)
        store.close()
        return [seqs(g) for g in got], store.range_reads

    one, reads_one = await run_with(1)
    ten, reads_ten = await run_with(10)
    assert one == [list(range(1, 51))]
    assert ten == [list(range(1, 51))] * 10
    assert reads_one <= 2 * 50 and reads_ten <= reads_one + 1, (reads_one, reads_ten)


async def test_disconnected_viewer_releases_its_follower(sqlite_store: SQLiteStore) -> None:
    run = sqlite_store.create_run("up", "svc")
    tailer = Tailer(sqlite_store)
    for _ in range(100):
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, tailer.follow(run.run_id))
            await wait_until(lambda: tailer.followers == 1)
            tg.cancel_scope.cancel()  # the client goes away
        assert tailer.followers == 0
    await wait_until(lambda: not _tasks_named("_run_follower"))


async def test_window_closes_with_the_cursor_to_resume_from(sqlite_store: SQLiteStore) -> None:
    run = sqlite_store.create_run("up", "svc")
    RunLogger(sqlite_store, run.run_id).info("only line")
    events = await collect(Tailer(sqlite_store).follow(run.run_id, window=0.05))
    assert seqs(events) == [1]
    assert events[-1] == WindowEndEvent(1)


async def test_a_lagging_viewer_is_resynced_from_the_store(sqlite_store: SQLiteStore) -> None:
    run = sqlite_store.create_run("up", "svc")
    tailer = Tailer(sqlite_store, queue_size=3, buffer_lines=5)
    logger = RunLogger(sqlite_store, run.run_id)
    events: list[TailEvent] = []
    reading = anyio.Event()

    async def slow_viewer() -> None:
        async for event in tailer.follow(run.run_id):
            events.append(event)
            if isinstance(event, LinesEvent) and event.lines[-1].seq == 1:
                await reading.wait()  # stalls while 40 more lines arrive

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow_viewer)
        await wait_until(lambda: tailer.followers == 1)
        await write(logger, "n1")
        await wait_until(lambda: seqs(events) == [1])
        await write(logger, *(f"n{n}" for n in range(2, 42)))
        await wait_until(lambda: tailer._followers[run.run_id].cursor == 41)
        await anyio.to_thread.run_sync(sqlite_store.finish_run, run.run_id, RunStatus.SUCCEEDED)
        reading.set()
    assert seqs(events) == list(range(1, 42)) and isinstance(events[-1], EndEvent)


def _tasks_named(name: str) -> list[object]:
    import asyncio

    return [t for t in asyncio.all_tasks() if name in repr(t.get_coro())]


async def test_a_window_also_bounds_a_long_replay(sqlite_store: SQLiteStore) -> None:
    run = sqlite_store.create_run("up", "svc")
    logger = RunLogger(sqlite_store, run.run_id)
    for n in range(2500):
        logger.info(f"n{n}")
    sqlite_store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    tailer = Tailer(sqlite_store, batch=1000)
    cursor, windows, got = 0, 0, []
    while True:
        events = await collect(tailer.follow(run.run_id, after=cursor, window=0.0))
        windows += 1
        got += seqs(events)
        if isinstance(events[-1], EndEvent):
            break
        assert isinstance(events[-1], WindowEndEvent)
        cursor = events[-1].cursor
    assert got == list(range(1, 2501)) and windows == 3
