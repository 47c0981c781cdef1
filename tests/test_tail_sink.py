"""A viewer whose lines the follower writes to its sink (``fanout.Reader``): its window still
closes, the run's end is not taken for a window's, and the lines written count for its cursor."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.to_thread
import pytest

from jobtail.logger import RunLogger
from jobtail.store.base import RunStatus
from jobtail.store.sqlite import SQLiteStore
from jobtail.tail import (
    EncodedLinesEvent,
    EndEvent,
    StatusEvent,
    StoreDownEvent,
    Tailer,
    TailEvent,
    WindowEndEvent,
)
from jobtail.web.sse import framing

from .faults.flaky import FlakyStore
from .waiting import wait_for_async as wait_until

pytestmark = pytest.mark.anyio


def followers_running() -> bool:
    """A follower task still going (its poll thread would outlive the test's store)."""
    return any("run_follower" in repr(t.get_coro()) for t in asyncio.all_tasks())


class ListSink:
    """A viewer's response that keeps what the follower sent it."""

    def __init__(self) -> None:
        self.ready = True
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)


def readers(tailer: Tailer, run_id: str) -> int:
    follower = tailer._followers.get(run_id)
    return len(follower.fanout._readers) if follower else 0


async def gather(into: list[TailEvent], events: AsyncIterator[TailEvent]) -> None:
    with anyio.fail_after(10):
        async for event in events:
            into.append(event)


async def test_a_windowed_sink_viewer_of_a_quiet_run_ends_when_its_window_closes(
    sqlite_store: SQLiteStore,
) -> None:
    """Asleep while the follower would write to it, the viewer still wakes when its window
    closes, and ends its response with the cursor."""
    run = sqlite_store.create_run("up", "svc")
    sqlite_store.start_run(run.run_id)
    RunLogger(sqlite_store, run.run_id).info("before")
    tailer = Tailer(sqlite_store)
    sink = ListSink()
    events: list[TailEvent] = []
    follow = tailer.follow(run.run_id, after=1, window=0.2, framing=framing(run.run_id), sink=sink)
    with anyio.fail_after(5):
        events = [event async for event in follow]
    assert [type(e) for e in events] == [StatusEvent, WindowEndEvent]
    assert events[-1] == WindowEndEvent(1) and sink.sent == []
    assert tailer.follower_count == 0
    await wait_until(lambda: not followers_running())


async def test_a_windowed_sink_viewer_gets_the_end_of_a_run_that_ends_within_its_window(
    sqlite_store: SQLiteStore,
) -> None:
    """The follower writes the line; the run's end then wakes the viewer, which ends with it
    rather than as if its window had closed."""
    run = sqlite_store.create_run("up", "svc")
    sqlite_store.start_run(run.run_id)
    tailer = Tailer(sqlite_store)
    logger = RunLogger(sqlite_store, run.run_id)
    sink = ListSink()
    events: list[TailEvent] = []
    async with anyio.create_task_group() as tg:
        follow = tailer.follow(run.run_id, window=30, framing=framing(run.run_id), sink=sink)
        tg.start_soon(gather, events, follow)
        await wait_until(lambda: readers(tailer, run.run_id) == 1)
        await anyio.to_thread.run_sync(logger.info, "line 1")
        await wait_until(lambda: len(sink.sent) == 1)
        await anyio.to_thread.run_sync(sqlite_store.finish_run, run.run_id, RunStatus.SUCCEEDED)
    assert [type(e) for e in events] == [StatusEvent, StatusEvent, EndEvent]
    assert b"line 1" in sink.sent[0]
    await wait_until(lambda: not followers_running())


@pytest.fixture
def flaky(tmp_path: object) -> Iterator[FlakyStore]:
    store = FlakyStore(tmp_path / "flaky.db")  # type: ignore[operator]
    yield store
    store.close()


async def test_a_sink_viewer_whose_store_gives_up_resumes_after_the_lines_written_to_it(
    flaky: FlakyStore,
) -> None:
    """Lines 1-2 went to the sink, never through the viewer's task. The store goes down, the
    viewer lags past its follower's notices, and its own re-read of the run gives up: it must
    end with cursor 2 (resuming from 0 would send lines 1-2 again), and every notice names the
    run."""
    run = flaky.create_run("up", "svc")
    flaky.start_run(run.run_id)
    tailer = Tailer(flaky, queue_size=1, retry_first=0.01, retry_max=0.01, give_up_after=0.2)
    logger = RunLogger(flaky, run.run_id)
    sink = ListSink()
    events: list[TailEvent] = []
    resume = anyio.Event()

    async def stalled_view() -> None:
        follow = tailer.follow(run.run_id, framing=framing(run.run_id), sink=sink)
        with anyio.fail_after(10):
            async for event in follow:
                events.append(event)
                if isinstance(event, StoreDownEvent) and not resume.is_set():
                    await resume.wait()  # the follower's notices pile up past the log's size

    async with anyio.create_task_group() as tg:
        tg.start_soon(stalled_view)
        await wait_until(lambda: readers(tailer, run.run_id) == 1)
        for n in (1, 2):
            await anyio.to_thread.run_sync(logger.info, f"line {n}")
            await wait_until(lambda n=n: len(sink.sent) == n)
        flaky.down = True
        await anyio.to_thread.run_sync(logger.info, "line 3")  # wakes the follower: it fails
        await wait_until(lambda: tailer.follower_count == 0)  # the follower gave up
        resume.set()
    assert [b"line 1" in sink.sent[0], b"line 2" in sink.sent[1]] == [True, True]
    assert not [e for e in events if isinstance(e, EncodedLinesEvent)]
    assert events[-1] == WindowEndEvent(2)
    notices = [e for e in events if isinstance(e, StoreDownEvent)]
    assert len(notices) > 1 and all(e.run is not None for e in notices)
    await wait_until(lambda: not followers_running())
