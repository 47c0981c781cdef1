"""A viewer whose cursor is ahead of its follower (it resumed with a Last-Event-ID newer than the
Run it was given): the follower's batches it already has are skipped, a batch it has in part
yields only the rest, and the batches after them still come, even when they all reach the
viewer at once; encoded, the part it already has is not sent again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from jobtail.logger import RunLogger
from jobtail.store.base import RunStatus, frame_lines
from jobtail.tail import (
    EncodedLinesEvent,
    EndEvent,
    LinesEvent,
    StoreDownEvent,
    Tailer,
    TailEvent,
)
from jobtail.web.sse import framing

from .faults.flaky import FlakyStore
from .waiting import wait_for_async as wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
def flaky(tmp_path: Path) -> Iterator[FlakyStore]:
    store = FlakyStore(tmp_path / "ahead.db")
    yield store
    store.close()


def last_seq(events: list[TailEvent]) -> int:
    for event in reversed(events):
        if isinstance(event, EncodedLinesEvent):
            return event.last_seq
        if isinstance(event, LinesEvent):
            return event.lines[-1].seq
    return 0


@pytest.mark.parametrize("encoded", [False, True], ids=["plain", "encoded"])
async def test_a_viewer_ahead_of_its_follower_gets_only_what_it_lacks(
    flaky: FlakyStore, encoded: bool
) -> None:
    run = flaky.create_run("up", "svc")
    flaky.start_run(run.run_id)
    logger = RunLogger(flaky, run.run_id)
    for n in range(1, 6):
        logger.info(f"line {n}")
    stale = flaky.get_run(run.run_id)  # the Run the caller holds: last_seq 5
    assert stale is not None and stale.last_seq == 5
    for n in range(6, 12):
        logger.info(f"line {n}")
    tailer = Tailer(flaky, batch=2, retry_first=0.01)
    flaky.fail_polls = 1  # the follower's first poll fails: its notice holds the viewer
    view = framing(run.run_id) if encoded else None
    events: list[TailEvent] = []
    release = anyio.Event()

    async def watch() -> None:
        with anyio.fail_after(60):
            async for event in tailer.follow(stale, after=8, framing=view):
                events.append(event)
                if isinstance(event, StoreDownEvent):
                    await release.wait()  # meanwhile the follower reads 6-7, 8-9, 10-11

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await wait_until(lambda: any(isinstance(e, StoreDownEvent) for e in events))
        follower = tailer._followers[run.run_id]
        await wait_until(lambda: follower.cursor == 11 and follower.fanout.end >= 4)
        release.set()  # the three batches reach the viewer at once
        await wait_until(lambda: last_seq(events) == 11)
        await anyio.to_thread.run_sync(flaky.finish_run, run.run_id, RunStatus.SUCCEEDED)
    got = [e for e in events if isinstance(e, LinesEvent | EncodedLinesEvent)]
    if encoded:
        assert [(e.count, e.last_seq) for e in got] == [(1, 9), (2, 11)]  # type: ignore[union-attr]
        wanted = tuple(flaky.read(run.run_id, after=8))
        assert b"".join(e.data for e in got) == frame_lines(wanted, view)  # type: ignore[arg-type, union-attr]
    else:
        assert [line.seq for e in got for line in e.lines] == [9, 10, 11]  # type: ignore[union-attr]
    assert isinstance(events[-1], EndEvent)
