"""Tailer: replay from a cursor, then follow; shared followers; nothing leaks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.to_thread
import pytest

from jobtail.logger import RunLogger
from jobtail.store.base import RunNotFoundError, RunStatus
from jobtail.store.sqlite import SQLiteStore
from jobtail.tail import (
    EndEvent,
    LinesEvent,
    StatusEvent,
    StoreDownEvent,
    Tailer,
    TailEvent,
    WindowEndEvent,
)

from .faults.flaky import FlakyStore
from .waiting import wait_for_async as wait_until

pytestmark = pytest.mark.anyio


class CountingStore(SQLiteStore):
    """A real SQLite store that counts the range reads made of it."""

    range_reads = 0

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.read_cursors: list[int] = []  # the ``after`` of each range read, in order

    def read(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def, override]
        self.range_reads += 1
        after = kwargs.get("after", args[1] if len(args) > 1 else 0)
        self.read_cursors.append(int(after))  # type: ignore[call-overload]
        return super().read(*args, **kwargs)  # type: ignore[arg-type]


async def collect(events: AsyncIterator[TailEvent]) -> list[TailEvent]:
    with anyio.fail_after(10):
        return [event async for event in events]


async def gather(into: list[TailEvent], events: AsyncIterator[TailEvent]) -> None:
    """Like ``collect``, but the test sees each event as it arrives."""
    with anyio.fail_after(10):
        async for event in events:
            into.append(event)


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
        await wait_until(lambda: tailer.follower_count == 1)
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
    assert tailer.follower_count == 0


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
    assert tailer.follower_count == 0


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
        await wait_until(lambda: tailer.follower_count == 1)
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
                        tailer.follower_count == 1
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
            await wait_until(lambda: tailer.follower_count == 1)
            tg.cancel_scope.cancel()  # the client goes away
        assert tailer.follower_count == 0
    await wait_until(lambda: not _tasks_named("run_follower"))


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
        await wait_until(lambda: tailer.follower_count == 1)
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


async def test_a_window_also_bounds_the_replay_of_a_live_run(sqlite_store: SQLiteStore) -> None:
    """A viewer far behind a run still going: its window closes after the first batch of the
    replay, with that batch's last seq as the cursor."""
    run = sqlite_store.create_run("up", "svc")
    sqlite_store.start_run(run.run_id)
    logger = RunLogger(sqlite_store, run.run_id)
    for n in range(2500):
        logger.info(f"n{n}")
    events = await collect(Tailer(sqlite_store, batch=1000).follow(run.run_id, window=0.0))
    assert [type(e) for e in events] == [StatusEvent, LinesEvent, WindowEndEvent]
    assert seqs(events) == list(range(1, 1001)) and events[-1] == WindowEndEvent(1000)
    await wait_until(lambda: not _tasks_named("run_follower"))  # its poll thread too


# -- a store that fails: followers survive it, or end their viewers so they resume ----------


@pytest.fixture
def flaky(tmp_path: object) -> Iterator[FlakyStore]:
    store = FlakyStore(tmp_path / "flaky.db")  # type: ignore[operator]
    yield store
    store.close()


def downs(events: list[TailEvent]) -> list[StoreDownEvent]:
    return [e for e in events if isinstance(e, StoreDownEvent)]


async def test_one_failed_poll_is_retried_for_live_and_late_viewers(flaky: FlakyStore) -> None:
    run = flaky.create_run("up", "svc")
    flaky.start_run(run.run_id)
    tailer = Tailer(flaky, retry_first=0.01)
    logger = RunLogger(flaky, run.run_id)
    live: list[TailEvent] = []

    async def view(into: list[TailEvent]) -> None:
        await gather(into, tailer.follow(run.run_id))

    late: list[TailEvent] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(view, live)
        await wait_until(lambda: tailer.follower_count == 1)
        await write(logger, *(f"a{n}" for n in range(1, 5)))
        await wait_until(lambda: seqs(live)[-1:] == [4])
        flaky.fail_polls = 1
        await write(logger, *(f"b{n}" for n in range(5, 101)))
        await wait_until(lambda: flaky.fail_polls == 0)
        await anyio.to_thread.run_sync(flaky.finish_run, run.run_id, RunStatus.SUCCEEDED)
        tg.start_soon(view, late)  # joins the follower, or replays the finished run
    for events in (live, late):
        assert seqs(events) == list(range(1, 101))
        assert isinstance(events[-1], EndEvent) and events[-1].run.last_seq == 100
    assert [(e.attempt, e.run and e.run.run_id) for e in downs(live)] == [(1, run.run_id)]
    assert tailer.follower_count == 0


async def test_a_store_down_for_a_while_is_waited_out(flaky: FlakyStore) -> None:
    run = flaky.create_run("up", "svc")
    flaky.start_run(run.run_id)
    tailer = Tailer(flaky, retry_first=0.01, retry_max=0.05, give_up_after=10)
    logger = RunLogger(flaky, run.run_id)
    live: list[TailEvent] = []
    late: list[TailEvent] = []

    async def view(into: list[TailEvent], after: int = 0) -> None:
        await gather(into, tailer.follow(run.run_id, after=after))

    async with anyio.create_task_group() as tg:
        tg.start_soon(view, live)
        await wait_until(lambda: tailer.follower_count == 1)
        await write(logger, "before")
        await wait_until(lambda: seqs(live) == [1])
        flaky.down = True
        await write(logger, *(f"during {n}" for n in range(2, 51)))  # writes go on: reads fail
        tg.start_soon(view, late)  # a viewer arriving while the store is down
        await wait_until(lambda: len(downs(live)) >= 5 and flaky.failures >= 6)
        flaky.down = False
        await write(logger, "after")
        await anyio.to_thread.run_sync(flaky.finish_run, run.run_id, RunStatus.SUCCEEDED)
    assert seqs(live) == list(range(1, 52)) and isinstance(live[-1], EndEvent)
    assert seqs(late) == list(range(1, 52)) and isinstance(late[-1], EndEvent)
    attempts = [e.attempt for e in downs(live)]
    assert attempts == list(range(1, len(attempts) + 1))
    assert all(e.retry_in <= 0.05 for e in downs(live))


async def test_a_follower_that_gives_up_ends_its_viewers_with_a_cursor(
    flaky: FlakyStore, caplog: pytest.LogCaptureFixture
) -> None:
    run = flaky.create_run("up", "svc")
    flaky.start_run(run.run_id)
    tailer = Tailer(flaky, retry_first=0.01, retry_max=0.02, give_up_after=0.2)
    logger = RunLogger(flaky, run.run_id)
    first: list[TailEvent] = []

    async def view() -> None:
        await gather(first, tailer.follow(run.run_id))

    async with anyio.create_task_group() as tg:
        tg.start_soon(view)
        await wait_until(lambda: tailer.follower_count == 1)
        await write(logger, "one", "two", "three")
        await wait_until(lambda: seqs(first) == [1, 2, 3])
        flaky.down = True
        await write(logger, "four")
    delivered = seqs(first)  # a poll already under way when the store went down may see "four"
    assert delivered in ([1, 2, 3], [1, 2, 3, 4]), delivered
    assert first[-1] == WindowEndEvent(delivered[-1]) and downs(first)
    assert tailer.follower_count == 0  # unregistered: nobody subscribes to a dead follower
    assert not _tasks_named("run_follower")
    gave_up = [m for m in caplog.messages if m.startswith("follower of run")]
    assert gave_up == [f"follower of run {run.run_id} gives up: store down: injected: store down"]
    # the viewer resumes by cursor once the store is back, and a late viewer comes too
    flaky.down = False
    await write(logger, "five")
    await anyio.to_thread.run_sync(flaky.finish_run, run.run_id, RunStatus.FAILED)
    resumed = await collect(tailer.follow(run.run_id, after=delivered[-1]))
    late = await collect(tailer.follow(run.run_id))
    assert seqs(resumed) == list(range(delivered[-1] + 1, 6))
    assert isinstance(resumed[-1], EndEvent)
    assert seqs(late) == [1, 2, 3, 4, 5] and isinstance(late[-1], EndEvent)


async def test_a_viewer_whose_own_reads_keep_failing_ends_with_its_cursor(
    flaky: FlakyStore,
) -> None:
    run = flaky.create_run("up", "svc")
    logger = RunLogger(flaky, run.run_id)
    for n in range(10):
        logger.info(f"n{n}")
    flaky.finish_run(run.run_id, RunStatus.SUCCEEDED)
    tailer = Tailer(flaky, batch=4, retry_first=0.01, retry_max=0.02, give_up_after=0.2)
    flaky.fail_reads = 1  # one failed replay read: retried
    events = await collect(tailer.follow(run.run_id))
    assert seqs(events) == list(range(1, 11)) and len(downs(events)) == 1
    assert isinstance(events[-1], EndEvent)
    flaky.down = True  # the store is gone for good before the run was even read
    events = await collect(tailer.follow(run.run_id, after=6))
    assert events[-1] == WindowEndEvent(6) and all(e.run is None for e in downs(events))


async def test_a_second_viewer_replays_the_followers_buffer_then_follows(
    tmp_path: object,
) -> None:
    store = CountingStore(tmp_path / "buffer.db")  # type: ignore[operator]
    store.poll_interval = 60  # wake-ups only, so every range read is accounted for
    run = store.create_run("up", "svc")
    store.start_run(run.run_id)
    tailer = Tailer(store)
    logger = RunLogger(store, run.run_id)
    first: list[TailEvent] = []
    second: list[TailEvent] = []

    async def view(into: list[TailEvent], after: int = 0) -> None:
        await gather(into, tailer.follow(run.run_id, after=after))

    async with anyio.create_task_group() as tg:
        tg.start_soon(view, first)
        await wait_until(lambda: tailer.follower_count == 1)
        await write(logger, *(f"line {n}" for n in range(1, 6)))
        follower = tailer._followers[run.run_id]
        await wait_until(lambda: [line.seq for line in follower.buffer] == [1, 2, 3, 4, 5])
        mark = len(store.read_cursors)
        tg.start_soon(view, second, 2)
        await wait_until(lambda: len(follower.subscribers) == 2)
        await wait_until(lambda: seqs(second) == [3, 4, 5])
        # 3, 4, 5 came from the follower's buffer: no read from the second viewer's cursor
        # (the follower itself may still poll from its own position, 5, on a late wake-up)
        assert all(after >= 5 for after in store.read_cursors[mark:]), store.read_cursors
        await write(logger, "line 6", "line 7")
        await anyio.to_thread.run_sync(store.finish_run, run.run_id, RunStatus.SUCCEEDED)
    assert seqs(first) == list(range(1, 8))
    assert seqs(second) == [3, 4, 5, 6, 7] and isinstance(second[-1], EndEvent)
    store.close()


async def test_a_viewer_joining_a_live_run_gets_each_line_once_from_store_and_buffer(
    sqlite_store: SQLiteStore,
) -> None:
    """The follower keeps only its last ``buffer_lines``: a late viewer reads the older lines
    from the store up to the buffer, then the buffer, then live lines; never one twice."""
    run = sqlite_store.create_run("up", "svc")
    sqlite_store.start_run(run.run_id)
    tailer = Tailer(sqlite_store, buffer_lines=3)
    logger = RunLogger(sqlite_store, run.run_id)
    first: list[TailEvent] = []
    second: list[TailEvent] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(gather, first, tailer.follow(run.run_id))
        await wait_until(lambda: tailer.follower_count == 1)
        await write(logger, *(f"line {n}" for n in range(1, 11)))
        follower = tailer._followers[run.run_id]
        await wait_until(lambda: [line.seq for line in follower.buffer] == [8, 9, 10])
        tg.start_soon(gather, second, tailer.follow(run.run_id))
        await wait_until(lambda: seqs(second) == list(range(1, 11)))
        await write(logger, "line 11")
        await anyio.to_thread.run_sync(sqlite_store.finish_run, run.run_id, RunStatus.SUCCEEDED)
    assert seqs(first) == seqs(second) == list(range(1, 12))
    assert isinstance(second[-1], EndEvent)


async def test_a_windowed_viewer_gets_the_live_lines_that_come_within_its_window(
    sqlite_store: SQLiteStore,
) -> None:
    run = sqlite_store.create_run("up", "svc")
    sqlite_store.start_run(run.run_id)
    tailer = Tailer(sqlite_store)
    logger = RunLogger(sqlite_store, run.run_id)
    events: list[TailEvent] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(gather, events, tailer.follow(run.run_id, window=30))
        await wait_until(lambda: tailer.follower_count == 1)
        for n in range(1, 4):
            await write(logger, f"line {n}")
            await wait_until(lambda n=n: seqs(events)[-1:] == [n])
        await anyio.to_thread.run_sync(sqlite_store.finish_run, run.run_id, RunStatus.SUCCEEDED)
    assert seqs(events) == [1, 2, 3] and isinstance(events[-1], EndEvent)


@pytest.mark.parametrize("how", ["stop_following", "close"])
async def test_a_shutdown_ends_live_viewers_with_the_cursor_to_resume_from(
    tmp_path: object, how: str
) -> None:
    store = SQLiteStore(tmp_path / "shutdown.db")  # type: ignore[operator]
    run = store.create_run("up", "svc")
    store.start_run(run.run_id)
    tailer = Tailer(store)
    logger = RunLogger(store, run.run_id)
    events: list[TailEvent] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(gather, events, tailer.follow(run.run_id))
        await wait_until(lambda: tailer.follower_count == 1)
        await write(logger, "one", "two")
        await wait_until(lambda: seqs(events) == [1, 2])
        with anyio.fail_after(10):
            if how == "stop_following":
                await tailer.stop_following()
                assert not _tasks_named("run_follower")  # it waits for them to end
            else:
                await tailer.close()
    assert seqs(events) == [1, 2] and events[-1] == WindowEndEvent(2)
    assert tailer.follower_count == 0
    await wait_until(lambda: not _tasks_named("run_follower"))
    store.close()


async def test_close_returns_once_no_follower_is_left_polling(sqlite_store: SQLiteStore) -> None:
    """The app closes the store right after the tailer: no follower may still be in a store
    read then (a SQLite connection closed under a poll's thread crashes the process)."""
    run = sqlite_store.create_run("up", "svc")
    sqlite_store.start_run(run.run_id)
    tailer = Tailer(sqlite_store)
    async with anyio.create_task_group() as tg:
        tg.start_soon(collect, tailer.follow(run.run_id))
        await wait_until(lambda: tailer.follower_count == 1)
        with anyio.fail_after(10):
            await tailer.close()
        assert not _tasks_named("run_follower")


def test_a_tailer_whose_event_loop_has_closed_does_not_break_writers(tmp_path: object) -> None:
    """Writers notify the tailer from their own threads; once its loop is gone (a server or a
    test client shut down), a commit must still just commit."""
    import asyncio

    store = SQLiteStore(tmp_path / "closed-loop.db")  # type: ignore[operator]
    run = store.create_run("up", "svc")
    RunLogger(store, run.run_id).info("before")
    store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    tailer = Tailer(store)

    async def view() -> list[TailEvent]:
        return [event async for event in tailer.follow(run.run_id)]

    assert seqs(asyncio.run(view())) == [1]
    other = store.create_run("up", "svc2")
    RunLogger(store, other.run_id).info("after the loop closed")
    assert [line.message for line in store.read(other.run_id)] == ["after the loop closed"]
    store.close()


async def test_following_an_unknown_run_names_it(sqlite_store: SQLiteStore) -> None:
    with pytest.raises(RunNotFoundError, match=r"^no run 'r-missing'$"):
        await collect(Tailer(sqlite_store).follow("r-missing"))


async def test_a_window_closes_on_a_live_run_that_stays_quiet(sqlite_store: SQLiteStore) -> None:
    """Nothing to replay and nothing new: the window alone ends the stream, with the cursor."""
    run = sqlite_store.create_run("up", "svc")
    sqlite_store.start_run(run.run_id)
    RunLogger(sqlite_store, run.run_id).info("before")
    events = await collect(Tailer(sqlite_store).follow(run.run_id, after=1, window=0.2))
    assert isinstance(events[0], StatusEvent) and events[0].run.status is RunStatus.RUNNING
    assert events[1:] == [WindowEndEvent(1)]


@pytest.mark.parametrize("stop", ["close", "stop_following"])
async def test_a_follower_stopped_before_it_ever_ran_still_ends_its_viewers(
    sqlite_store: SQLiteStore, stop: str
) -> None:
    """A task cancelled before its first step never runs its coroutine, ``finally`` and all:
    a shutdown right after a viewer made a follower left that viewer waiting for good (a CI
    run under load lost ``test_close_returns_once_no_follower_is_left_polling`` to it)."""
    run = sqlite_store.create_run("up", "svc")
    sqlite_store.start_run(run.run_id)
    tailer = Tailer(sqlite_store)
    events: list[TailEvent] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(gather, events, tailer.follow(run.run_id))
        for _ in range(100_000):  # one loop turn at a time: stop in the turn the follower is made
            if tailer.follower_count:
                break
            await anyio.lowlevel.checkpoint()
        follower = next(iter(tailer._followers.values()))
        assert follower.task is not None
        await getattr(tailer, stop)()
        assert follower.task.cancelled()
    assert isinstance(events[-1], WindowEndEvent) and tailer.follower_count == 0
