"""A stream cut short, and how its viewer resumes: a follower that dies of a bug says so in the
log and ends its viewers with their cursor; a viewer whose own replay reads give up after it
had lines ends with the last line it got, plain or encoded, so it resumes with nothing lost."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from jobtail.logger import RunLogger
from jobtail.store.base import RunStatus
from jobtail.store.sqlite import SQLiteStore
from jobtail.tail import (
    EncodedLinesEvent,
    EndEvent,
    LinesEvent,
    StoreDownEvent,
    Tailer,
    TailEvent,
    WindowEndEvent,
)
from jobtail.web.sse import framing

from .faults.flaky import FlakyStore
from .waiting import wait_for_async as wait_until

pytestmark = pytest.mark.anyio


class BuggyStore(SQLiteStore):
    """A real SQLite store whose backend has a bug that shows once ``broken`` is set."""

    broken = False

    def next_poll_interval(self, idle_polls: int) -> float:
        if self.broken:
            raise ZeroDivisionError("a bug in the backend")
        return super().next_poll_interval(idle_polls)


class DownFramedStore(FlakyStore):
    """``FlakyStore`` whose encoded reads fail too while it is down."""

    async def aread_framed(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self._maybe_fail(None)
        return await super().aread_framed(*args, **kwargs)


def seqs(events: list[TailEvent]) -> list[int]:
    return [line.seq for e in events if isinstance(e, LinesEvent) for line in e.lines]


async def test_a_follower_killed_by_a_bug_is_logged_and_its_viewers_resume_by_cursor(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = BuggyStore(tmp_path / "buggy.db")
    run = store.create_run("up", "svc")
    store.start_run(run.run_id)
    tailer = Tailer(store)
    logger = RunLogger(store, run.run_id)
    events: list[TailEvent] = []

    async def view() -> None:
        with anyio.fail_after(60):
            async for event in tailer.follow(run.run_id):
                events.append(event)

    with caplog.at_level(logging.ERROR, logger="jobtail.tail"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(view)
            await wait_until(lambda: tailer.follower_count == 1)
            await anyio.to_thread.run_sync(logger.info, "one")
            await wait_until(lambda: seqs(events) == [1])
            store.broken = True  # the follower's next wait after a poll raises
            await anyio.to_thread.run_sync(logger.info, "two")
    assert seqs(events) == [1, 2] and events[-1] == WindowEndEvent(2)
    assert tailer.follower_count == 0
    died = [r for r in caplog.records if r.name == "jobtail.tail"]
    assert [(r.levelno, r.getMessage()) for r in died] == [
        (logging.ERROR, f"follower of run {run.run_id} died")
    ]
    assert died[0].exc_info and isinstance(died[0].exc_info[1], ZeroDivisionError)
    store.broken = False  # fixed: the viewer resumes from its cursor and gets the rest
    await anyio.to_thread.run_sync(logger.info, "three")
    await anyio.to_thread.run_sync(store.finish_run, run.run_id, RunStatus.SUCCEEDED)
    with anyio.fail_after(60):
        resumed = [event async for event in tailer.follow(run.run_id, after=2)]
    assert seqs(resumed) == [3] and isinstance(resumed[-1], EndEvent)
    store.close()


@pytest.fixture
def down_later(tmp_path: Path) -> Iterator[tuple[DownFramedStore, str]]:
    store = DownFramedStore(tmp_path / "down-later.db")
    run = store.create_run("up", "svc")
    logger = RunLogger(store, run.run_id)
    for n in range(1, 11):
        logger.info(f"line {n}")
    store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    yield store, run.run_id
    store.close()


async def until_down(store: FlakyStore, events: AsyncIterator[TailEvent]) -> list[TailEvent]:
    """The viewer's events; the store goes down for good after the second batch of lines."""
    got: list[TailEvent] = []
    with anyio.fail_after(60):
        async for event in events:
            got.append(event)
            batches = [e for e in got if isinstance(e, LinesEvent | EncodedLinesEvent)]
            store.down = len(batches) >= 2
    return got


@pytest.mark.parametrize("encoded", [False, True], ids=["plain", "encoded"])
async def test_a_viewer_whose_reads_give_up_after_some_lines_ends_with_the_last_it_got(
    down_later: tuple[DownFramedStore, str], encoded: bool
) -> None:
    store, run_id = down_later
    tailer = Tailer(store, batch=4, page=4, retry_first=0.01, retry_max=0.02, give_up_after=0.2)
    view = framing(run_id) if encoded else None
    events = await until_down(store, tailer.follow(run_id, after=1, framing=view))
    got = [e for e in events if isinstance(e, LinesEvent | EncodedLinesEvent)]
    if encoded:
        assert [(e.count, e.last_seq) for e in got] == [(4, 5), (4, 9)]  # type: ignore[union-attr]
    else:
        assert seqs(events) == list(range(2, 10))
    downs = [e for e in events if isinstance(e, StoreDownEvent)]
    assert downs and all(e.run is not None and e.run.run_id == run_id for e in downs)
    assert events[-1] == WindowEndEvent(9)


async def test_a_viewer_from_the_start_whose_store_is_down_resumes_from_the_start(
    tmp_path: Path,
) -> None:
    store = FlakyStore(tmp_path / "down.db")
    run = store.create_run("up", "svc")
    RunLogger(store, run.run_id).info("one")
    store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    tailer = Tailer(store, retry_first=0.01, retry_max=0.02, give_up_after=0.2)
    store.down = True  # gone before the run was even read
    with anyio.fail_after(60):
        events = [event async for event in tailer.follow(run.run_id)]
    assert events[-1] == WindowEndEvent(0)  # nothing delivered: line 1 is still to come
    store.close()
